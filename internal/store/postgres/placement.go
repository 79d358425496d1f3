package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/store"
)

// errPlacementTODO marks placement methods not written yet (issue 14, in
// progress in this session; replaced before it lands).
var errPlacementTODO = errors.New("placement records: not implemented yet")

func (s *Store) EnsureCluster(context.Context, placement.Cluster) (placement.Cluster, error) {
	return placement.Cluster{}, errPlacementTODO
}
func (s *Store) PutCluster(context.Context, placement.Cluster) error { return errPlacementTODO }
func (s *Store) SetClusterState(context.Context, string, placement.ClusterState) error {
	return errPlacementTODO
}
func (s *Store) DeleteCluster(context.Context, string) error { return errPlacementTODO }
func (s *Store) ListClusters(context.Context) ([]placement.Cluster, error) {
	return nil, errPlacementTODO
}
func (s *Store) PutQuota(context.Context, placement.Quota) error       { return errPlacementTODO }
func (s *Store) DeleteQuota(context.Context, string) error             { return errPlacementTODO }
func (s *Store) ListQuotas(context.Context) ([]placement.Quota, error) { return nil, errPlacementTODO }
func (s *Store) Place(context.Context, time.Time, func(*placement.Snapshot) (store.PlaceWrite, error)) error {
	return errPlacementTODO
}
func (s *Store) RenewReservations(context.Context, string, []string, time.Time) ([]string, []string, error) {
	return nil, nil, errPlacementTODO
}
func (s *Store) ReleaseReservations(context.Context, []string) error { return errPlacementTODO }
func (s *Store) ListReservations(context.Context, store.ReservationFilter) ([]placement.Reservation, error) {
	return nil, errPlacementTODO
}
func (s *Store) PlacementUsage(context.Context, time.Time) ([]placement.Usage, error) {
	return nil, errPlacementTODO
}
