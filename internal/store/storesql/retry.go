package storesql

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/haul-dev/haul/internal/dag"
	"github.com/haul-dev/haul/internal/store"
)

// notifyColumn is the JSON of a job's notify column.
type notifyColumn struct {
	Webhook string   `json:"webhook"`
	On      []string `json:"on"`
}

// RetryColumns encodes a job's params and webhook (nil for none) for
// CreateJob.
func RetryColumns(job *store.Job) (params, notify []byte, err error) {
	if len(job.Params) > 0 {
		if err := checkMap("params", job.Params); err != nil {
			return nil, nil, Reject(fmt.Errorf("job %s: %w", job.ID, err))
		}
		if params, err = json.Marshal(job.Params); err != nil {
			return nil, nil, Reject(fmt.Errorf("job %s: params: %w", job.ID, err))
		}
	}
	if n := job.Notify; n != nil {
		if err := checkText("notify.webhook", n.Webhook); err != nil {
			return nil, nil, Reject(fmt.Errorf("job %s: %w", job.ID, err))
		}
		if err := checkList("notify.on", n.On); err != nil {
			return nil, nil, Reject(fmt.Errorf("job %s: %w", job.ID, err))
		}
		if notify, err = json.Marshal(notifyColumn{Webhook: n.Webhook, On: n.On}); err != nil {
			return nil, nil, Reject(fmt.Errorf("job %s: notify: %w", job.ID, err))
		}
	}
	return params, notify, nil
}

// RetryScan holds the jobRetryColumns of one row being scanned: params,
// retries, notify, notify_state, notify_event, notify_round,
// notify_attempts, notify_error, notify_next_at, notify_delivered_at.
type RetryScan struct {
	params, notify        []byte
	state, event, lastErr *string
	round, attempts       int32
	next, delivered       *int64
}

// Dest returns the scan destinations, in column order.
func (r *RetryScan) Dest(j *store.Job) []any {
	return []any{&r.params, &j.Retries, &r.notify, &r.state, &r.event, &r.round, &r.attempts, &r.lastErr, &r.next, &r.delivered}
}

// Finish decodes what was scanned into j.
func (r *RetryScan) Finish(j *store.Job) error {
	if len(r.params) > 0 && string(r.params) != "null" {
		m, err := DecodeMap("params", r.params)
		if err != nil {
			return err
		}
		if len(m) > 0 {
			j.Params = m
		}
	}
	if len(r.notify) == 0 || string(r.notify) == "null" {
		return nil
	}
	var n notifyColumn
	if err := json.Unmarshal(r.notify, &n); err != nil {
		return fmt.Errorf("job %s: decode notify: %w", j.ID, err)
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	j.Notify = &store.JobNotify{Webhook: n.Webhook, On: n.On, State: str(r.state), Event: str(r.event),
		Round: r.round, Attempts: r.attempts, LastError: str(r.lastErr),
		NextAt: FromNanos(r.next), DeliveredAt: FromNanos(r.delivered)}
	return nil
}

// retryStates are the states RetryTasks selects by default; succeeded may
// be named as well.
var retryStates = []store.TaskState{store.TaskFailed, store.TaskUpstreamFailed, store.TaskCancelled}

// CheckRetryState refuses to retry a job that has not ended.
func CheckRetryState(jobID string, s store.JobState) error {
	if s.Terminal() {
		return nil
	}
	return Reject(fmt.Errorf("retry job %s: the job is %s: only an ended job (succeeded, failed or cancelled) can be retried; wait for it to end or cancel it", jobID, s))
}

// RetrySelect finds what RetryTasks resets, from a job's tasks read in
// index order.
type RetrySelect struct {
	jobID  string
	f      store.RetryFilter
	states []store.TaskState

	keys    []string
	after   [][]string
	tstates []store.TaskState
	seeds   []int32
}

// NewRetrySelect checks f and returns a selection for it.
func NewRetrySelect(jobID string, f store.RetryFilter) (*RetrySelect, error) {
	sel := &RetrySelect{jobID: jobID, f: f, states: f.States}
	if len(sel.states) == 0 {
		sel.states = retryStates
	}
	for _, s := range sel.states {
		if !slices.Contains(retryStates, s) && s != store.TaskSucceeded {
			return nil, Reject(fmt.Errorf("retry job %s: state %q: only ended tasks (failed, upstream_failed, cancelled, succeeded) can be retried", jobID, s))
		}
	}
	if f.KeyGlob != "" {
		if _, err := ParseGlob(f.KeyGlob); err != nil {
			return nil, Reject(fmt.Errorf("retry job %s: key glob %q: %w", jobID, f.KeyGlob, err))
		}
	}
	return sel, nil
}

// Add takes the next task (index order).
func (r *RetrySelect) Add(key string, after []byte, s store.TaskState) error {
	deps, err := DecodeList("after", after)
	if err != nil {
		return fmt.Errorf("retry job %s: task %q: %w", r.jobID, key, err)
	}
	i := int32(len(r.keys))
	r.keys = append(r.keys, key)
	r.after = append(r.after, deps)
	r.tstates = append(r.tstates, s)
	if slices.Contains(r.states, s) {
		if ok, _ := path.Match(r.f.KeyGlob, key); ok || r.f.KeyGlob == "" {
			r.seeds = append(r.seeds, i)
		}
	}
	return nil
}

// Resolve returns the indexes of the tasks to reset, in order: the
// matched tasks and their dependents that have not succeeded. No match is
// an error naming the filter.
func (r *RetrySelect) Resolve() ([]int32, error) {
	if len(r.seeds) == 0 {
		return nil, Reject(fmt.Errorf("retry job %s: no task matches %s", r.jobID, r.describe()))
	}
	g, err := dag.Build(r.keys, r.after)
	if err != nil {
		return nil, Reject(fmt.Errorf("retry job %s: rebuild its graph: %w", r.jobID, err))
	}
	return g.Dependents(r.seeds, func(t int32) bool { return r.tstates[t] != store.TaskSucceeded }), nil
}

func (r *RetrySelect) describe() string {
	names := make([]string, len(r.states))
	for i, s := range r.states {
		names[i] = string(s)
	}
	d := "state " + strings.Join(names, ", ")
	if r.f.KeyGlob != "" {
		d = fmt.Sprintf("key %q and %s", r.f.KeyGlob, d)
	}
	return d
}

// Result is the RetryResult of a reset.
func (r *RetrySelect) Result(reset []int32) store.RetryResult {
	res := store.RetryResult{Retried: int64(len(reset))}
	for _, t := range r.seeds {
		if len(res.Matched) == store.MaxRetryMatched {
			break
		}
		res.Matched = append(res.Matched, r.keys[t])
	}
	return res
}
