package runner

import (
	"fmt"
	"testing"

	"github.com/haul-dev/haul/internal/store"
)

// TestShardQuota: the quotas of any set of live members add up to every
// shard (while there are at most as many members as shards), differ by at
// most one, and go to the first members in holder order; a runner not
// (yet) among the members takes none.
func TestShardQuota(t *testing.T) {
	for m := 1; m <= 40; m++ {
		members := make([]string, m)
		for i := range members {
			members[i] = fmt.Sprintf("h%02d", i)
		}
		sum, lo, hi := 0, store.NumShards, 0
		for i, h := range members {
			q := shardQuota(members, h)
			sum += q
			lo, hi = min(lo, q), max(hi, q)
			if i > 0 && q > shardQuota(members, members[i-1]) {
				t.Errorf("%d members: %s gets %d, more than the one before it", m, h, q)
			}
		}
		if m <= store.NumShards && sum != store.NumShards {
			t.Errorf("%d members: quotas add up to %d, want %d", m, sum, store.NumShards)
		}
		if m > store.NumShards && sum != store.NumShards {
			t.Errorf("%d members: quotas add up to %d, want %d (some runners idle)", m, sum, store.NumShards)
		}
		if hi-lo > 1 {
			t.Errorf("%d members: quotas from %d to %d, want within one", m, lo, hi)
		}
	}
	if q := shardQuota([]string{"a", "b"}, "c"); q != 0 {
		t.Errorf("a runner not among the members gets %d shards, want 0", q)
	}
}
