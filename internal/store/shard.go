package store

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// NumShards is the number of logical shards a deployment's jobs are spread
// over. It is fixed, not a setting: a job's shard is a function of its ID
// alone, so a different count would move running jobs between shards
// (and their leases). 32 spreads over up to 32 runners, more than a
// deployment needs, and few enough that each runner lists and renews its
// shard leases cheaply.
const NumShards = 32

// ShardOf returns the shard of a job: the FNV-1a (32-bit) hash of its ID
// modulo NumShards. It depends on the ID only, so every gateway and
// runner computes the same shard, and a job never changes shard.
func ShardOf(jobID string) int {
	h := fnv.New32a()
	h.Write([]byte(jobID)) // a hash.Hash never fails to write
	return int(h.Sum32() % NumShards)
}

// ShardLeasePrefix starts the name of every shard lease.
const ShardLeasePrefix = "shard/"

// ShardLease returns the name of the lease that the owner of a shard holds:
// "shard/NN", two digits, so that names sort in shard order.
func ShardLease(shard int) string {
	return fmt.Sprintf(ShardLeasePrefix+"%02d", shard)
}

// ParseShardLease returns the shard of a lease name ShardLease made, and an
// error naming the lease if it is not one (another kind of lease, a shard
// outside 0..NumShards-1, or digits not as ShardLease writes them).
func ParseShardLease(name string) (int, error) {
	digits, ok := strings.CutPrefix(name, ShardLeasePrefix)
	if !ok {
		return 0, fmt.Errorf("lease %q is not a shard lease (want %sNN)", name, ShardLeasePrefix)
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 || n >= NumShards || ShardLease(n) != name {
		return 0, fmt.Errorf("lease %q: want %sNN with NN from 00 to %02d", name, ShardLeasePrefix, NumShards-1)
	}
	return n, nil
}

// MemberLeasePrefix starts the name of every membership lease: each runner
// holds MemberLease(its holder name) while it lives, and runners list the
// live members with ListLeases(MemberLeasePrefix) to share out the shards.
const MemberLeasePrefix = "member/"

// MemberLease returns the name of the membership lease of a runner that
// holds leases as holder.
func MemberLease(holder string) string {
	return MemberLeasePrefix + holder
}
