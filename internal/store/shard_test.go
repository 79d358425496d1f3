package store

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestShardOfGolden pins ShardOf: a job's shard must never change, across
// processes and releases. The values were computed apart from this code
// (FNV-1a of "a" is 0xe40c292c, the published test vector; 0xe40c292c mod
// 32 is 12).
func TestShardOfGolden(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]int{
		"":              5,
		"a":             12,
		"01jxq3b7k2m9t": 20,
		"01jxq3b7k2m9v": 26,
		"v3-job":        16,
		"resim-nightly": 7,
		"zzzzzzzzzzzzz": 13,
		"0000000000000": 31,
	} {
		if got := ShardOf(id); got != want {
			t.Errorf("ShardOf(%q) = %d, want %d", id, got, want)
		}
	}
}

// TestShardOfSpread: 10,000 job IDs as NewJobID makes them (seeded) land
// on every shard, each within a quarter of the even share.
func TestShardOfSpread(t *testing.T) {
	t.Parallel()
	const n = 10_000
	rng := rand.NewChaCha8([32]byte{'s', 'h', 'a', 'r', 'd'})
	start := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	var counts [NumShards]int
	for i := range n {
		// Jobs a few milliseconds apart, several per millisecond.
		id := NewJobID(start.Add(time.Duration(i/3)*time.Millisecond), rng)
		s := ShardOf(id)
		if s < 0 || s >= NumShards {
			t.Fatalf("ShardOf(%q) = %d, outside 0..%d", id, s, NumShards-1)
		}
		counts[s]++
	}
	even := float64(n) / NumShards
	for s, c := range counts {
		if float64(c) < 0.75*even || float64(c) > 1.25*even {
			t.Errorf("shard %d got %d of %d IDs, want %.0f±25%%; all: %v", s, c, n, even, counts)
		}
	}
}

func TestShardLease(t *testing.T) {
	t.Parallel()
	for shard, want := range map[int]string{0: "shard/00", 7: "shard/07", 31: "shard/31"} {
		if got := ShardLease(shard); got != want {
			t.Errorf("ShardLease(%d) = %q, want %q", shard, got, want)
		}
	}
	for shard := range NumShards {
		name := ShardLease(shard)
		if got, err := ParseShardLease(name); err != nil || got != shard {
			t.Errorf("ParseShardLease(%q) = %d, %v; want %d", name, got, err, shard)
		}
		if !strings.HasPrefix(name, ShardLeasePrefix) {
			t.Errorf("ShardLease(%d) = %q, not under %q", shard, name, ShardLeasePrefix)
		}
		if shard > 0 && ShardLease(shard-1) >= name {
			t.Errorf("ShardLease(%d) = %q does not sort after %q", shard, name, ShardLease(shard-1))
		}
	}
	for _, bad := range []string{"", "shard/", "shard/32", "shard/-1", "shard/7", "shard/007", "shard/+7", "shard/ab", "member/shard/01", "runner"} {
		if got, err := ParseShardLease(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseShardLease(%q) = %d, %v; want an error naming it", bad, got, err)
		}
	}
	if got := MemberLease("runner-a:8080"); got != "member/runner-a:8080" || !strings.HasPrefix(got, MemberLeasePrefix) {
		t.Errorf("MemberLease(runner-a:8080) = %q", got)
	}
}
