package history

import (
	"context"

	"github.com/haul-dev/haul/internal/store"
)

// WriteBatch writes batch b's files without claiming or finishing it (for
// the benchmark, which writes one batch again and again).
func WriteBatch(ctx context.Context, e *Exporter, b store.ExportBatch) (rows map[string]int64, bytes int64, err error) {
	res, err := e.writeBatch(ctx, b, nil)
	return res.rows, res.bytes, err
}
