package blob_test

import (
	"testing"

	"github.com/haul-dev/haul/internal/blob"
	"github.com/haul-dev/haul/internal/blob/blobtest"
)

// TestFSConformance runs the driver conformance suite on the filesystem
// store.
func TestFSConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := blob.NewFS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, blobtest.Options{ManyKeys: 1100, LargeSize: 70 << 20})
}
