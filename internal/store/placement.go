package store

import (
	"context"
	"math"
	"time"

	"github.com/haul-dev/haul/internal/placement"
)

// PlaceWrite is what a placement decision writes, in the transaction that
// read its snapshot: reservations to add, borrowed reservations (by ID)
// to mark for reclaim, claims to store (replacing any of the same ID) and
// claims (by ID) to drop.
type PlaceWrite struct {
	Insert     []placement.Reservation
	Reclaim    []string
	Claims     []placement.Claim
	DropClaims []string
}

// ReservationFilter selects reservations; empty fields match any.
type ReservationFilter struct {
	Team    string
	Cluster string
	Job     string
	Holder  string
	// ReclaimOnly lists only reservations marked for reclaim.
	ReclaimOnly bool
	// ExpiresBefore, when set, lists only reservations expiring at or
	// before it (those no runner renewed lately).
	ExpiresBefore time.Time
	// Limit caps the rows returned (0: DefaultReservationLimit).
	Limit int
}

// DefaultReservationLimit is how many reservations ListReservations
// returns when the filter sets no limit.
const DefaultReservationLimit = 10_000

// PlacementStore keeps clusters, team quotas and worker reservations
// (internal/placement decides; this keeps its records).
type PlacementStore interface {
	// EnsureCluster stores c if no cluster of that name exists and returns
	// the stored record (c, or the one already there, unchanged).
	EnsureCluster(ctx context.Context, c placement.Cluster) (placement.Cluster, error)
	// PutCluster creates or replaces a cluster record, its state
	// included. Setting the state to draining marks every reservation in
	// the cluster for reclaim, in the same transaction.
	PutCluster(ctx context.Context, c placement.Cluster) error
	// SetClusterState changes a cluster's state (ErrNotFound for an
	// unknown name). Draining marks every reservation there for reclaim,
	// in the same transaction.
	SetClusterState(ctx context.Context, name string, s placement.ClusterState) error
	// DeleteCluster removes a cluster record (ErrNotFound for an unknown
	// name); its reservations stay until their workers exit.
	DeleteCluster(ctx context.Context, name string) error
	// ListClusters returns every cluster, by name.
	ListClusters(ctx context.Context) ([]placement.Cluster, error)

	// PutQuota creates or replaces a team's quota; DeleteQuota removes it
	// (ErrNotFound when there is none); ListQuotas returns all, by team.
	PutQuota(ctx context.Context, q placement.Quota) error
	DeleteQuota(ctx context.Context, team string) error
	ListQuotas(ctx context.Context) ([]placement.Quota, error)

	// Place runs decide in one transaction serialised with every other
	// Place on the store: it first deletes the reservations and claims
	// expired at now, then gives decide a snapshot of every cluster,
	// quota, the usage of the live reservations (summed per team, cluster
	// and borrowed), the borrowed reservations and the claims, and
	// commits what decide returns. An error from decide rolls back and is returned as is.
	// A reservation the store cannot hold (a duplicate ID, an empty team
	// or cluster, a negative amount, more than one GPU type) fails the
	// whole write with an error wrapping ErrRejected naming it.
	Place(ctx context.Context, now time.Time, decide func(*placement.Snapshot) (PlaceWrite, error)) error
	// RenewReservations sets holder and expiry on the reservations with
	// the given IDs (taking over those of adopted workers) and returns
	// the IDs among them marked for reclaim and those not found (expired
	// and deleted, or never made).
	RenewReservations(ctx context.Context, holder string, ids []string, expires time.Time) (reclaim, missing []string, err error)
	// ReleaseReservations deletes the reservations with the given IDs
	// (unknown ones are ignored).
	ReleaseReservations(ctx context.Context, ids []string) error
	// ListReservations returns the reservations f selects, oldest first.
	ListReservations(ctx context.Context, f ReservationFilter) ([]placement.Reservation, error)
	// PlacementUsage returns the usage of the reservations live at now.
	PlacementUsage(ctx context.Context, now time.Time) ([]placement.Usage, error)
}

// Resources is what a worker of tier t holds: its CPU (in thousandths,
// rounded up), memory, and GPUs of its type ("gpu" when the tier names
// none). The runner reserves it; cost estimates price it.
func (t Tier) Resources() placement.Resources {
	r := placement.Resources{MilliCPU: int64(math.Ceil(t.CPU * 1000)), Memory: t.MemoryBytes}
	if t.GPU > 0 {
		typ := t.GPUType
		if typ == "" {
			typ = "gpu"
		}
		r.GPU = map[string]int64{typ: int64(t.GPU)}
	}
	return r
}
