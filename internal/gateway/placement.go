package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/haul-dev/haul/internal/auth"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/store"
)

// This file is the AdminService's part for the fleet (design note 010):
// cluster records, team quotas with what teams hold against them, and
// what teams' jobs cost. Changes are for platform admins and audited like
// token actions; any caller may list clusters; a team's quota and cost are
// for the team's viewers and above.

// Bounds on fleet records and reports.
const (
	// MaxCostJobsScanned bounds the job records one GetCost reads; a
	// period with more jobs is reported incomplete, never cut silently.
	MaxCostJobsScanned = 100_000
	costPageSize       = 1000
	defaultCostJobs    = 100
	maxCostJobs        = 10_000
	// DefaultCostPeriod is the period GetCost sums without a since.
	DefaultCostPeriod = 24 * time.Hour

	maxNameLen       = 63
	maxGPUTypes      = 64
	maxLabelKeys     = 100
	maxLabelValues   = 100
	maxLabelLen      = 253
	maxQuotaClusters = 256
)

// fleetStore is what the fleet RPCs need of the store: its placement
// records, and jobs for cost.
type fleetStore interface {
	store.PlacementStore
	ListJobs(ctx context.Context, f store.JobFilter) ([]store.Job, error)
}

// The server's store is a fleetStore.
var _ fleetStore = store.Store(nil)

// fleet returns the store as a fleetStore. The server hands NewAdmin its
// whole store, which is one; a store that keeps only tokens cannot answer
// these calls.
func (a *Admin) fleet() (fleetStore, error) {
	fs, ok := a.st.(fleetStore)
	if !ok {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("this server's store keeps no clusters, quotas or jobs"))
	}
	return fs, nil
}

// ListClusters lists every cluster with what is held there now.
func (a *Admin) ListClusters(ctx context.Context, _ *connect.Request[apiv1.ListClustersRequest]) (*connect.Response[apiv1.ListClustersResponse], error) {
	if auth.FromContext(ctx) == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, auth.ErrUnauthenticated)
	}
	fs, err := a.fleet()
	if err != nil {
		return nil, err
	}
	clusters, err := fs.ListClusters(ctx)
	if err != nil {
		return nil, storeError(err, "clusters", "")
	}
	usage, err := fs.PlacementUsage(ctx, a.clock())
	if err != nil {
		return nil, storeError(err, "placement usage", "")
	}
	type held struct {
		all, borrowed        placement.Resources
		workers, borrowedWks int64
	}
	by := map[string]*held{}
	for _, u := range usage {
		h := by[u.Cluster]
		if h == nil {
			h = &held{}
			by[u.Cluster] = h
		}
		h.all = h.all.Add(u.Held)
		h.workers += int64(u.Workers)
		if u.Borrowed {
			h.borrowed = h.borrowed.Add(u.Held)
			h.borrowedWks += int64(u.Workers)
		}
	}
	resp := &apiv1.ListClustersResponse{Clusters: make([]*apiv1.ClusterStatus, 0, len(clusters))}
	slices.SortFunc(clusters, func(x, y placement.Cluster) int { return cmp.Compare(x.Name, y.Name) })
	for _, c := range clusters {
		cs := &apiv1.ClusterStatus{Cluster: clusterProto(c), Held: resourcesProto(placement.Resources{}), Borrowed: resourcesProto(placement.Resources{})}
		if h := by[c.Name]; h != nil {
			cs.Held, cs.Workers = resourcesProto(h.all), h.workers
			cs.Borrowed, cs.BorrowedWorkers = resourcesProto(h.borrowed), h.borrowedWks
		}
		resp.Clusters = append(resp.Clusters, cs)
		delete(by, c.Name)
	}
	for _, name := range slices.Sorted(maps.Keys(by)) {
		h := by[name]
		resp.Unregistered = append(resp.Unregistered, &apiv1.ClusterStatus{Cluster: &apiv1.Cluster{Name: name},
			Held: resourcesProto(h.all), Workers: h.workers, Borrowed: resourcesProto(h.borrowed), BorrowedWorkers: h.borrowedWks})
	}
	return connect.NewResponse(resp), nil
}

// PutCluster registers or replaces a cluster record.
func (a *Admin) PutCluster(ctx context.Context, req *connect.Request[apiv1.PutClusterRequest]) (*connect.Response[apiv1.PutClusterResponse], error) {
	var c placement.Cluster
	object := clusterObject(req.Msg.GetCluster().GetName())
	err := a.fleetChange(ctx, req.Peer().Addr, "PutCluster", auth.ManageFleet, nil, object,
		func() (err error) {
			c, err = clusterFromProto(req.Msg.Cluster)
			return err
		},
		func(fs fleetStore) (string, error) {
			if err := fs.PutCluster(ctx, c); err != nil {
				return "", storeErrorCode(err, "cluster", c.Name, connect.CodeInvalidArgument)
			}
			return fmt.Sprintf("%s, capacity %s", c.State, c.Capacity), nil
		})
	if err != nil {
		return nil, err
	}
	a.log.Info("cluster put", "cluster", c.Name, "state", c.State, "capacity", c.Capacity.String(), "by", auth.FromContext(ctx).Subject)
	return connect.NewResponse(&apiv1.PutClusterResponse{Cluster: clusterProto(c)}), nil
}

// SetClusterState enables, disables or drains a cluster.
func (a *Admin) SetClusterState(ctx context.Context, req *connect.Request[apiv1.SetClusterStateRequest]) (*connect.Response[apiv1.SetClusterStateResponse], error) {
	name := req.Msg.Name
	object := clusterObject(name)
	var state placement.ClusterState
	var stored placement.Cluster
	err := a.fleetChange(ctx, req.Peer().Addr, "SetClusterState", auth.ManageFleet, nil, object,
		func() error {
			if err := checkClusterName("name", name); err != nil {
				return err
			}
			s, err := placement.ParseClusterState(req.Msg.State)
			if err != nil {
				return fmt.Errorf("state: %w", err)
			}
			state = s
			return nil
		},
		func(fs fleetStore) (string, error) {
			if err := fs.SetClusterState(ctx, name, state); err != nil {
				return "", storeErrorCode(err, "cluster", name, connect.CodeInvalidArgument)
			}
			// Read the record back, for the answer.
			all, err := fs.ListClusters(ctx)
			if err != nil {
				return "", storeError(err, "clusters", "")
			}
			i := slices.IndexFunc(all, func(c placement.Cluster) bool { return c.Name == name })
			if i < 0 {
				return "", connect.NewError(connect.CodeNotFound, fmt.Errorf("cluster %s not found (deleted meanwhile)", name))
			}
			stored = all[i]
			return string(state), nil
		})
	if err != nil {
		return nil, err
	}
	a.log.Info("cluster state set", "cluster", name, "state", state, "by", auth.FromContext(ctx).Subject)
	return connect.NewResponse(&apiv1.SetClusterStateResponse{Cluster: clusterProto(stored)}), nil
}

// DeleteCluster removes a cluster record.
func (a *Admin) DeleteCluster(ctx context.Context, req *connect.Request[apiv1.DeleteClusterRequest]) (*connect.Response[apiv1.DeleteClusterResponse], error) {
	name := req.Msg.Name
	object := clusterObject(name)
	err := a.fleetChange(ctx, req.Peer().Addr, "DeleteCluster", auth.ManageFleet, nil, object,
		func() error { return checkClusterName("name", name) },
		func(fs fleetStore) (string, error) {
			if err := fs.DeleteCluster(ctx, name); err != nil {
				return "", storeErrorCode(err, "cluster", name, connect.CodeInvalidArgument)
			}
			return "deleted", nil
		})
	if err != nil {
		return nil, err
	}
	a.log.Info("cluster deleted", "cluster", name, "by", auth.FromContext(ctx).Subject)
	return connect.NewResponse(&apiv1.DeleteClusterResponse{}), nil
}

// SetQuota creates or replaces a team's quota.
func (a *Admin) SetQuota(ctx context.Context, req *connect.Request[apiv1.SetQuotaRequest]) (*connect.Response[apiv1.SetQuotaResponse], error) {
	var q placement.Quota
	var teams []string
	var object string
	if req.Msg.Quota != nil && auth.CheckTeamName(req.Msg.Quota.Team) == nil {
		teams, object = []string{req.Msg.Quota.Team}, "quota/"+req.Msg.Quota.Team
	}
	err := a.fleetChange(ctx, req.Peer().Addr, "SetQuota", auth.ManageQuota, teams, object,
		func() (err error) {
			q, err = quotaFromProto(req.Msg.Quota)
			return err
		},
		func(fs fleetStore) (string, error) {
			if err := fs.PutQuota(ctx, q); err != nil {
				return "", storeErrorCode(err, "quota of team", q.Team, connect.CodeInvalidArgument)
			}
			return describeQuota(q), nil
		})
	if err != nil {
		return nil, err
	}
	a.log.Info("quota set", "team", q.Team, "limit", q.Limit.String(), "lend", q.Lend, "by", auth.FromContext(ctx).Subject)
	return connect.NewResponse(&apiv1.SetQuotaResponse{Quota: quotaProto(q)}), nil
}

// DeleteQuota removes a team's quota.
func (a *Admin) DeleteQuota(ctx context.Context, req *connect.Request[apiv1.DeleteQuotaRequest]) (*connect.Response[apiv1.DeleteQuotaResponse], error) {
	team := req.Msg.Team
	var teams []string
	var object string
	if auth.CheckTeamName(team) == nil {
		teams, object = []string{team}, "quota/"+team
	}
	err := a.fleetChange(ctx, req.Peer().Addr, "DeleteQuota", auth.ManageQuota, teams, object,
		func() error {
			if err := auth.CheckTeamName(team); err != nil {
				return fmt.Errorf("team: %w", err)
			}
			return nil
		},
		func(fs fleetStore) (string, error) {
			if err := fs.DeleteQuota(ctx, team); err != nil {
				return "", storeErrorCode(err, "quota of team", team, connect.CodeInvalidArgument)
			}
			return "deleted", nil
		})
	if err != nil {
		return nil, err
	}
	a.log.Info("quota deleted", "team", team, "by", auth.FromContext(ctx).Subject)
	return connect.NewResponse(&apiv1.DeleteQuotaResponse{}), nil
}

// fleetChange runs one platform-only change: it authenticates, authorizes
// action, validates (check: an error is invalid_argument), applies and
// audits every outcome; object names what the audit entry is about. A
// change is answered ok only once its audit entry is written.
func (a *Admin) fleetChange(ctx context.Context, remote string, call string, action auth.Action, teams []string, object string,
	check func() error, apply func(fleetStore) (detail string, err error)) error {
	id := auth.FromContext(ctx)
	if id == nil {
		return connect.NewError(connect.CodeUnauthenticated, auth.ErrUnauthenticated)
	}
	audit := func(outcome, detail string) error {
		return a.audit(ctx, remote, id, call, teams, object, outcome, detail)
	}
	if err := auth.Allow(id, action, auth.Object{}); err != nil {
		_ = audit("denied", err.Error())
		return connect.NewError(connect.CodePermissionDenied, err)
	}
	if err := check(); err != nil {
		_ = audit("invalid_argument", err.Error())
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	fs, err := a.fleet()
	if err != nil {
		_ = audit(connect.CodeOf(err).String(), err.Error())
		return err
	}
	detail, err := apply(fs)
	if err != nil {
		_ = audit(connect.CodeOf(err).String(), err.Error())
		return err
	}
	return audit("ok", detail)
}

// GetQuotas reports teams' quotas and what their workers hold.
func (a *Admin) GetQuotas(ctx context.Context, req *connect.Request[apiv1.GetQuotasRequest]) (*connect.Response[apiv1.GetQuotasResponse], error) {
	id := auth.FromContext(ctx)
	if id == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, auth.ErrUnauthenticated)
	}
	team := req.Msg.Team
	if err := checkReadTeam(id, team); err != nil {
		return nil, err
	}
	fs, err := a.fleet()
	if err != nil {
		return nil, err
	}
	quotas, err := fs.ListQuotas(ctx)
	if err != nil {
		return nil, storeError(err, "quotas", "")
	}
	usage, err := fs.PlacementUsage(ctx, a.clock())
	if err != nil {
		return nil, storeError(err, "placement usage", "")
	}
	byTeam := map[string]*teamUse{}
	get := func(t string) *teamUse {
		u := byTeam[t]
		if u == nil {
			u = &teamUse{clusters: map[string]*clusterUse{}}
			byTeam[t] = u
		}
		return u
	}
	if team != "" {
		get(team)
	}
	for _, q := range quotas {
		if team == "" || q.Team == team {
			get(q.Team).quota = &q
		}
	}
	for _, u := range usage {
		if team == "" || u.Team == team {
			get(u.Team).add(u)
		}
	}
	resp := &apiv1.GetQuotasResponse{}
	for _, t := range slices.Sorted(maps.Keys(byTeam)) {
		if !auth.Visible(id, t) {
			continue
		}
		resp.Teams = append(resp.Teams, byTeam[t].proto(t))
	}
	return connect.NewResponse(resp), nil
}

// checkReadTeam checks a request's optional team and that id may read it.
func checkReadTeam(id *auth.Identity, team string) error {
	if team == "" {
		return nil
	}
	if err := auth.CheckTeamName(team); err != nil {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("team: %w", err))
	}
	if err := auth.Allow(id, auth.ReadTeam, auth.Object{Team: team}); err != nil {
		return connect.NewError(connect.CodePermissionDenied, err)
	}
	return nil
}

// teamUse gathers one team's quota and usage.
type teamUse struct {
	quota                 *placement.Quota
	reserved, borrowed    placement.Resources
	workers, borrowedWkrs int64
	clusters              map[string]*clusterUse
}

type clusterUse struct {
	reserved, borrowed    placement.Resources
	workers, borrowedWkrs int64
}

func (t *teamUse) add(u placement.Usage) {
	c := t.clusters[u.Cluster]
	if c == nil {
		c = &clusterUse{}
		t.clusters[u.Cluster] = c
	}
	if u.Borrowed {
		t.borrowed, t.borrowedWkrs = t.borrowed.Add(u.Held), t.borrowedWkrs+int64(u.Workers)
		c.borrowed, c.borrowedWkrs = c.borrowed.Add(u.Held), c.borrowedWkrs+int64(u.Workers)
		return
	}
	t.reserved, t.workers = t.reserved.Add(u.Held), t.workers+int64(u.Workers)
	c.reserved, c.workers = c.reserved.Add(u.Held), c.workers+int64(u.Workers)
}

func (t *teamUse) proto(team string) *apiv1.TeamQuota {
	out := &apiv1.TeamQuota{Team: team, Workers: t.workers, BorrowedWorkers: t.borrowedWkrs}
	var limit placement.Resources
	names := map[string]bool{}
	if t.quota != nil {
		out.Quota = quotaProto(*t.quota)
		limit = t.quota.Limit
		names[placement.ResCPU], names[placement.ResMemory] = true, true
		for c := range t.quota.Clusters {
			if t.clusters[c] == nil {
				t.clusters[c] = &clusterUse{}
			}
		}
	}
	for _, r := range []placement.Resources{limit, t.reserved, t.borrowed} {
		for _, n := range r.Names() {
			names[n] = true
		}
	}
	for _, n := range slices.SortedFunc(maps.Keys(names), compareResourceNames) {
		res, bor := t.reserved.Get(n), t.borrowed.Get(n)
		out.Resources = append(out.Resources, &apiv1.ResourceUse{Resource: n, Limit: limit.Get(n), Reserved: res, Borrowed: bor, Used: res + bor})
	}
	for _, name := range slices.Sorted(maps.Keys(t.clusters)) {
		c := t.clusters[name]
		cu := &apiv1.ClusterUse{Cluster: name, Reserved: resourcesProto(c.reserved), Borrowed: resourcesProto(c.borrowed), Workers: c.workers, BorrowedWorkers: c.borrowedWkrs}
		if t.quota != nil {
			if split, ok := t.quota.Clusters[name]; ok {
				cu.Split = resourcesProto(split)
			}
		}
		out.Clusters = append(out.Clusters, cu)
	}
	return out
}

// compareResourceNames orders cpu, memory, then GPU types by name.
func compareResourceNames(x, y string) int {
	rank := func(n string) int {
		switch n {
		case placement.ResCPU:
			return 0
		case placement.ResMemory:
			return 1
		}
		return 2
	}
	return cmp.Or(cmp.Compare(rank(x), rank(y)), cmp.Compare(x, y))
}

// GetCost sums the cost and worker time of jobs created in a period.
func (a *Admin) GetCost(ctx context.Context, req *connect.Request[apiv1.GetCostRequest]) (*connect.Response[apiv1.GetCostResponse], error) {
	id := auth.FromContext(ctx)
	if id == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, auth.ErrUnauthenticated)
	}
	m := req.Msg
	if err := checkReadTeam(id, m.Team); err != nil {
		return nil, err
	}
	until := a.clock()
	if m.Until != nil {
		if err := m.Until.CheckValid(); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("until: %w", err))
		}
		until = m.Until.AsTime()
	}
	since := until.Add(-DefaultCostPeriod)
	if m.Since != nil {
		if err := m.Since.CheckValid(); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("since: %w", err))
		}
		since = m.Since.AsTime()
	}
	if !since.Before(until) {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("since: %s is not before until (%s)", since.UTC().Format(time.RFC3339), until.UTC().Format(time.RFC3339)))
	}
	jobLimit := int(m.JobLimit)
	switch {
	case jobLimit < 0:
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("job_limit: %d is negative", m.JobLimit))
	case jobLimit == 0:
		jobLimit = defaultCostJobs
	case jobLimit > maxCostJobs:
		jobLimit = maxCostJobs
	}
	f := store.JobFilter{Namespace: m.Team}
	if m.Team == "" && !id.PlatformAdmin {
		// Only the teams the caller may see; none for a task's token.
		f.Namespaces = []string{}
		for _, t := range id.TeamNames() {
			if auth.Visible(id, t) {
				f.Namespaces = append(f.Namespaces, t)
			}
		}
	}
	resp := &apiv1.GetCostResponse{Since: timestamppb.New(since), Until: timestamppb.New(until), Complete: true}
	if f.Namespaces != nil && len(f.Namespaces) == 0 {
		return connect.NewResponse(resp), nil
	}
	fs, err := a.fleet()
	if err != nil {
		return nil, err
	}
	sum, err := scanCost(ctx, fs, f, since, until, m.Jobs, MaxCostJobsScanned)
	if err != nil {
		return nil, err
	}
	for _, t := range slices.Sorted(maps.Keys(sum.teams)) {
		tc := sum.teams[t]
		resp.Teams = append(resp.Teams, tc)
		resp.TotalCostUsd += tc.CostUsd
		resp.TotalWorkerSeconds += tc.WorkerSeconds
		resp.TotalJobs += tc.Jobs
	}
	if m.Jobs {
		slices.SortStableFunc(sum.jobs, func(x, y *apiv1.JobCost) int {
			return cmp.Or(cmp.Compare(y.CostUsd, x.CostUsd), cmp.Compare(y.WorkerSeconds, x.WorkerSeconds), cmp.Compare(x.JobId, y.JobId))
		})
		if len(sum.jobs) > jobLimit {
			resp.JobsOmitted = int64(len(sum.jobs) - jobLimit)
			sum.jobs = sum.jobs[:jobLimit]
		}
		resp.Jobs = sum.jobs
	}
	resp.JobsScanned = int64(sum.scanned)
	if !sum.complete {
		resp.Complete = false
		resp.CoveredSince = timestamppb.New(sum.oldest)
	}
	return connect.NewResponse(resp), nil
}

// costSum is what scanCost found.
type costSum struct {
	teams    map[string]*apiv1.TeamCost
	jobs     []*apiv1.JobCost
	scanned  int
	complete bool
	// oldest is the creation time of the oldest job read.
	oldest time.Time
}

// scanCost reads the jobs f selects that were created in [since, until),
// newest first, at most bound of them, and sums their cost per team (and
// lists them, with jobs).
//
// Job IDs sort by creation time (store.NewJobID: their first characters
// are the Unix milliseconds of creation), so the scan starts at the ID of
// the millisecond after until and stops at the first job created before
// since's millisecond.
func scanCost(ctx context.Context, fs fleetStore, f store.JobFilter, since, until time.Time, jobs bool, bound int) (*costSum, error) {
	sum := &costSum{teams: map[string]*apiv1.TeamCost{}, complete: true}
	// NewJobID of a whole millisecond without randomness ends in zeros:
	// the least ID of that millisecond.
	// IDs encode 45 bits of milliseconds (until the year 3084); past that,
	// start from the newest job.
	if end := until.Truncate(time.Millisecond).Add(time.Millisecond); end.UnixMilli() < 1<<45 {
		f.Before = store.NewJobID(end, nil)
	}
	floor := since.Truncate(time.Millisecond)
	for {
		if sum.scanned >= bound {
			// At the bound: incomplete if any job of the period is left.
			f.Limit = 1
			rest, err := fs.ListJobs(ctx, f)
			if err != nil {
				return nil, storeError(err, "jobs", "")
			}
			if len(rest) > 0 && !rest[0].CreatedAt.Before(floor) {
				sum.complete = false
			}
			return sum, nil
		}
		f.Limit = min(costPageSize, bound-sum.scanned)
		rows, err := fs.ListJobs(ctx, f)
		if err != nil {
			return nil, storeError(err, "jobs", "")
		}
		for i := range rows {
			j := &rows[i]
			if j.CreatedAt.Before(floor) {
				return sum, nil
			}
			sum.scanned++
			sum.oldest = j.CreatedAt
			if j.CreatedAt.Before(since) || !j.CreatedAt.Before(until) {
				continue
			}
			tc := sum.teams[j.Namespace]
			if tc == nil {
				tc = &apiv1.TeamCost{Team: j.Namespace}
				sum.teams[j.Namespace] = tc
			}
			tc.CostUsd += j.CostUSD
			tc.WorkerSeconds += j.WorkerSeconds
			tc.Jobs++
			if jobs {
				sum.jobs = append(sum.jobs, &apiv1.JobCost{
					JobId: j.ID, Name: j.Name, Team: j.Namespace, State: string(j.State),
					CreatedAt: timestamppb.New(j.CreatedAt), CostUsd: j.CostUSD, WorkerSeconds: j.WorkerSeconds,
				})
			}
		}
		if len(rows) < f.Limit {
			return sum, nil
		}
		f.Before = rows[len(rows)-1].ID
	}
}

// clusterFromProto checks a cluster of a request and converts it; errors
// name the field.
func clusterFromProto(p *apiv1.Cluster) (placement.Cluster, error) {
	if p == nil {
		return placement.Cluster{}, errors.New("cluster: required")
	}
	if err := checkClusterName("cluster.name", p.Name); err != nil {
		return placement.Cluster{}, err
	}
	c := placement.Cluster{Name: p.Name, State: placement.Enabled}
	if p.State != "" {
		s, err := placement.ParseClusterState(p.State)
		if err != nil {
			return placement.Cluster{}, fmt.Errorf("cluster.state: %w", err)
		}
		c.State = s
	}
	capacity, err := resourcesFromProto("cluster.capacity", p.Capacity)
	if err != nil {
		return placement.Cluster{}, err
	}
	c.Capacity = capacity
	if len(p.Labels) > maxLabelKeys {
		return placement.Cluster{}, fmt.Errorf("cluster.labels: %d keys, at most %d", len(p.Labels), maxLabelKeys)
	}
	for k, vs := range p.Labels {
		if err := checkLabel("cluster.labels: key", k); err != nil {
			return placement.Cluster{}, err
		}
		var values []string
		if vs != nil {
			values = vs.Values
		}
		if len(values) > maxLabelValues {
			return placement.Cluster{}, fmt.Errorf("cluster.labels[%s]: %d values, at most %d", k, len(values), maxLabelValues)
		}
		for _, v := range values {
			if err := checkLabel(fmt.Sprintf("cluster.labels[%s]: value", k), v); err != nil {
				return placement.Cluster{}, err
			}
		}
		if c.Labels == nil {
			c.Labels = map[string][]string{}
		}
		c.Labels[k] = slices.Compact(slices.Sorted(slices.Values(values)))
	}
	for _, f := range []struct {
		field string
		v     float64
	}{{"cluster.pods_per_second", p.PodsPerSecond}, {"cluster.price_per_cpu_hour", p.PricePerCpuHour}, {"cluster.price_per_gib_hour", p.PricePerGibHour}} {
		if err := checkRate(f.field, f.v); err != nil {
			return placement.Cluster{}, err
		}
	}
	c.PodsPerSecond, c.PricePerCPUHour, c.PricePerGiBHour = p.PodsPerSecond, p.PricePerCpuHour, p.PricePerGibHour
	for t, v := range p.PricePerGpuHour {
		field := fmt.Sprintf("cluster.price_per_gpu_hour[%s]", t)
		if _, ok := c.Capacity.GPU[t]; !ok {
			return placement.Cluster{}, fmt.Errorf("%s: the cluster offers no GPU of type %q (capacity.gpu lists %s)", field, t, listOr(slices.Sorted(maps.Keys(c.Capacity.GPU)), "none"))
		}
		if err := checkRate(field, v); err != nil {
			return placement.Cluster{}, err
		}
		if v != 0 {
			if c.PricePerGPUHour == nil {
				c.PricePerGPUHour = map[string]float64{}
			}
			c.PricePerGPUHour[t] = v
		}
	}
	// The checks above name the request's fields; the record's own
	// validation is the last word on what the store may hold.
	if err := c.Validate(); err != nil {
		return placement.Cluster{}, fmt.Errorf("cluster: %w", err)
	}
	return c, nil
}

// quotaFromProto checks a quota of a request and converts it; errors name
// the field.
func quotaFromProto(p *apiv1.Quota) (placement.Quota, error) {
	if p == nil {
		return placement.Quota{}, errors.New("quota: required")
	}
	if err := auth.CheckTeamName(p.Team); err != nil {
		return placement.Quota{}, fmt.Errorf("quota.team: %w", err)
	}
	limit, err := resourcesFromProto("quota.limit", p.Limit)
	if err != nil {
		return placement.Quota{}, err
	}
	q := placement.Quota{Team: p.Team, Limit: limit, Lend: p.Lend}
	if len(p.Clusters) > maxQuotaClusters {
		return placement.Quota{}, fmt.Errorf("quota.clusters: %d, at most %d", len(p.Clusters), maxQuotaClusters)
	}
	for _, name := range slices.Sorted(maps.Keys(p.Clusters)) {
		field := fmt.Sprintf("quota.clusters[%s]", name)
		if err := checkClusterName(field, name); err != nil {
			return placement.Quota{}, err
		}
		split, err := resourcesFromProto(field, p.Clusters[name])
		if err != nil {
			return placement.Quota{}, err
		}
		if over := split.Exceeds(limit); over != "" {
			return placement.Quota{}, fmt.Errorf("%s: %s %s is over the limit's %s (a split bounds part of the limit)",
				field, over, placement.FormatAmount(over, split.Get(over)), placement.FormatAmount(over, limit.Get(over)))
		}
		if q.Clusters == nil {
			q.Clusters = map[string]placement.Resources{}
		}
		q.Clusters[name] = split
	}
	if err := q.Validate(); err != nil {
		return placement.Quota{}, fmt.Errorf("quota: %w", err)
	}
	return q, nil
}

// resourcesFromProto checks amounts (none negative, GPU types well named)
// and converts them; field prefixes its errors. Zero GPU counts are
// dropped.
func resourcesFromProto(field string, p *apiv1.Resources) (placement.Resources, error) {
	if p == nil {
		return placement.Resources{}, nil
	}
	if p.MilliCpu < 0 {
		return placement.Resources{}, fmt.Errorf("%s.milli_cpu: %d is negative", field, p.MilliCpu)
	}
	if p.MemoryBytes < 0 {
		return placement.Resources{}, fmt.Errorf("%s.memory_bytes: %d is negative", field, p.MemoryBytes)
	}
	r := placement.Resources{MilliCPU: p.MilliCpu, Memory: p.MemoryBytes}
	if len(p.Gpu) > maxGPUTypes {
		return placement.Resources{}, fmt.Errorf("%s.gpu: %d types, at most %d", field, len(p.Gpu), maxGPUTypes)
	}
	for t, n := range p.Gpu {
		if err := checkGPUType(fmt.Sprintf("%s.gpu", field), t); err != nil {
			return placement.Resources{}, err
		}
		if n < 0 {
			return placement.Resources{}, fmt.Errorf("%s.gpu[%s]: %d is negative", field, t, n)
		}
		if n > 0 {
			if r.GPU == nil {
				r.GPU = map[string]int64{}
			}
			r.GPU[t] = n
		}
	}
	return r, nil
}

// clusterObject names a cluster in audit entries; a name that is not a
// valid one is left out (its call is refused as invalid).
func clusterObject(name string) string {
	if !dnsLabel(name) {
		return ""
	}
	return "cluster/" + name
}

// checkClusterName: a DNS label (1 to 63 lowercase letters, digits and
// '-', not starting or ending with '-'), as placement.Cluster.Validate
// wants: "east-1", "local".
func checkClusterName(field, s string) error {
	if s == "" {
		return fmt.Errorf("%s: required", field)
	}
	if !dnsLabel(s) {
		return fmt.Errorf("%s: %q is not a DNS label (1 to 63 lowercase letters, digits and '-', not starting or ending with '-')", field, s)
	}
	return nil
}

// checkGPUType: a GPU type is a DNS label too: "a100", "h100-80gb", "t4".
func checkGPUType(field, s string) error {
	if !dnsLabel(s) {
		return fmt.Errorf("%s: GPU type %q is not a DNS label (1 to 63 lowercase letters, digits and '-', not starting or ending with '-')", field, s)
	}
	return nil
}

func dnsLabel(s string) bool {
	if len(s) == 0 || len(s) > maxNameLen || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func checkLabel(field, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", field)
	}
	return checkAdminText(field, s, maxLabelLen)
}

// checkRate checks a price or a rate: finite and not negative.
func checkRate(field string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return fmt.Errorf("%s: %v: want a finite number, 0 or more", field, v)
	}
	return nil
}

func listOr(xs []string, none string) string {
	if len(xs) == 0 {
		return none
	}
	return strings.Join(xs, ", ")
}

func describeQuota(q placement.Quota) string {
	var b strings.Builder
	fmt.Fprintf(&b, "limit %s", q.Limit)
	for _, c := range slices.Sorted(maps.Keys(q.Clusters)) {
		fmt.Fprintf(&b, "; in %s %s", c, q.Clusters[c])
	}
	if q.Lend {
		b.WriteString("; lends")
	}
	return b.String()
}

func resourcesProto(r placement.Resources) *apiv1.Resources {
	p := &apiv1.Resources{MilliCpu: r.MilliCPU, MemoryBytes: r.Memory}
	for t, n := range r.GPU {
		if n != 0 {
			if p.Gpu == nil {
				p.Gpu = map[string]int64{}
			}
			p.Gpu[t] = n
		}
	}
	return p
}

func clusterProto(c placement.Cluster) *apiv1.Cluster {
	p := &apiv1.Cluster{
		Name: c.Name, State: string(c.State), Capacity: resourcesProto(c.Capacity), PodsPerSecond: c.PodsPerSecond,
		PricePerCpuHour: c.PricePerCPUHour, PricePerGibHour: c.PricePerGiBHour,
	}
	if len(c.PricePerGPUHour) > 0 {
		p.PricePerGpuHour = maps.Clone(c.PricePerGPUHour)
	}
	for k, vs := range c.Labels {
		if p.Labels == nil {
			p.Labels = map[string]*apiv1.LabelValues{}
		}
		p.Labels[k] = &apiv1.LabelValues{Values: slices.Clone(vs)}
	}
	return p
}

func quotaProto(q placement.Quota) *apiv1.Quota {
	p := &apiv1.Quota{Team: q.Team, Limit: resourcesProto(q.Limit), Lend: q.Lend}
	for c, r := range q.Clusters {
		if p.Clusters == nil {
			p.Clusters = map[string]*apiv1.Resources{}
		}
		p.Clusters[c] = resourcesProto(r)
	}
	return p
}
