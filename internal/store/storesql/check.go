// Package storesql holds what haul's two SQL store drivers share: checks of
// the values a job, appended tasks and a batch carry (both drivers accept
// exactly the same input), the column codecs (times as Unix nanoseconds,
// JSON maps and lists, an attempt's GPU figures as JSON), the run tier a
// new task starts on, and the parser of task-key globs, which each driver
// renders in its own dialect. It imports only the store package.
package storesql

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/haul-dev/haul/internal/store"
)

// Times are stored as Unix nanoseconds; these are the bounds of that.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// checkText refuses strings PostgreSQL cannot store in a text column
// (invalid UTF-8, NUL bytes); the sqlite driver refuses them too, so that
// both drivers accept the same jobs.
// storableText is checkText's rule without the error.
func storableText(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

func checkText(field, s string) error {
	if storableText(s) {
		return nil
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q: not valid UTF-8", field, s)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s %q: holds a NUL byte", field, s)
	}
	return nil
}

func checkList(field string, l []string) error {
	for i, s := range l {
		if err := checkText(fmt.Sprintf("%s[%d]", field, i), s); err != nil {
			return err
		}
	}
	return nil
}

func checkMap(field string, m map[string]string) error {
	for k, v := range m {
		if err := checkText(field+" key", k); err != nil {
			return err
		}
		if err := checkText(fmt.Sprintf("%s[%q]", field, k), v); err != nil {
			return err
		}
	}
	return nil
}

func checkTime(field string, t time.Time) error {
	if !t.IsZero() && (t.Before(minTime) || t.After(maxTime)) {
		return fmt.Errorf("%s %s: outside the storable range %s to %s", field, t, minTime.UTC(), maxTime.UTC())
	}
	return nil
}

// checkFinite refuses NaN and infinities: SQLite stores NaN as NULL and
// PostgreSQL keeps it, so the drivers would disagree.
func checkFinite(field string, f float64) error {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("%s %v: not a finite number", field, f)
	}
	return nil
}

// checkAmount refuses what no measure of use can be: a negative, NaN or
// infinite number.
func checkAmount(field string, f float64) error {
	if err := checkFinite(field, f); err != nil {
		return err
	}
	if f < 0 {
		return fmt.Errorf("%s %v: negative", field, f)
	}
	return nil
}

func checkCount(field string, n int64) error {
	if n < 0 {
		return fmt.Errorf("%s %d: negative", field, n)
	}
	return nil
}

// checkTier checks a tier index of a task: at least 0 and below the job's
// tier count; a job without tiers runs its tasks on one default tier, 0.
// tierWithin is checkTier's rule without the error.
func tierWithin(tier int32, tiers int) bool { return tier >= 0 && (tier == 0 || int(tier) < tiers) }

func checkTier(field string, tier int32, tiers int) error {
	if tierWithin(tier, tiers) {
		return nil
	}
	if tier < 0 {
		return fmt.Errorf("%s %d: negative", field, tier)
	}
	if tiers == 0 && tier > 0 {
		return fmt.Errorf("%s %d: the job has no tiers (its tasks run on one default tier, 0)", field, tier)
	}
	if tiers > 0 && int(tier) >= tiers {
		return fmt.Errorf("%s %d: the job has %d tiers (0 to %d)", field, tier, tiers, tiers-1)
	}
	return nil
}

func checkUsage(u *store.Usage) error {
	for _, c := range []struct {
		field string
		f     float64
	}{{"usage.cpu_user_seconds", u.CPUUserSeconds}, {"usage.cpu_system_seconds", u.CPUSystemSeconds}} {
		if err := checkAmount(c.field, c.f); err != nil {
			return err
		}
	}
	if err := checkCount("usage.peak_rss_bytes", u.PeakRSSBytes); err != nil {
		return err
	}
	if err := checkCount("usage.avg_rss_bytes", u.AvgRSSBytes); err != nil {
		return err
	}
	for i := range u.GPUs {
		g := &u.GPUs[i]
		if err := checkText(fmt.Sprintf("usage.gpus[%d].name", i), g.Name); err != nil {
			return err
		}
		if err := checkCount(fmt.Sprintf("usage.gpus[%d].peak_memory_bytes", i), g.PeakMemoryBytes); err != nil {
			return err
		}
		if err := checkAmount(fmt.Sprintf("usage.gpus[%d].avg_utilization_percent", i), g.AvgUtilizationPercent); err != nil {
			return err
		}
	}
	return checkText("usage.gpu_note", u.GPUNote)
}

func checkJobUsage(u *store.JobUsage) error {
	for _, c := range []struct {
		field string
		f     float64
	}{
		{"usage.memory_requested_byte_seconds", u.MemoryRequestedByteSeconds},
		{"usage.memory_used_byte_seconds", u.MemoryUsedByteSeconds},
		{"usage.cpu_requested_seconds", u.CPURequestedSeconds},
		{"usage.cpu_used_seconds", u.CPUUsedSeconds},
	} {
		if err := checkAmount(c.field, c.f); err != nil {
			return err
		}
	}
	if err := checkCount("usage.peak_rss_bytes", u.PeakRSSBytes); err != nil {
		return err
	}
	return checkCount("usage.oom_attempts", u.OOMAttempts)
}

func CheckTaskState(field string, s store.TaskState) error {
	if !slices.Contains(store.TaskStates, s) {
		return fmt.Errorf("%s %q: not a task state", field, s)
	}
	return nil
}

func CheckJobState(field string, s store.JobState) error {
	switch s {
	case store.JobPending, store.JobRunning, store.JobSucceeded, store.JobFailed, store.JobCancelled:
		return nil
	}
	return fmt.Errorf("%s %q: not a job state", field, s)
}

func checkAttemptState(field string, s store.AttemptState) error {
	switch s {
	case store.AttemptRunning, store.AttemptSucceeded, store.AttemptFailed, store.AttemptLost, store.AttemptCancelled:
		return nil
	}
	return fmt.Errorf("%s %q: not an attempt state", field, s)
}

// CheckNewJob validates a job and its tasks for CreateJob. Its errors wrap
// store.ErrRejected.
func CheckNewJob(job *store.Job, tasks []store.Task) error {
	return Reject(checkNewJob(job, tasks))
}

func checkNewJob(job *store.Job, tasks []store.Task) error {
	if job == nil {
		return fmt.Errorf("create job: job is nil")
	}
	if job.ID == "" {
		return fmt.Errorf("create job: job ID is empty")
	}
	if err := checkText("job ID", job.ID); err != nil {
		return fmt.Errorf("create job: %w", err)
	}
	err := func() error {
		for _, c := range []struct{ field, s string }{{"name", job.Name}, {"namespace", job.Namespace}, {"submitted_by", job.SubmittedBy}} {
			if err := checkText(c.field, c.s); err != nil {
				return err
			}
		}
		if err := checkMap("labels", job.Labels); err != nil {
			return err
		}
		if err := checkMap("env", job.Env); err != nil {
			return err
		}
		if err := checkSecretMap("secret env", job.SecretEnv); err != nil {
			return err
		}
		for i, tier := range job.Tiers {
			if err := checkText(fmt.Sprintf("tiers[%d].name", i), tier.Name); err != nil {
				return err
			}
			if err := checkFinite(fmt.Sprintf("tiers[%d].cpu", i), tier.CPU); err != nil {
				return err
			}
		}
		if err := checkWorker(&job.Worker); err != nil {
			return err
		}
		if err := checkTime("created_at", job.CreatedAt); err != nil {
			return err
		}
		if err := checkGroups(job.Groups); err != nil {
			return err
		}
		return checkTasks(job.ID, 0, tasks, len(job.Tiers), "tasks must have indexes 0..n-1 in order")
	}()
	if err != nil {
		return fmt.Errorf("create job %s: %w", job.ID, err)
	}
	return nil
}

// checkTasks checks tasks to be stored as tasks first, first+1, ... of job
// jobID, whose tiers number tiers: indexes in order from first (rule says
// what the caller requires, for the error), the job ID if set, keys present
// and unique among tasks, texts storable and tiers within the job's. It is
// what CreateJob and AppendTasks check of each task.
func checkTasks(jobID string, first int64, tasks []store.Task, tiers int, rule string) error {
	keys := make(map[string]int32, len(tasks))
	for i := range tasks {
		t := &tasks[i]
		if want := first + int64(i); int64(t.Index) != want {
			return fmt.Errorf("tasks[%d]: index %d, want %d (%s)", i, t.Index, want, rule)
		}
		if t.JobID != "" && t.JobID != jobID {
			return fmt.Errorf("task %d: job ID %q, want %q or empty", t.Index, t.JobID, jobID)
		}
		if t.Key == "" {
			return fmt.Errorf("task %d: key is empty", t.Index)
		}
		if j, dup := keys[t.Key]; !dup && storable(t, tiers) {
			keys[t.Key] = t.Index
			continue // the common case, checked without naming fields
		} else if dup {
			return fmt.Errorf("task %d: key %q already used by task %d", t.Index, t.Key, j)
		}
		if err := checkText(fmt.Sprintf("task %d: key", t.Index), t.Key); err != nil {
			return err
		}
		if j, dup := keys[t.Key]; dup {
			return fmt.Errorf("task %d: key %q already used by task %d", t.Index, t.Key, j)
		}
		keys[t.Key] = t.Index
		if err := checkList(fmt.Sprintf("task %q: argv", t.Key), t.Argv); err != nil {
			return err
		}
		if err := checkMap(fmt.Sprintf("task %q: env", t.Key), t.Env); err != nil {
			return err
		}
		if err := checkText(fmt.Sprintf("task %q: cwd", t.Key), t.Cwd); err != nil {
			return err
		}
		if err := checkList(fmt.Sprintf("task %q: after", t.Key), t.After); err != nil {
			return err
		}
		if err := checkTier(fmt.Sprintf("task %q: tier", t.Key), t.Tier, tiers); err != nil {
			return err
		}
		if err := checkTier(fmt.Sprintf("task %q: run tier", t.Key), t.RunTier, tiers); err != nil {
			return err
		}
	}
	return nil
}

// storable reports whether checkTasks would find nothing wrong with t's
// texts and tiers; it formats no field names (a million-task submit called
// Sprintf seven million times for them), and checkTasks names the field
// when it says false.
func storable(t *store.Task, tiers int) bool {
	if !storableText(t.Key) || !storableText(t.Cwd) {
		return false
	}
	for _, l := range [][]string{t.Argv, t.After} {
		for _, s := range l {
			if !storableText(s) {
				return false
			}
		}
	}
	for k, v := range t.Env {
		if !storableText(k) || !storableText(v) {
			return false
		}
	}
	return tierWithin(t.Tier, tiers) && tierWithin(t.RunTier, tiers)
}

// CheckAppendJobID returns an error wrapping store.ErrNotFound for a job ID
// that no stored job can have (empty, invalid UTF-8, a NUL byte), so that
// AppendTasks need not ask the database about it; nil otherwise. Like the
// other append checks, its error does not name the job: the driver wraps it
// with "append tasks to job ID".
func CheckAppendJobID(jobID string) error {
	if jobID == "" || checkText("job ID", jobID) != nil {
		return store.ErrNotFound
	}
	return nil
}

// CheckAppendRow is CheckAppend with the job's tiers as read from its row
// (the JSON tiers column).
func CheckAppendRow(jobID, state string, taskCount int64, tiers []byte, tasks []store.Task) error {
	jobTiers, err := DecodeTiers(tiers)
	if err != nil {
		return err
	}
	return CheckAppend(jobID, store.JobState(state), taskCount, len(jobTiers), tasks)
}

// CheckAppend validates tasks for AppendTasks against job jobID as stored,
// read in the transaction that appends: its state (pending or running), its
// task count (the first task's index) and its number of tiers. A key
// that a stored task of the job already has is left to the database's
// unique index (see DuplicateKey).
//
// Its errors wrap store.ErrRejected.
func CheckAppend(jobID string, state store.JobState, taskCount int64, tiers int, tasks []store.Task) error {
	return Reject(checkAppend(jobID, state, taskCount, tiers, tasks))
}

func checkAppend(jobID string, state store.JobState, taskCount int64, tiers int, tasks []store.Task) error {
	if state.Terminal() {
		return fmt.Errorf("the job has ended (state %s): no task can be added", state)
	}
	if err := CheckJobState("stored state", state); err != nil {
		return err
	}
	rule := fmt.Sprintf("the job has %d tasks: appended tasks must have indexes %d..%d in order",
		taskCount, taskCount, taskCount+int64(len(tasks))-1)
	return checkTasks(jobID, taskCount, tasks, tiers, rule)
}

// DuplicateKey is the error of AppendTasks for task t, whose key the job's
// stored task stored already has; it wraps store.ErrRejected.
func DuplicateKey(t *store.Task, stored int32) error {
	return Reject(fmt.Errorf("task %d: key %q already used by task %d", t.Index, t.Key, stored))
}

// CheckBatch validates a batch for Apply. Its errors wrap
// store.ErrRejected.
func CheckBatch(b *store.Batch) error {
	return Reject(checkBatch(b))
}

func checkBatch(b *store.Batch) error {
	for _, r := range b.Queued {
		if r.JobID == "" || r.First < 0 || r.End <= r.First {
			return fmt.Errorf("apply batch: queued range %d..%d of job %q: want a job and 0 <= first < end", r.First, r.End, r.JobID)
		}
	}
	for i := range b.Tasks {
		u := &b.Tasks[i]
		err := func() error {
			if u.JobID == "" {
				return fmt.Errorf("job ID is empty")
			}
			if err := CheckTaskState("state", u.State); err != nil {
				return err
			}
			if u.RunTier < 0 {
				return fmt.Errorf("run tier %d: negative", u.RunTier)
			}
			if err := checkText("reason", u.Reason); err != nil {
				return err
			}
			if err := checkCount("peak_rss_bytes", u.PeakRSSBytes); err != nil {
				return err
			}
			if err := checkTime("started_at", u.StartedAt); err != nil {
				return err
			}
			return checkTime("finished_at", u.FinishedAt)
		}()
		if err != nil {
			return fmt.Errorf("apply batch: task %d of job %s: %w", u.Index, u.JobID, err)
		}
	}
	for i := range b.Attempts {
		a := &b.Attempts[i]
		err := func() error {
			if a.JobID == "" {
				return fmt.Errorf("job ID is empty")
			}
			if err := checkAttemptState("state", a.State); err != nil {
				return err
			}
			for _, c := range []struct{ field, s string }{
				{"worker ID", a.WorkerID}, {"reason", a.Reason}, {"message", a.Message}, {"enforcement", a.Enforcement},
			} {
				if err := checkText(c.field, c.s); err != nil {
					return err
				}
			}
			if err := checkUsage(&a.Usage); err != nil {
				return err
			}
			if err := checkTime("started_at", a.StartedAt); err != nil {
				return err
			}
			return checkTime("finished_at", a.FinishedAt)
		}()
		if err != nil {
			return fmt.Errorf("apply batch: attempt %d of task %d of job %s: %w", a.Number, a.TaskIndex, a.JobID, err)
		}
	}
	for i := range b.Jobs {
		u := &b.Jobs[i]
		err := func() error {
			if u.ID == "" {
				return fmt.Errorf("ID is empty")
			}
			if err := CheckJobState("state", u.State); err != nil {
				return err
			}
			if err := checkFinite("worker_seconds", u.WorkerSeconds); err != nil {
				return err
			}
			if err := checkFinite("cost_usd", u.CostUSD); err != nil {
				return err
			}
			if err := checkJobUsage(&u.Usage); err != nil {
				return err
			}
			if err := checkTime("started_at", u.StartedAt); err != nil {
				return err
			}
			return checkTime("finished_at", u.FinishedAt)
		}()
		if err != nil {
			return fmt.Errorf("apply batch: job %s: %w", u.ID, err)
		}
	}
	return nil
}

// Nanos is a time as stored: Unix nanoseconds, or nil (NULL) for the zero
// time.
func Nanos(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	n := t.UnixNano()
	return &n
}

// FromNanos is the inverse of Nanos; times come back in UTC.
func FromNanos(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return time.Unix(0, *n).UTC()
}

// JSON columns hold what encoding/json writes: "null" for a nil map or
// slice, "{}" or "[]" for an empty one, so both come back as they went in.

func DecodeMap(field string, b []byte) (map[string]string, error) {
	switch string(b) {
	case "null":
		return nil, nil
	case "{}":
		return map[string]string{}, nil
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", field, err)
	}
	return m, nil
}

func DecodeList(field string, b []byte) ([]string, error) {
	switch string(b) {
	case "null":
		return nil, nil
	case "[]":
		return []string{}, nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("decode %s: %w", field, err)
	}
	return l, nil
}

func DecodeTiers(b []byte) ([]store.Tier, error) {
	if string(b) == "null" {
		return nil, nil
	}
	var l []store.Tier
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("decode tiers: %w", err)
	}
	return l, nil
}

// JobColumns encodes a job's JSON columns: labels, env, tiers and worker
// (its pod template).
func JobColumns(job *store.Job) (labels, env, tiers, worker []byte, err error) {
	if labels, err = json.Marshal(job.Labels); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("create job %s: encode labels: %w", job.ID, err)
	}
	if env, err = json.Marshal(job.Env); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("create job %s: encode env: %w", job.ID, err)
	}
	if tiers, err = json.Marshal(job.Tiers); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("create job %s: encode tiers: %w", job.ID, err)
	}
	if worker, err = json.Marshal(job.Worker); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("create job %s: encode worker template: %w", job.ID, err)
	}
	return labels, env, tiers, worker, nil
}

// FinishTask fills in a scanned task's decoded columns: its state, times,
// argv, env and after list.
func FinishTask(t *store.Task, state string, started, finished *int64, argv, env, after []byte) error {
	var err error
	t.State = store.TaskState(state)
	t.StartedAt, t.FinishedAt = FromNanos(started), FromNanos(finished)
	if t.Argv, err = DecodeList("argv", argv); err != nil {
		return fmt.Errorf("task %d: %w", t.Index, err)
	}
	if t.Env, err = DecodeMap("env", env); err != nil {
		return fmt.Errorf("task %d: %w", t.Index, err)
	}
	if t.After, err = DecodeList("after", after); err != nil {
		return fmt.Errorf("task %d: %w", t.Index, err)
	}
	return nil
}

// DecodeWorker decodes a job's worker column (its pod template); an empty
// column is the empty template.
func DecodeWorker(b []byte) (store.WorkerTemplate, error) {
	var w store.WorkerTemplate
	if len(b) == 0 {
		return w, nil
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return w, fmt.Errorf("decode worker template: %w", err)
	}
	return w, nil
}

// checkWorker checks a job's worker template: texts without NUL bytes, and
// volumes and mounts that are JSON objects.
func checkWorker(w *store.WorkerTemplate) error {
	for _, c := range []struct{ field, s string }{{"worker.image", w.Image}, {"worker.service_account", w.ServiceAccount}} {
		if err := checkText(c.field, c.s); err != nil {
			return err
		}
	}
	if err := checkMap("worker.env", w.Env); err != nil {
		return err
	}
	for field, list := range map[string][]json.RawMessage{"worker.volumes": w.Volumes, "worker.volume_mounts": w.VolumeMounts} {
		for i, raw := range list {
			var obj map[string]any
			if err := json.Unmarshal(raw, &obj); err != nil {
				return fmt.Errorf("%s[%d]: not a JSON object: %w", field, i, err)
			}
		}
	}
	return nil
}

// FinishJob fills in a scanned job's decoded columns: its state, times and
// JSON columns. An empty spec reads back as nil in both drivers (SQLite
// cannot tell a zero-length blob from NULL).
func FinishJob(j *store.Job, state string, created, started, finished *int64, labels, env, tiers, worker []byte) error {
	j.State = store.JobState(state)
	if len(j.Spec) == 0 {
		j.Spec = nil
	}
	j.CreatedAt, j.StartedAt, j.FinishedAt = FromNanos(created), FromNanos(started), FromNanos(finished)
	var err error
	if j.Labels, err = DecodeMap("labels", labels); err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	}
	if j.Env, err = DecodeMap("env", env); err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	}
	if j.Tiers, err = DecodeTiers(tiers); err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	}
	if j.Worker, err = DecodeWorker(worker); err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	}
	return nil
}
