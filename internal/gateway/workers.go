package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/store"
)

// maxWorkerAttempts is how many of a worker's attempts GetWorker returns.
const maxWorkerAttempts = 1000

// ListWorkers lists worker records, newest jobs' first, a page at a time:
// only workers of jobs of the teams the caller may see (all, for a
// platform admin), like ListJobs. A tier is named by its name or index.
func (g *Gateway) ListWorkers(ctx context.Context, req *connect.Request[apiv1.ListWorkersRequest]) (*connect.Response[apiv1.ListWorkersResponse], error) {
	id := auth.FromContext(ctx)
	if id == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("no identity: %s", howToAuthenticate))
	}
	m := req.Msg
	if ns := m.Namespace; ns != "" && !auth.Visible(id, ns) {
		return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%w: %s may not see the workers of team %q (a viewer role there is needed)", auth.ErrDenied, id, ns))
	}
	size := pageSize(m.PageSize, 100, 1000)
	f := store.WorkerFilter{JobID: m.JobId, Cluster: m.Cluster, JobLabels: m.JobLabels, Before: m.PageToken, Limit: size + 1}
	switch m.State {
	case "":
	case "running", "ended":
		running := m.State == "running"
		f.Running = &running
	default:
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("unknown worker state %q (want running or ended)", m.State))
	}
	if m.Namespace != "" {
		f.Namespaces = []string{m.Namespace}
	} else if !id.PlatformAdmin {
		f.Namespaces = []string{}
		for _, team := range id.TeamNames() {
			if auth.Visible(id, team) {
				f.Namespaces = append(f.Namespaces, team)
			}
		}
	}
	// A tier by index filters in the store; by name, it needs each
	// worker's job (its tiers' names): with the job given, resolved here,
	// else matched below.
	tierName := ""
	if m.Tier != "" {
		if n, err := strconv.ParseInt(m.Tier, 10, 32); err == nil && n >= 0 {
			t := int32(n)
			f.Tier = &t
		} else if m.JobId != "" {
			j, err := g.visibleJob(ctx, id, m.JobId)
			if err != nil {
				return nil, err
			}
			t, ok := tierIndex(j, m.Tier)
			if !ok {
				return connect.NewResponse(&apiv1.ListWorkersResponse{}), nil
			}
			f.Tier = &t
		} else {
			tierName = m.Tier
		}
	}
	jobs := map[string]*store.Job{}
	prices := g.clusterPrices(ctx)
	resp := &apiv1.ListWorkersResponse{}
	now := time.Now()
	// Filtering by a tier's name may drop rows: read pages until this one
	// is full (a bounded number of them).
	for range 20 {
		ws, err := g.cfg.Store.ListWorkerRecords(ctx, f)
		if err != nil {
			return nil, storeError(err, "workers", "")
		}
		more := len(ws) > size
		for i := range ws {
			w := &ws[i]
			if len(resp.Workers) == size {
				resp.NextPageToken = resp.Workers[size-1].Id
				return connect.NewResponse(resp), nil
			}
			// The store filtered by team already; this check keeps a
			// worker of another team out even if a driver did not.
			if !auth.Visible(id, teamOfWorker(w)) {
				continue
			}
			j := g.workerJob(ctx, jobs, w.JobID)
			if tierName != "" && (j == nil || int(w.Tier) >= len(j.Tiers) || j.Tiers[w.Tier].Name != tierName) {
				continue
			}
			resp.Workers = append(resp.Workers, workerProto(w, j, prices, now))
		}
		if !more {
			return connect.NewResponse(resp), nil
		}
		f.Before = ws[len(ws)-1].ID
	}
	if len(resp.Workers) > 0 {
		resp.NextPageToken = resp.Workers[len(resp.Workers)-1].Id
	}
	return connect.NewResponse(resp), nil
}

// GetWorker returns one worker and the attempts it ran. A worker's ID
// starts with its job's ID ("<job>-<tier>-<n>"): the job is read and
// authorized as any read of it is, so a worker of a job of a team the
// caller may not see is not found exactly as the job is not.
func (g *Gateway) GetWorker(ctx context.Context, req *connect.Request[apiv1.GetWorkerRequest]) (*connect.Response[apiv1.GetWorkerResponse], error) {
	if auth.FromContext(ctx) == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("no identity: %s", howToAuthenticate))
	}
	wid := req.Msg.WorkerId
	if wid == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("worker id is required"))
	}
	notFound := connect.NewError(connect.CodeNotFound, fmt.Errorf("worker %s not found", wid))
	i := store.JobIDLen
	if len(wid) <= i || wid[i] != '-' {
		return nil, notFound
	}
	j, err := g.job(ctx, wid[:i])
	if err != nil {
		return nil, err
	}
	if err := g.authorizeJob(ctx, auth.ReadJob, j); err != nil {
		return nil, err
	}
	ws, err := g.cfg.Store.ListWorkers(ctx, j.ID)
	if err != nil {
		return nil, storeError(err, "workers of job", j.ID)
	}
	var w *store.WorkerRecord
	for i := range ws {
		if ws[i].ID == wid {
			w = &ws[i]
		}
	}
	if w == nil {
		return nil, notFound
	}
	resp := &apiv1.GetWorkerResponse{Worker: workerProto(w, j, g.clusterPrices(ctx), time.Now())}
	as, err := g.cfg.Store.ListAttemptsByWorker(ctx, w.JobID, w.ID, maxWorkerAttempts)
	if err != nil {
		return nil, storeError(err, "attempts of worker", w.ID)
	}
	for i := range as {
		resp.Attempts = append(resp.Attempts, &apiv1.WorkerAttempt{TaskKey: as[i].TaskKey, Attempt: AttemptProto(j, &as[i].Attempt)})
	}
	return connect.NewResponse(resp), nil
}

// visibleJob returns a job the caller may see, or not found.
func (g *Gateway) visibleJob(ctx context.Context, id *auth.Identity, jobID string) (*store.Job, error) {
	j, err := g.cfg.Store.GetJob(ctx, jobID)
	if err != nil {
		return nil, storeError(err, "job", jobID)
	}
	if !auth.Visible(id, teamOf(j)) {
		return nil, notFoundJob(jobID)
	}
	return j, nil
}

// workerJob returns a worker's job from cache, reading it once; nil when
// it cannot be read (retired).
func (g *Gateway) workerJob(ctx context.Context, cache map[string]*store.Job, jobID string) *store.Job {
	if j, ok := cache[jobID]; ok {
		return j
	}
	j, err := g.cfg.Store.GetJob(ctx, jobID)
	if err != nil {
		j = nil
	}
	cache[jobID] = j
	return j
}

func tierIndex(j *store.Job, name string) (int32, bool) {
	for i, t := range j.Tiers {
		if t.Name == name {
			return int32(i), true
		}
	}
	return 0, false
}

func teamOfWorker(w *store.WorkerRecord) string {
	if w.Team == "" {
		return DefaultTeam
	}
	return w.Team
}

// clusterPrices returns the clusters the store knows, by name (nil when
// it keeps none).
func (g *Gateway) clusterPrices(ctx context.Context) map[string]placement.Cluster {
	ps, ok := g.cfg.Store.(store.PlacementStore)
	if !ok {
		return nil
	}
	cs, err := ps.ListClusters(ctx)
	if err != nil {
		return nil
	}
	out := make(map[string]placement.Cluster, len(cs))
	for _, c := range cs {
		out[c.Name] = c
	}
	return out
}

// workerProto converts a worker record. Its cost is its lifetime (so far,
// while it runs) times the hourly price of what its tier holds in its
// cluster, when the cluster has a price; cost_known says whether it has.
func workerProto(w *store.WorkerRecord, j *store.Job, prices map[string]placement.Cluster, now time.Time) *apiv1.Worker {
	p := &apiv1.Worker{Id: w.ID, JobId: w.JobID, Namespace: w.Team, Tier: strconv.Itoa(int(w.Tier)), Cluster: w.Cluster,
		State: "running", StartedAt: ts(w.StartedAt), EndedAt: ts(w.EndedAt), EndReason: w.EndReason, Attempts: w.Attempts}
	if !w.EndedAt.IsZero() {
		p.State = "ended"
	}
	if j == nil || int(w.Tier) >= len(j.Tiers) {
		return p
	}
	p.Tier = j.Tiers[w.Tier].Name
	if p.Namespace == "" {
		p.Namespace = j.Namespace
	}
	c, ok := prices[w.Cluster]
	if !ok || w.StartedAt.IsZero() {
		return p
	}
	hourly := c.HourlyPrice(j.Tiers[w.Tier].Resources())
	if hourly <= 0 || math.IsNaN(hourly) || math.IsInf(hourly, 0) {
		return p
	}
	end := w.EndedAt
	if end.IsZero() {
		end = now
	}
	if life := end.Sub(w.StartedAt).Hours(); life > 0 {
		p.EstimatedCostUsd = life * hourly
	}
	p.CostKnown = true
	return p
}
