package history

import (
	"context"
	"errors"
	"fmt"

	"github.com/haul-dev/haul/internal/blob"
	"github.com/haul-dev/haul/internal/logarchive"
	"github.com/haul-dev/haul/internal/store"
)

// TeamStores returns an Exporter.Teams that gives a team's log
// destination (the bucket and prefix an admin set with haul team logs
// set, and its credentials), opened with logarchive.OpenS3: a team's
// history goes to {destination}/history/…, beside its logs. A team
// without a destination has no copy. The Exporter calls it once per team
// in a Run, so each Run sees the destinations (and credentials) as they
// are then.
func TeamStores(st store.LogDestinationStore) func(ctx context.Context, team string) (blob.Store, bool, error) {
	return func(ctx context.Context, team string) (blob.Store, bool, error) {
		d, err := st.GetLogDestination(ctx, team)
		if errors.Is(err, store.ErrNotFound) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("the log destination of team %s: %w", team, err)
		}
		b, err := logarchive.OpenS3(ctx, *d, d.URL)
		if err != nil {
			return nil, false, fmt.Errorf("open the log destination of team %s: %w", team, err)
		}
		return b, true, nil
	}
}
