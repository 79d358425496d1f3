package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/haul-dev/haul/internal/dag"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/sched"
	"github.com/haul-dev/haul/internal/store"
)

// maxWhyParents bounds the parents a why answer lists.
const maxWhyParents = 20

// Why says what keeps a job's tasks (key empty) or one task from running
// now, from the job's scheduling core, its Fleet and the last placement
// refusals. ErrNotOwner: this runner does not own the job's shard now;
// store.ErrNotFound: no such task.
func (r *Runner) Why(ctx context.Context, jobID, key string) (*apiv1.WhyResponse, error) {
	s := r.shards[store.ShardOf(jobID)]
	if !s.leased.Load() {
		return nil, fmt.Errorf("job %s: %w", jobID, ErrNotOwner)
	}
	idx := int32(-1)
	var after []string
	if key != "" {
		t, err := r.cfg.Store.GetTask(ctx, jobID, key)
		if err != nil {
			return nil, err
		}
		idx, after = t.Index, t.After
	}
	resp, blocked, err := s.why(jobID, key, idx)
	if err != nil || !blocked {
		return resp, err
	}
	// The parents come from the store, without the shard's lock: the
	// graph keeps children only, and a walk of a million-task job's
	// edges should not hold up its shard's polls.
	keys, more, err := r.pendingParents(ctx, jobID, after)
	if err != nil {
		return nil, fmt.Errorf("parents of task %s: %w", key, err)
	}
	b := &apiv1.Blocker{Kind: "parents", Tier: -1, Tasks: 1, Parents: keys}
	switch {
	case len(keys) == 0:
		b.Detail = "waiting for its parents, which have just succeeded: it is queued at the runner's next commit"
	case more:
		b.Detail = fmt.Sprintf("waiting for its parents to succeed: %s and more", strings.Join(keys, ", "))
	default:
		b.Detail = fmt.Sprintf("waiting for %d parent task(s) to succeed: %s", len(keys), strings.Join(keys, ", "))
	}
	resp.Blockers = append(resp.Blockers, b)
	return resp, nil
}

// pendingParents lists the parents named by a task's after list (globs
// expanded) that have not succeeded, as the store has them (at most a
// commit behind the runner): at most maxWhyParents, and whether there
// are more.
func (r *Runner) pendingParents(ctx context.Context, jobID string, after []string) (keys []string, more bool, err error) {
	waiting := []store.TaskState{store.TaskBlocked, store.TaskQueued, store.TaskRunning}
	for _, a := range after {
		if len(keys) > maxWhyParents {
			break
		}
		if dag.IsGlob(a) {
			ts, err := r.cfg.Store.ListTasks(ctx, store.TaskFilter{JobID: jobID, States: waiting, KeyGlob: a, After: -1, Limit: maxWhyParents + 1 - len(keys)})
			if err != nil {
				return nil, false, err
			}
			for _, t := range ts {
				keys = append(keys, t.Key)
			}
			continue
		}
		t, err := r.cfg.Store.GetTask(ctx, jobID, a)
		if err != nil {
			return nil, false, err
		}
		if slices.Contains(waiting, t.State) {
			keys = append(keys, t.Key)
		}
	}
	if len(keys) > maxWhyParents {
		return keys[:maxWhyParents], true, nil
	}
	return keys, false, nil
}

// why answers Why from the shard's state, under its lock; blocked says
// the task waits for its parents (which Why adds without the lock).
func (s *shard) why(jobID, key string, idx int32) (resp *apiv1.WhyResponse, blocked bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	resp = &apiv1.WhyResponse{JobId: jobID, TaskKey: key}
	jr := s.jobs[jobID]
	if jr == nil || s.fleet == nil {
		resp.State = string(store.JobPending)
		why := "no runner has loaded the job yet (it was submitted moments ago, or its shard is moving to another runner)"
		if s.loading[jobID] {
			why = "the runner is loading the job"
		}
		resp.Blockers = []*apiv1.Blocker{{Kind: "pending", Detail: why, Tier: -1}}
		return resp, false, nil
	}
	core := jr.core
	if idx >= 0 {
		if int(idx) >= core.Tasks() {
			return nil, false, fmt.Errorf("task %s of job %s: %w", key, jobID, store.ErrNotFound)
		}
		st := core.State(idx)
		resp.State = string(storeState(st))
		switch st {
		case sched.Blocked:
			return resp, true, nil
		case sched.Queued:
			if until, ok := core.BackoffUntil(idx); ok {
				resp.Blockers = append(resp.Blockers, &apiv1.Blocker{Kind: "backoff", Tier: core.Tier(idx), Tasks: 1, Until: timestamppb.New(until),
					Detail: fmt.Sprintf("attempt %d failed; the retry waits out its backoff until %s (in %v)", core.Attempts(idx), until.Format(time.RFC3339), until.Sub(now).Round(time.Millisecond))})
				break
			}
			resp.Blockers = append(resp.Blockers, s.tierBlockers(jr, core.Tier(idx), 1, now)...)
		}
		return resp, false, nil
	}
	resp.State = string(jr.job.State)
	counts := core.Counts()
	if n := counts[sched.Blocked]; n > 0 {
		resp.Blockers = append(resp.Blockers, &apiv1.Blocker{Kind: "parents", Tier: -1, Tasks: n,
			Detail: fmt.Sprintf("%d task(s) wait for their parents to succeed (haul task why names a task's)", n)})
	}
	for tier := range int32(len(jr.workers)) {
		if core.Waiting(tier) == 0 {
			continue
		}
		if n, first := core.InBackoff(tier); n > 0 {
			resp.Blockers = append(resp.Blockers, &apiv1.Blocker{Kind: "backoff", Tier: tier, Tasks: int64(n), Until: timestamppb.New(first),
				Detail: fmt.Sprintf("%d task(s) of tier %s wait out a retry backoff; the first ends at %s", n, tierName(jr, tier), first.Format(time.RFC3339))})
		}
		if ready := core.Ready(tier); ready > 0 {
			resp.Blockers = append(resp.Blockers, s.tierBlockers(jr, tier, int64(ready), now)...)
		}
	}
	return resp, false, nil
}

func tierName(jr *jobRun, tier int32) string {
	if int(tier) < len(jr.job.Tiers) && jr.job.Tiers[tier].Name != "" {
		return jr.job.Tiers[tier].Name
	}
	return fmt.Sprint(tier)
}

// tierBlockers says why n ready tasks of a tier wait for a worker. Call
// with s.mu held.
func (s *shard) tierBlockers(jr *jobRun, tier int32, n int64, now time.Time) []*apiv1.Blocker {
	name := tierName(jr, tier)
	st, err := s.fleet.TierStatus(jr.job.ID, tier, now)
	if err != nil {
		return []*apiv1.Blocker{{Kind: "pending", Tier: tier, Tasks: n, Detail: "the runner has no workers for this job: " + err.Error()}}
	}
	var out []*apiv1.Blocker
	if int(tier) < len(jr.blocked) && !jr.blocked[tier].at.IsZero() {
		pb := jr.blocked[tier].blocker
		out = append(out, &apiv1.Blocker{Kind: string(pb.Kind), Tier: tier, Tasks: n, Detail: pb.Detail,
			Resource: pb.Resource, Used: pb.Used, Limit: pb.Limit, Clusters: pb.Clusters,
			Since: timestamppb.New(jr.blocked[tier].at)})
	}
	if st.MaxWorkers > 0 && st.JobWorkers >= st.MaxWorkers {
		out = append(out, &apiv1.Blocker{Kind: "max-workers", Tier: tier, Tasks: n, Limit: int64(st.MaxWorkers), Used: int64(st.JobWorkers),
			Detail: fmt.Sprintf("the job holds %d workers, its max_workers", st.JobWorkers)})
	}
	if !st.BackoffUntil.IsZero() {
		out = append(out, &apiv1.Blocker{Kind: "starting", Tier: tier, Tasks: n, Until: timestamppb.New(st.BackoffUntil),
			Detail: fmt.Sprintf("workers of tier %s ended before their first poll; the next start waits until %s", name, st.BackoffUntil.Format(time.RFC3339))})
	}
	if st.Starting > 0 {
		out = append(out, &apiv1.Blocker{Kind: "starting", Tier: tier, Tasks: n, Since: timestamppb.New(st.StartingSince),
			Detail: fmt.Sprintf("%d worker(s) of tier %s are starting, the first asked for %v ago", st.Starting, name, now.Sub(st.StartingSince).Round(time.Millisecond))})
	}
	if len(out) > 0 {
		return out
	}
	if st.Active >= st.Target && st.Active > 0 {
		return []*apiv1.Blocker{{Kind: "busy", Tier: tier, Tasks: n, Used: int64(st.Active), Limit: int64(st.Target),
			Detail: fmt.Sprintf("the tier's %d worker(s) are busy with the job's other tasks (reuse targeting wants %d)", st.Active, st.Target)}}
	}
	if cap := int64(s.cfg.MaxWorkers); s.nworkers.Load() >= cap {
		return []*apiv1.Blocker{{Kind: "runner", Tier: tier, Tasks: n, Used: s.nworkers.Load(), Limit: cap,
			Detail: fmt.Sprintf("the runner holds its cap of %d workers (jobs of higher priority, then older ones, come first)", cap)}}
	}
	return []*apiv1.Blocker{{Kind: "busy", Tier: tier, Tasks: n,
		Detail: "a worker is due to take it at its next poll"}}
}

// Why implements RunnerService.Why with Runner.Why.
func (s Service) Why(ctx context.Context, req *connect.Request[apiv1.WhyRequest]) (*connect.Response[apiv1.WhyResponse], error) {
	if err := s.checkGateway(req.Header()); err != nil {
		return nil, err
	}
	resp, err := s.Runner.Why(ctx, req.Msg.JobId, req.Msg.TaskKey)
	switch {
	case err == nil:
		return connect.NewResponse(resp), nil
	case errors.Is(err, ErrNotOwner):
		return nil, connect.NewError(connect.CodeUnavailable, err)
	case errors.Is(err, store.ErrNotFound):
		return nil, connect.NewError(connect.CodeNotFound, err)
	}
	return nil, connect.NewError(connect.CodeInternal, err)
}
