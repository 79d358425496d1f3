// Package storetest is the conformance suite of store.Store: every driver's
// tests call Exercise, so that the sqlite and postgres drivers behave alike
// down to nil versus empty maps, zero times, glob syntax and errors
// (ExercisePlacement does the same for clusters, quotas, reservations and
// claims). It imports the standard library, the store package and the
// placement core (its record types, and its Place for the concurrency
// test) only.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// Exercise runs the suite. open returns a fresh, empty store for one test
// and arranges for it to be closed when that test ends; it is called from
// parallel tests.
func Exercise(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CreateJob/RoundTrip", testCreateRoundTrip},
		{"CreateJob/NilAndEmpty", testNilAndEmpty},
		{"CreateJob/Strings", testStrings},
		{"CreateJob/Refused", testCreateRefused},
		{"CreateJob/DuplicateID", testDuplicateID},
		{"CreateJob/NoTasks", testNoTasks},
		{"CreateJob/LargeJob", testLargeJob},
		{"CreateJob/RunTier", testCreateRunTier},
		{"AppendTasks/RoundTrip", testAppendRoundTrip},
		{"AppendTasks/Twice", testAppendTwice},
		{"AppendTasks/WrongIndex", testAppendWrongIndex},
		{"AppendTasks/DuplicateKey", testAppendDuplicateKey},
		{"AppendTasks/Refused", testAppendRefused},
		{"AppendTasks/Ended", testAppendEnded},
		{"AppendTasks/NotFound", testAppendNotFound},
		{"AppendTasks/Empty", testAppendEmpty},
		{"AppendTasks/Large", testAppendLarge},
		{"AppendTasks/Concurrent", testAppendConcurrent},
		{"GetJob/NotFound", testGetJobNotFound},
		{"ListJobs", testListJobs},
		{"ListJobs/DefaultLimit", testListJobsDefaultLimit},
		{"ListActiveJobs", testListActiveJobs},
		{"RequestCancel", testRequestCancel},
		{"RetryTasks", testRetryTasks},
		{"RequestTaskCancel", testRequestTaskCancel},
		{"Lease", testLease},
		{"Lease/Epoch", testLeaseEpoch},
		{"Lease/List", testListLeases},
		{"Lease/Batch", testAcquireLeases},
		{"Lease/BatchRefused", testAcquireLeasesRefused},
		{"Lease/BatchConcurrent", testAcquireLeasesConcurrent},
		{"Secret", testEnsureSecret},
		{"LoadTasks/NotFound", testLoadTasksNotFound},
		{"ListTasks/Glob", testListTasksGlob},
		{"ListTasks/PagingByState", testListTasksPaging},
		{"ListTasks/Refused", testListTasksRefused},
		{"ListTasks/Sort", testTaskSort},
		{"ListTasks/SortRefused", testTaskSortRefused},
		{"ListTasks/SortAppended", testTaskSortAppended},
		{"ListJobs/Filters", testListJobsFilters},
		{"JobGroups", testJobGroups},
		{"TaskRangeStats", testTaskRangeStats},
		{"GetTask", testGetTask},
		{"ListAttempts", testListAttempts},
		{"Apply/RoundTrip", testApplyRoundTrip},
		{"Apply/Idempotent", testApplyIdempotent},
		{"Apply/LastWins", testApplyLastWins},
		{"Apply/Atomic", testApplyAtomic},
		{"Apply/Empty", testApplyEmpty},
		{"Apply/RunTier", testApplyRunTier},
		{"Apply/AttemptUsage", testApplyAttemptUsage},
		{"Apply/JobUsage", testApplyJobUsage},
		{"Apply/Queued", testApplyQueued},
		{"Fence", testFence},
		{"Fence/Handover", testFenceHandover},
		{"Fence/Epoch", testFenceEpoch},
		{"Rejected", testRejected},
		{"Concurrent", testConcurrent},
		{"Context", testContext},
		{"Close", testClose},
		{"Token/RoundTrip", testTokenRoundTrip},
		{"Token/NoSecret", testTokenNoSecret},
		{"Token/Refused", testTokenRefused},
		{"Token/List", testListTokens},
		{"Token/ListDefaultLimit", testListTokensDefaultLimit},
		{"Token/Revoke", testRevokeToken},
		{"Audit", testAudit},
		{"Audit/Large", testAuditLarge},
		{"Audit/Refused", testAuditRefused},
		{"Job/SubmittedBy", testSubmittedBy},
		{"Job/SecretEnv", testSecretEnv},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// base is the creation time of the suite's jobs; IDs made with newID sort
// by it.
var base = time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.FixedZone("CEST", 2*3600))

func newID(created time.Time, seed uint64) string {
	return store.NewJobID(created, rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)}))
}

// newJob returns a job with every field set.
func newJob(id string) *store.Job {
	return &store.Job{
		ID:        id,
		Name:      "resim",
		Namespace: "perception",
		Labels:    map[string]string{"team": "perception", "run": "nightly"},
		Env:       map[string]string{"HOME": "/home/sim", "EMPTY": ""},
		Tiers: []store.Tier{{Name: "small", CPU: 0.5, MemoryBytes: 1 << 30}, {Name: "big", CPU: 4, MemoryBytes: 1 << 40, GPU: 1, GPUType: "a100",
			NodeSelector: map[string]string{"gpu-type": "a100"},
			Tolerations:  []store.Toleration{{Key: "spot", Operator: "Exists", Effect: "NoSchedule"}}}},
		Worker: store.WorkerTemplate{
			Image: "registry.example/sim:1.2", ServiceAccount: "sim", Env: map[string]string{"A": "1"},
			Volumes:      []json.RawMessage{json.RawMessage(`{"name":"data","persistentVolumeClaim":{"claimName":"scenes"}}`)},
			VolumeMounts: []json.RawMessage{json.RawMessage(`{"name":"data","mountPath":"/data"}`)},
		},
		MaxWorkers:     7,
		Priority:       -3,
		LogDestination: "s3://perception-logs/haul/?region=eu-west-1",
		CreatedAt:      base,
		Spec:           []byte("name: resim\ntasks: []\n"),
	}
}

// newTasks returns n tasks keyed t-0, t-1, ...
func newTasks(n int) []store.Task {
	tasks := make([]store.Task, n)
	for i := range tasks {
		tasks[i] = store.Task{
			Index:     int32(i),
			Key:       fmt.Sprintf("t-%d", i),
			Argv:      []string{"run-sim", "--scene", fmt.Sprint(i)},
			Env:       map[string]string{"SCENE": fmt.Sprint(i)},
			Cwd:       "/work",
			After:     []string{"split"},
			Tier:      int32(i % 2),
			Retries:   2,
			TimeoutMS: 60_000,
		}
	}
	return tasks
}

func create(t *testing.T, s store.Store, job *store.Job, tasks []store.Task) {
	t.Helper()
	if err := s.CreateJob(t.Context(), job, tasks); err != nil {
		t.Fatalf("CreateJob(%s, %d tasks): %v", job.ID, len(tasks), err)
	}
}

func apply(t *testing.T, s store.Store, b *store.Batch) {
	t.Helper()
	if err := s.Apply(t.Context(), b); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func getJob(t *testing.T, s store.Store, id string) *store.Job {
	t.Helper()
	j, err := s.GetJob(t.Context(), id)
	if err != nil {
		t.Fatalf("GetJob(%s): %v", id, err)
	}
	return j
}

func loadTasks(t *testing.T, s store.Store, id string) []store.Task {
	t.Helper()
	tasks, err := s.LoadTasks(t.Context(), id)
	if err != nil {
		t.Fatalf("LoadTasks(%s): %v", id, err)
	}
	return tasks
}

// norm is a time as the store returns it: UTC, no monotonic reading,
// zero for zero.
func norm(tm time.Time) time.Time {
	if tm.IsZero() {
		return time.Time{}
	}
	return time.Unix(0, tm.UnixNano()).UTC()
}

// storedJob is what GetJob returns right after CreateJob(job, n tasks).
// An empty spec reads back as nil (SQLite does not tell a zero-length blob
// from NULL).
func storedJob(job *store.Job, n int) store.Job {
	j := *job
	if len(j.Spec) == 0 {
		j.Spec = nil
	}
	j.State = store.JobPending
	j.TaskCount = int64(n)
	j.CancelRequested = false
	j.Counts = store.TaskCounts{Blocked: int64(n)} // newTasks: each after a parent
	j.WorkerSeconds, j.CostUSD, j.Usage = 0, 0, store.JobUsage{}
	j.CreatedAt = norm(j.CreatedAt)
	j.StartedAt, j.FinishedAt = time.Time{}, time.Time{}
	return j
}

// storedTasks is what LoadTasks returns right after CreateJob: a task
// runs on its first tier unless the caller gave a later run tier.
func storedTasks(jobID string, tasks []store.Task) []store.Task {
	out := make([]store.Task, len(tasks))
	for i, t := range tasks {
		t.JobID = jobID
		t.RunTier = max(t.RunTier, t.Tier)
		t.State = store.TaskBlocked
		if len(t.After) == 0 {
			t.State = store.TaskQueued // a root is ready at once
		}
		t.Attempts, t.ExitCode, t.Reason = 0, 0, ""
		t.StartedAt, t.FinishedAt = time.Time{}, time.Time{}
		t.DurationMS, t.PeakRSSBytes = -1, 0
		out[i] = t
	}
	return out
}

func checkJob(t *testing.T, got *store.Job, want store.Job) {
	t.Helper()
	want.CreatedAt, want.StartedAt, want.FinishedAt = norm(want.CreatedAt), norm(want.StartedAt), norm(want.FinishedAt)
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("job %s:\n got %#v\nwant %#v", want.ID, *got, want)
	}
}

func checkTasks(t *testing.T, got, want []store.Task) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d tasks, want %d", len(got), len(want))
		return
	}
	bad := 0
	for i := range want {
		w := want[i]
		w.StartedAt, w.FinishedAt = norm(w.StartedAt), norm(w.FinishedAt)
		if !reflect.DeepEqual(got[i], w) {
			t.Errorf("task %d:\n got %#v\nwant %#v", i, got[i], w)
			if bad++; bad > 5 {
				return
			}
		}
	}
}

func checkNotFound(t *testing.T, what string, err error, id string) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: error %v, want one wrapping store.ErrNotFound", what, err)
	} else if id != "" && !strings.Contains(err.Error(), id) {
		t.Errorf("%s: error %q does not name %s", what, err, id)
	}
}

func keysOf(tasks []store.Task) []string {
	keys := make([]string, len(tasks))
	for i, t := range tasks {
		keys[i] = t.Key
	}
	return keys
}

func testCreateRoundTrip(t *testing.T, s store.Store) {
	job := newJob(newID(base, 1))
	// Mutable fields set by the caller do not matter: a job starts pending.
	job.State = store.JobRunning
	job.Counts = store.TaskCounts{Succeeded: 9}
	job.TaskCount = 99
	job.CancelRequested = true
	job.StartedAt = base
	job.WorkerSeconds, job.CostUSD = 5, 1
	job.Usage = store.JobUsage{CPUUsedSeconds: 3, OOMAttempts: 2}
	tasks := newTasks(3)
	tasks[1].JobID = job.ID // may be set, or left empty
	tasks[2].State = store.TaskRunning
	tasks[2].Attempts = 3
	tasks[2].StartedAt = base
	tasks[2].After = []string{"t-0", "t-*"}
	create(t, s, job, tasks)

	checkJob(t, getJob(t, s, job.ID), storedJob(job, 3))
	checkTasks(t, loadTasks(t, s, job.ID), storedTasks(job.ID, tasks))
}

func testNilAndEmpty(t *testing.T, s store.Store) {
	a := newJob(newID(base, 1))
	a.Labels, a.Env, a.Tiers, a.Spec = nil, map[string]string{}, nil, nil
	a.CreatedAt = time.Time{} // the zero time round-trips as zero
	b := newJob(newID(base, 2))
	b.Labels, b.Env, b.Tiers, b.Spec = map[string]string{}, nil, []store.Tier{}, []byte{}
	b.CreatedAt = time.Unix(0, 0) // the Unix epoch is not the zero time
	tasks := []store.Task{
		{Index: 0, Key: "nil", Argv: nil, Env: nil, After: nil},
		{Index: 1, Key: "empty", Argv: []string{}, Env: map[string]string{}, After: []string{}},
		{Index: 2, Key: "empty-strings", Argv: []string{""}, Env: map[string]string{"": ""}, After: []string{""}},
	}
	create(t, s, a, tasks)
	create(t, s, b, nil)
	for _, c := range []struct {
		job *store.Job
		n   int
	}{{a, len(tasks)}, {b, 0}} {
		job := c.job
		got := getJob(t, s, job.ID)
		want := storedJob(job, c.n)
		if job == a { // two roots (no parents) and one after "": stored queued, queued, blocked
			want.Counts = store.TaskCounts{Blocked: 1, Queued: 2}
		}
		checkJob(t, got, want)
		if (got.Labels == nil) != (job.Labels == nil) || (got.Env == nil) != (job.Env == nil) ||
			(got.Tiers == nil) != (job.Tiers == nil) {
			t.Errorf("job %s: nil-ness of labels/env/tiers changed: got %#v", job.ID, got)
		}
	}
	got := loadTasks(t, s, a.ID)
	checkTasks(t, got, storedTasks(a.ID, tasks))
	if len(got) == 3 && (got[0].Argv != nil || got[0].Env != nil || got[0].After != nil ||
		got[1].Argv == nil || got[1].Env == nil || got[1].After == nil) {
		t.Errorf("nil and empty argv/env/after not kept apart: %#v", got[:2])
	}
}

// oddStrings are valid UTF-8 without NUL bytes, which every driver stores.
var oddStrings = []string{
	"héllo wörld", "日本語のキー", "emoji 🚀🧪", "tab\tnew\nline\r\n", `quote" back\slash`,
	"\x01\x02\x1f\x7f", "<script>&amp;</script>", "'single' $1 %s %_", "*?[]{}^$.|+()", "\u2028\u2029\ufeff",
	"\U0010ffff", " leading and trailing ", "null", "{}", "[]", `{"json":"lookalike"}`,
}

func testStrings(t *testing.T, s store.Store) {
	job := newJob(newID(base, 1))
	job.Name, job.Namespace = oddStrings[0], oddStrings[1]
	job.Labels = map[string]string{}
	job.Env = map[string]string{}
	for i, str := range oddStrings {
		job.Labels[fmt.Sprintf("k%d%s", i, str)] = str
		job.Env[str] = str
	}
	job.Tiers[0].Name = oddStrings[2]
	job.Spec = []byte{0, 1, 2, 0xff, 0xfe, '\n', 0}
	tasks := make([]store.Task, len(oddStrings))
	for i, str := range oddStrings {
		tasks[i] = store.Task{Index: int32(i), Key: fmt.Sprintf("%d:%s", i, str), Argv: slices.Clone(oddStrings),
			Env: map[string]string{str: str}, Cwd: str, After: []string{str}}
	}
	create(t, s, job, tasks)
	checkJob(t, getJob(t, s, job.ID), storedJob(job, len(tasks)))
	checkTasks(t, loadTasks(t, s, job.ID), storedTasks(job.ID, tasks))
	for _, task := range tasks {
		got, err := s.GetTask(t.Context(), job.ID, task.Key)
		if err != nil {
			t.Errorf("GetTask(%q): %v", task.Key, err)
		} else if got.Key != task.Key || got.Index != task.Index {
			t.Errorf("GetTask(%q) = task %d %q", task.Key, got.Index, got.Key)
		}
	}
	apply(t, s, &store.Batch{
		Tasks:    []store.TaskUpdate{{JobID: job.ID, Index: 0, State: store.TaskFailed, Reason: oddStrings[4]}},
		Attempts: []store.Attempt{{JobID: job.ID, TaskIndex: 0, Number: 1, State: store.AttemptFailed, WorkerID: oddStrings[1], Reason: oddStrings[5], Message: oddStrings[3]}},
	})
	if got := loadTasks(t, s, job.ID)[0]; got.Reason != oddStrings[4] {
		t.Errorf("reason %q, want %q", got.Reason, oddStrings[4])
	}
	at, err := s.ListAttempts(t.Context(), job.ID, 0)
	if err != nil || len(at) != 1 || at[0].WorkerID != oddStrings[1] || at[0].Reason != oddStrings[5] || at[0].Message != oddStrings[3] {
		t.Errorf("ListAttempts = %#v, %v", at, err)
	}
}

func testCreateRefused(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		edit func(job *store.Job, tasks []store.Task) []store.Task
		want string // in the error
	}{
		{"empty ID", func(j *store.Job, ts []store.Task) []store.Task { j.ID = ""; return ts }, "ID"},
		{"index gap", func(j *store.Job, ts []store.Task) []store.Task { ts[2].Index = 3; return ts }, "index"},
		{"indexes swapped", func(j *store.Job, ts []store.Task) []store.Task {
			ts[0].Index, ts[1].Index = 1, 0
			return ts
		}, "index"},
		{"other job's task", func(j *store.Job, ts []store.Task) []store.Task { ts[1].JobID = "other"; return ts }, "other"},
		{"empty key", func(j *store.Job, ts []store.Task) []store.Task { ts[1].Key = ""; return ts }, "key"},
		{"duplicate key", func(j *store.Job, ts []store.Task) []store.Task { ts[2].Key = ts[0].Key; return ts }, "t-0"},
		{"NUL in argv", func(j *store.Job, ts []store.Task) []store.Task { ts[1].Argv = []string{"a\x00b"}; return ts }, "argv"},
		{"NUL in env key", func(j *store.Job, ts []store.Task) []store.Task {
			ts[1].Env = map[string]string{"A\x00": "b"}
			return ts
		}, "env"},
		{"invalid UTF-8 in cwd", func(j *store.Job, ts []store.Task) []store.Task { ts[1].Cwd = "\xff\xfe"; return ts }, "cwd"},
		{"NUL in label", func(j *store.Job, ts []store.Task) []store.Task { j.Labels = map[string]string{"a": "\x00"}; return ts }, "labels"},
		{"invalid UTF-8 in name", func(j *store.Job, ts []store.Task) []store.Task { j.Name = "\xc3\x28"; return ts }, "name"},
		{"NaN CPU", func(j *store.Job, ts []store.Task) []store.Task { j.Tiers[0].CPU = math.NaN(); return ts }, "cpu"},
		{"negative run tier", func(j *store.Job, ts []store.Task) []store.Task { ts[1].RunTier = -1; return ts }, "run tier -1"},
		{"run tier past the last tier", func(j *store.Job, ts []store.Task) []store.Task { ts[1].RunTier = 2; return ts }, "run tier 2"},
		{"run tier of a job without tiers", func(j *store.Job, ts []store.Task) []store.Task {
			j.Tiers = nil
			ts[1].Tier, ts[1].RunTier = 0, 1
			return ts
		}, "run tier 1"},
		{"negative tier", func(j *store.Job, ts []store.Task) []store.Task { ts[2].Tier = -3; return ts }, "tier -3"},
		{"tier past the last tier", func(j *store.Job, ts []store.Task) []store.Task { ts[2].Tier = 9; return ts }, "tier 9"},
	} {
		job := newJob("refused-job")
		tasks := tc.edit(job, newTasks(3))
		err := s.CreateJob(ctx, job, tasks)
		if err == nil {
			t.Errorf("%s: CreateJob succeeded, want an error", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not mention %q", tc.name, err, tc.want)
		}
		if _, err := s.GetJob(ctx, "refused-job"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: after a refused CreateJob, GetJob: %v, want not found", tc.name, err)
		}
	}
	if err := s.CreateJob(ctx, nil, nil); err == nil {
		t.Errorf("CreateJob(nil job) succeeded")
	}
}

func testDuplicateID(t *testing.T, s store.Store) {
	job := newJob(newID(base, 1))
	tasks := newTasks(2)
	create(t, s, job, tasks)
	again := newJob(job.ID)
	again.Name = "other"
	err := s.CreateJob(t.Context(), again, newTasks(5))
	if err == nil {
		t.Fatalf("second CreateJob with ID %s succeeded", job.ID)
	}
	if !strings.Contains(err.Error(), job.ID) {
		t.Errorf("error %q does not name the job", err)
	}
	checkJob(t, getJob(t, s, job.ID), storedJob(job, 2))
	checkTasks(t, loadTasks(t, s, job.ID), storedTasks(job.ID, tasks))
}

func testNoTasks(t *testing.T, s store.Store) {
	job := newJob(newID(base, 1))
	create(t, s, job, nil)
	checkJob(t, getJob(t, s, job.ID), storedJob(job, 0))
	if tasks := loadTasks(t, s, job.ID); len(tasks) != 0 {
		t.Errorf("LoadTasks of a job without tasks = %d tasks", len(tasks))
	}
	got, err := s.ListTasks(t.Context(), store.TaskFilter{JobID: job.ID, After: -1})
	if err != nil || len(got) != 0 {
		t.Errorf("ListTasks of a job without tasks = %d tasks, %v", len(got), err)
	}
}

func testLargeJob(t *testing.T, s store.Store) {
	const n = bigJobTasks
	job := newJob(newID(base, 1))
	tasks := newTasks(n)
	create(t, s, job, tasks)
	checkJob(t, getJob(t, s, job.ID), storedJob(job, n))
	got := loadTasks(t, s, job.ID)
	if len(got) != n {
		t.Fatalf("LoadTasks: %d tasks, want %d", len(got), n)
	}
	want := storedTasks(job.ID, tasks)
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("task %d:\n got %#v\nwant %#v", i, got[i], want[i])
		}
	}
	prefix := fmt.Sprintf("t-%d", n/10-1) // the last ten tasks
	page, err := s.ListTasks(t.Context(), store.TaskFilter{JobID: job.ID, KeyGlob: prefix + "?", After: -1})
	if err != nil {
		t.Fatal(err)
	}
	var want10 []string
	for i := range 10 {
		want10 = append(want10, fmt.Sprintf("%s%d", prefix, i))
	}
	if keys := keysOf(page); !slices.Equal(keys, want10) {
		t.Errorf("ListTasks(%s?) = %v, want %v", prefix, keys, want10)
	}
}

func testGetJobNotFound(t *testing.T, s store.Store) {
	_, err := s.GetJob(t.Context(), "no-such-job")
	checkNotFound(t, "GetJob", err, "no-such-job")
	create(t, s, newJob("some-job"), nil)
	_, err = s.GetJob(t.Context(), "some-jo")
	checkNotFound(t, "GetJob(prefix of an ID)", err, "some-jo")
}

func jobIDs(jobs []store.Job) []string {
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	return ids
}

func testListJobs(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Six jobs a minute apart, alternating namespaces; ids[0] is the oldest.
	var ids []string
	for i := range 6 {
		created := base.Add(time.Duration(i) * time.Minute)
		job := newJob(newID(created, uint64(i)))
		job.CreatedAt = created
		job.Namespace = []string{"perception", "planning"}[i%2]
		create(t, s, job, newTasks(1))
		ids = append(ids, job.ID)
	}
	apply(t, s, &store.Batch{Jobs: []store.JobUpdate{
		{ID: ids[1], State: store.JobRunning, StartedAt: base},
		{ID: ids[2], State: store.JobSucceeded, StartedAt: base, FinishedAt: base},
		{ID: ids[3], State: store.JobFailed, StartedAt: base, FinishedAt: base},
	}})
	rev := func(is ...int) []string {
		var out []string
		for _, i := range is {
			out = append(out, ids[i])
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    store.JobFilter
		want []string
	}{
		{"all", store.JobFilter{}, rev(5, 4, 3, 2, 1, 0)},
		{"namespace", store.JobFilter{Namespace: "planning"}, rev(5, 3, 1)},
		{"unknown namespace", store.JobFilter{Namespace: "nobody"}, nil},
		{"states", store.JobFilter{States: []store.JobState{store.JobPending, store.JobFailed}}, rev(5, 4, 3, 0)},
		{"namespace and state", store.JobFilter{Namespace: "perception", States: []store.JobState{store.JobSucceeded}}, rev(2)},
		{"limit", store.JobFilter{Limit: 2}, rev(5, 4)},
		{"before", store.JobFilter{Before: ids[4], Limit: 2}, rev(3, 2)},
		{"before the oldest", store.JobFilter{Before: ids[0]}, nil},
		{"before and namespace", store.JobFilter{Before: ids[3], Namespace: "planning"}, rev(1)},
	} {
		got, err := s.ListJobs(ctx, tc.f)
		if err != nil {
			t.Errorf("%s: ListJobs(%+v): %v", tc.name, tc.f, err)
			continue
		}
		if !slices.Equal(jobIDs(got), tc.want) {
			t.Errorf("%s: ListJobs(%+v) = %v, want %v", tc.name, tc.f, jobIDs(got), tc.want)
		}
	}
	// Paging through everything, two at a time.
	var all []string
	f := store.JobFilter{Limit: 2}
	for range 10 {
		page, err := s.ListJobs(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, jobIDs(page)...)
		f.Before = page[len(page)-1].ID
	}
	if !slices.Equal(all, rev(5, 4, 3, 2, 1, 0)) {
		t.Errorf("paged ListJobs = %v", all)
	}
	// Listed jobs are whole.
	got, err := s.ListJobs(ctx, store.JobFilter{States: []store.JobState{store.JobFailed}})
	if err != nil || len(got) != 1 {
		t.Fatalf("ListJobs(failed) = %v, %v", got, err)
	}
	checkJob(t, &got[0], *getJob(t, s, ids[3]))

	if _, err := s.ListJobs(ctx, store.JobFilter{States: []store.JobState{"bogus"}}); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("ListJobs(state bogus) = %v, want an error naming it", err)
	}
}

func testListJobsDefaultLimit(t *testing.T, s store.Store) {
	for i := range 101 {
		create(t, s, newJob(fmt.Sprintf("job-%03d", i)), nil)
	}
	got, err := s.ListJobs(t.Context(), store.JobFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 || got[0].ID != "job-100" || got[99].ID != "job-001" {
		t.Errorf("ListJobs with no limit: %d jobs from %v, want the 100 newest", len(got), jobIDs(got)[:min(3, len(got))])
	}
}

func testListActiveJobs(t *testing.T, s store.Store) {
	var ids []string
	for i := range 5 {
		created := base.Add(time.Duration(i) * time.Second)
		job := newJob(newID(created, uint64(i)))
		job.CreatedAt = created
		create(t, s, job, nil)
		ids = append(ids, job.ID)
	}
	apply(t, s, &store.Batch{Jobs: []store.JobUpdate{
		{ID: ids[0], State: store.JobRunning},
		{ID: ids[1], State: store.JobSucceeded},
		{ID: ids[2], State: store.JobCancelled},
		{ID: ids[4], State: store.JobFailed},
	}})
	got, err := s.ListActiveJobs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{ids[0], ids[3]}; !slices.Equal(jobIDs(got), want) {
		t.Errorf("ListActiveJobs = %v, want %v (oldest first)", jobIDs(got), want)
	}
	if len(got) == 2 && (got[0].State != store.JobRunning || got[1].State != store.JobPending || got[1].Name != "resim") {
		t.Errorf("ListActiveJobs returned %+v", got)
	}
}

func testRequestCancel(t *testing.T, s store.Store) {
	ctx := t.Context()
	checkNotFound(t, "RequestCancel(unknown)", s.RequestCancel(ctx, "no-such-job"), "no-such-job")

	states := []store.JobState{store.JobPending, store.JobRunning, store.JobSucceeded, store.JobFailed, store.JobCancelled}
	ids := make([]string, len(states))
	var b store.Batch
	for i, st := range states {
		ids[i] = newID(base, uint64(i))
		create(t, s, newJob(ids[i]), newTasks(1))
		if st != store.JobPending {
			b.Jobs = append(b.Jobs, store.JobUpdate{ID: ids[i], State: st, Counts: store.TaskCounts{Running: 1}})
		}
	}
	apply(t, s, &b)
	for i, st := range states {
		for range 2 { // a second request changes nothing
			if err := s.RequestCancel(ctx, ids[i]); err != nil {
				t.Errorf("RequestCancel(%s job): %v", st, err)
			}
		}
		got := getJob(t, s, ids[i])
		if want := !st.Terminal(); got.CancelRequested != want {
			t.Errorf("%s job: CancelRequested = %v, want %v", st, got.CancelRequested, want)
		}
		if got.State != st {
			t.Errorf("%s job: state became %s", st, got.State)
		}
	}
	// The flag survives state changes of the runner.
	apply(t, s, &store.Batch{Jobs: []store.JobUpdate{{ID: ids[0], State: store.JobRunning}}})
	if !getJob(t, s, ids[0]).CancelRequested {
		t.Errorf("CancelRequested lost by a job update")
	}
}

func testLoadTasksNotFound(t *testing.T, s store.Store) {
	_, err := s.LoadTasks(t.Context(), "no-such-job")
	checkNotFound(t, "LoadTasks", err, "no-such-job")
}

// globKeys are keys that tell the glob syntax's corners apart.
var globKeys = []string{
	"sim-0", "sim-1", "sim-2", "sim-3", "sim-10", "sim-11", "sim-12", "sim-x", "Sim-1", "sim/a", "sim-x/y", "sim-",
	"a%b", "a_b", "axb", "a*b", "a?b", "a[b", "a]b", "a-b", "a^b", `a\b`, "a!b", "ab", "a%%b",
	"ümlaut-1", "日本-2", "report", "split", "100%", "1000",
}

// globs are tried against globKeys; the expected result is what path.Match says.
var globs = []string{
	"*", "sim-*", "sim*", "sim*/*", "sim-?", "sim-1?", "sim-??", "sim-[0-2]", "sim-[^0-2]", "sim-[!0-2]", "sim-[0-9]*",
	"S*", "[sS]im-1", "a%b", "a_b", "a%%b", "100%", "10_0", `a\*b`, "a[*]b", "a[?]b", `a\?b`, `a\[b`, "a]b",
	`a[\]]b`, `a[\-]b`, `a[\^]b`, `a[\\]b`, "a[%_]b", "a[^%_]b", "a?b", "a*b", "a[]-a]b", `a[\]-a]b`, "?mlaut-*", "[ü]mlaut-1",
	"日本-?", "[日]*", "[a-z]*", "[^a-z]*", "*/*", "*?", "?*?", "report", "repor", "eport", "[r]eport", "nomatch*",
	"a[!]b", "a[x-x]b", "a[\u0001-\U0010ffff]b", `\s\i\m-\1`, "s*-1*",
}

func testListTasksGlob(t *testing.T, s store.Store) {
	job := newJob(newID(base, 1))
	tasks := make([]store.Task, len(globKeys))
	for i, k := range globKeys {
		tasks[i] = store.Task{Index: int32(i), Key: k}
	}
	create(t, s, job, tasks)
	for _, glob := range globs {
		var want []string
		badPattern := false
		for _, k := range globKeys {
			ok, err := path.Match(glob, k)
			if err != nil {
				badPattern = true
				break
			}
			if ok {
				want = append(want, k)
			}
		}
		got, err := s.ListTasks(t.Context(), store.TaskFilter{JobID: job.ID, KeyGlob: glob, After: -1})
		if badPattern {
			if err == nil {
				t.Errorf("ListTasks(%q) succeeded; path.Match calls it malformed", glob)
			}
			continue
		}
		if err != nil {
			t.Errorf("ListTasks(%q): %v", glob, err)
			continue
		}
		if !slices.Equal(keysOf(got), want) {
			t.Errorf("ListTasks(%q) = %q, want %q (as path.Match)", glob, keysOf(got), want)
		}
	}
	for _, bad := range []string{"[", "sim-[0-", "a\\", "[]", "[^]", "[z-a]", "[a-]", "[-a]", "a]b[", "\xff*", "a\x00*"} {
		if _, err := s.ListTasks(t.Context(), store.TaskFilter{JobID: job.ID, KeyGlob: bad, After: -1}); err == nil {
			t.Errorf("ListTasks(malformed glob %q) succeeded", bad)
		}
	}
}

func testListTasksPaging(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 2500
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(n))
	// Tasks 0, 3, 6... succeed; 1, 4, 7... fail; the rest stay blocked. One
	// batch of 1,667 task updates and as many attempts.
	var b store.Batch
	var wantDone []int32
	for i := int32(0); i < n; i++ {
		var st store.TaskState
		switch i % 3 {
		case 0:
			st = store.TaskSucceeded
		case 1:
			st = store.TaskFailed
		default:
			continue
		}
		wantDone = append(wantDone, i)
		b.Tasks = append(b.Tasks, store.TaskUpdate{JobID: job.ID, Index: i, State: st, Attempts: 1, FinishedAt: base})
		b.Attempts = append(b.Attempts, store.Attempt{JobID: job.ID, TaskIndex: i, Number: 1, State: store.AttemptState(st), WorkerID: "w1"})
	}
	apply(t, s, &b)

	var got []int32
	var pages []int
	f := store.TaskFilter{JobID: job.ID, States: []store.TaskState{store.TaskSucceeded, store.TaskFailed}, After: -1, Limit: 1000}
	for range 10 {
		page, err := s.ListTasks(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, len(page))
		if len(page) == 0 {
			break
		}
		for _, task := range page {
			if task.State != store.TaskSucceeded && task.State != store.TaskFailed {
				t.Fatalf("task %d in state %s listed under a succeeded/failed filter", task.Index, task.State)
			}
			got = append(got, task.Index)
		}
		f.After = page[len(page)-1].Index
	}
	if !slices.Equal(pages, []int{1000, 667, 0}) {
		t.Errorf("page sizes %v, want [1000 667 0]", pages)
	}
	if !slices.Equal(got, wantDone) {
		t.Errorf("paged indexes differ from the %d expected", len(wantDone))
	}

	// Default limit, one state, state and glob together.
	all, err := s.ListTasks(ctx, store.TaskFilter{JobID: job.ID, After: -1})
	if err != nil || len(all) != 1000 || all[0].Index != 0 || all[999].Index != 999 {
		t.Errorf("ListTasks with no limit: %d tasks, %v; want the first 1000", len(all), err)
	}
	blocked, err := s.ListTasks(ctx, store.TaskFilter{JobID: job.ID, States: []store.TaskState{store.TaskBlocked}, After: 2000, Limit: 5})
	if err != nil || !slices.Equal(keysOf(blocked), []string{"t-2003", "t-2006", "t-2009", "t-2012", "t-2015"}) {
		t.Errorf("blocked after 2000 = %v, %v", keysOf(blocked), err)
	}
	failed, err := s.ListTasks(ctx, store.TaskFilter{JobID: job.ID, States: []store.TaskState{store.TaskFailed}, KeyGlob: "t-2[0-9]?", After: -1})
	var wantFailed []string
	for i := 200; i < 300; i++ {
		if i%3 == 1 {
			wantFailed = append(wantFailed, fmt.Sprintf("t-%d", i))
		}
	}
	if err != nil || !slices.Equal(keysOf(failed), wantFailed) {
		t.Errorf("failed t-2[0-9]? = %v, %v; want %v", keysOf(failed), err, wantFailed)
	}
	if len(failed) > 0 && (failed[0].Attempts != 1 || !failed[0].FinishedAt.Equal(base)) {
		t.Errorf("listed task lacks its update: %+v", failed[0])
	}
	none, err := s.ListTasks(ctx, store.TaskFilter{JobID: job.ID, States: []store.TaskState{store.TaskRunning}, After: -1})
	if err != nil || len(none) != 0 {
		t.Errorf("running tasks = %d, %v; want none", len(none), err)
	}
	for _, idx := range []int32{0, 1, 2} {
		at, err := s.ListAttempts(ctx, job.ID, idx)
		if err != nil || len(at) != map[int32]int{0: 1, 1: 1, 2: 0}[idx] {
			t.Errorf("ListAttempts(task %d) = %v, %v", idx, at, err)
		}
	}
}

func testListTasksRefused(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.ListTasks(ctx, store.TaskFilter{JobID: "no-such-job", After: -1})
	checkNotFound(t, "ListTasks(unknown job)", err, "no-such-job")
	if _, err := s.ListTasks(ctx, store.TaskFilter{After: -1}); err == nil {
		t.Errorf("ListTasks with no job ID succeeded")
	}
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(2))
	if _, err := s.ListTasks(ctx, store.TaskFilter{JobID: job.ID, States: []store.TaskState{"done"}, After: -1}); err == nil || !strings.Contains(err.Error(), "done") {
		t.Errorf("ListTasks(state done) = %v, want an error naming it", err)
	}
	if _, err := s.ListTasks(ctx, store.TaskFilter{JobID: job.ID, KeyGlob: "t-[", After: -1}); err == nil || !strings.Contains(err.Error(), "t-[") {
		t.Errorf("ListTasks(glob t-[) = %v, want an error naming it", err)
	}
}

func testGetTask(t *testing.T, s store.Store) {
	ctx := t.Context()
	job := newJob(newID(base, 1))
	tasks := newTasks(3)
	create(t, s, job, tasks)
	got, err := s.GetTask(ctx, job.ID, "t-2")
	if err != nil {
		t.Fatal(err)
	}
	checkTasks(t, []store.Task{*got}, storedTasks(job.ID, tasks[2:]))
	_, err = s.GetTask(ctx, job.ID, "t-9")
	checkNotFound(t, "GetTask(unknown key)", err, job.ID)
	_, err = s.GetTask(ctx, job.ID, "t-*")
	checkNotFound(t, "GetTask(a glob)", err, job.ID)
	_, err = s.GetTask(ctx, "no-such-job", "t-1")
	checkNotFound(t, "GetTask(unknown job)", err, "no-such-job")
}

func testListAttempts(t *testing.T, s store.Store) {
	ctx := t.Context()
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(2))
	_, err := s.ListAttempts(ctx, "no-such-job", 0)
	checkNotFound(t, "ListAttempts(unknown job)", err, "no-such-job")
	_, err = s.ListAttempts(ctx, job.ID, 2)
	checkNotFound(t, "ListAttempts(unknown task)", err, job.ID)
	if at, err := s.ListAttempts(ctx, job.ID, 1); err != nil || len(at) != 0 {
		t.Errorf("ListAttempts(task without attempts) = %v, %v", at, err)
	}
	// Written out of order, listed by number.
	a3 := store.Attempt{JobID: job.ID, TaskIndex: 1, Number: 3, Tier: 1, WorkerID: "w3", State: store.AttemptRunning, StartedAt: base.Add(3 * time.Second)}
	a1 := store.Attempt{JobID: job.ID, TaskIndex: 1, Number: 1, Tier: 0, WorkerID: "w1", State: store.AttemptFailed, ExitCode: 137, Signal: 9,
		Reason: "signal", Message: "out of memory", StartedAt: base, FinishedAt: base.Add(time.Second)}
	a2 := store.Attempt{JobID: job.ID, TaskIndex: 1, Number: 2, Tier: 1, WorkerID: "w2", State: store.AttemptLost, Reason: "lost", StartedAt: base.Add(2 * time.Second)}
	apply(t, s, &store.Batch{Attempts: []store.Attempt{a3, a1}})
	apply(t, s, &store.Batch{Attempts: []store.Attempt{a2}})
	other := store.Attempt{JobID: job.ID, TaskIndex: 0, Number: 1, State: store.AttemptSucceeded}
	apply(t, s, &store.Batch{Attempts: []store.Attempt{other}})
	checkAttempts(t, s, job.ID, 1, []store.Attempt{a1, a2, a3})
	checkAttempts(t, s, job.ID, 0, []store.Attempt{other})
}

func checkAttempts(t *testing.T, s store.Store, jobID string, idx int32, want []store.Attempt) {
	t.Helper()
	got, err := s.ListAttempts(t.Context(), jobID, idx)
	if err != nil {
		t.Fatalf("ListAttempts(%s, %d): %v", jobID, idx, err)
	}
	for i := range want {
		want[i].StartedAt, want[i].FinishedAt = norm(want[i].StartedAt), norm(want[i].FinishedAt)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ListAttempts(%s, %d):\n got %#v\nwant %#v", jobID, idx, got, want)
	}
}

func testApplyRoundTrip(t *testing.T, s store.Store) {
	job := newJob(newID(base, 1))
	tasks := newTasks(3)
	create(t, s, job, tasks)
	started := base.Add(time.Second + 1) // nanoseconds survive
	finished := base.Add(time.Minute)
	counts := store.TaskCounts{Blocked: 1, Queued: 0, Running: 0, Succeeded: 1, Failed: 1, UpstreamFailed: 0, Cancelled: 0}
	apply(t, s, &store.Batch{
		Tasks: []store.TaskUpdate{
			{JobID: job.ID, Index: 0, RunTier: 1, State: store.TaskSucceeded, Attempts: 1, StartedAt: started, FinishedAt: finished},
			{JobID: job.ID, Index: 1, RunTier: 1, State: store.TaskFailed, Attempts: 2, ExitCode: -1, Reason: "timeout", StartedAt: started, FinishedAt: finished},
		},
		Attempts: []store.Attempt{{JobID: job.ID, TaskIndex: 1, Number: 2, Tier: 1, WorkerID: "w", State: store.AttemptFailed, ExitCode: -1, Reason: "timeout", StartedAt: started, FinishedAt: finished,
			Enforcement: "cgroup-v2", Usage: store.Usage{CPUUserSeconds: 1.5, CPUSystemSeconds: 0.25, PeakRSSBytes: 1 << 30, AvgRSSBytes: 1 << 29, GPUNote: "no GPU: tier has none"}}},
		Jobs: []store.JobUpdate{{ID: job.ID, State: store.JobRunning, Counts: counts, StartedAt: started, WorkerSeconds: 12.5, CostUSD: 0.0034,
			Usage: store.JobUsage{MemoryRequestedByteSeconds: 6e10, MemoryUsedByteSeconds: 3e10, CPURequestedSeconds: 60, CPUUsedSeconds: 1.75, PeakRSSBytes: 1 << 30, OOMAttempts: 1}}},
	})
	wantJob := storedJob(job, 3)
	wantJob.State, wantJob.Counts, wantJob.StartedAt = store.JobRunning, counts, started
	wantJob.WorkerSeconds, wantJob.CostUSD = 12.5, 0.0034
	wantJob.Usage = store.JobUsage{MemoryRequestedByteSeconds: 6e10, MemoryUsedByteSeconds: 3e10, CPURequestedSeconds: 60, CPUUsedSeconds: 1.75, PeakRSSBytes: 1 << 30, OOMAttempts: 1}
	checkJob(t, getJob(t, s, job.ID), wantJob)
	want := storedTasks(job.ID, tasks)
	want[0].RunTier, want[0].State, want[0].Attempts, want[0].StartedAt, want[0].FinishedAt = 1, store.TaskSucceeded, 1, started, finished
	want[1].RunTier, want[1].State, want[1].Attempts, want[1].ExitCode, want[1].Reason, want[1].StartedAt, want[1].FinishedAt = 1, store.TaskFailed, 2, -1, "timeout", started, finished
	// Ended having run: the run time in whole milliseconds (59s less 1ns).
	want[0].DurationMS, want[1].DurationMS = 58_999, 58_999
	checkTasks(t, loadTasks(t, s, job.ID), want)

	// Back to zero times and zero usage: they read back as zero.
	apply(t, s, &store.Batch{
		Tasks: []store.TaskUpdate{{JobID: job.ID, Index: 0, State: store.TaskQueued, Attempts: 1}},
		Jobs:  []store.JobUpdate{{ID: job.ID, State: store.JobSucceeded, Counts: store.TaskCounts{Succeeded: 3}, FinishedAt: finished}},
	})
	wantJob.State, wantJob.Counts, wantJob.StartedAt, wantJob.FinishedAt = store.JobSucceeded, store.TaskCounts{Succeeded: 3}, time.Time{}, finished
	wantJob.WorkerSeconds, wantJob.CostUSD, wantJob.Usage = 0, 0, store.JobUsage{}
	checkJob(t, getJob(t, s, job.ID), wantJob)
	// Not an end: the run time and peak memory stay.
	want[0].RunTier, want[0].State, want[0].StartedAt, want[0].FinishedAt = 0, store.TaskQueued, time.Time{}, time.Time{}
	checkTasks(t, loadTasks(t, s, job.ID), want)
}

func testApplyIdempotent(t *testing.T, s store.Store) {
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(2))
	running := store.Attempt{JobID: job.ID, TaskIndex: 0, Number: 1, WorkerID: "w1", State: store.AttemptRunning, StartedAt: base}
	b := &store.Batch{
		Tasks:    []store.TaskUpdate{{JobID: job.ID, Index: 0, State: store.TaskRunning, Attempts: 1, StartedAt: base}},
		Attempts: []store.Attempt{running},
		Jobs:     []store.JobUpdate{{ID: job.ID, State: store.JobRunning, Counts: store.TaskCounts{Blocked: 1, Running: 1}, StartedAt: base}},
	}
	apply(t, s, b)
	jobAfter, tasksAfter := getJob(t, s, job.ID), loadTasks(t, s, job.ID)
	apply(t, s, b) // a replayed batch (a retried group commit) changes nothing
	checkJob(t, getJob(t, s, job.ID), *jobAfter)
	checkTasks(t, loadTasks(t, s, job.ID), tasksAfter)
	checkAttempts(t, s, job.ID, 0, []store.Attempt{running})

	// The same attempt again, finished: updated in place.
	done := running
	done.State, done.ExitCode, done.Reason, done.Message, done.FinishedAt = store.AttemptSucceeded, 0, "exit", "ok", base.Add(time.Hour)
	apply(t, s, &store.Batch{Attempts: []store.Attempt{done}})
	apply(t, s, &store.Batch{Attempts: []store.Attempt{done}})
	checkAttempts(t, s, job.ID, 0, []store.Attempt{done})
}

func testApplyLastWins(t *testing.T, s store.Store) {
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(2))
	a := store.Attempt{JobID: job.ID, TaskIndex: 1, Number: 1, WorkerID: "w1", State: store.AttemptRunning}
	b := a
	b.State, b.ExitCode = store.AttemptFailed, 3
	apply(t, s, &store.Batch{
		Tasks: []store.TaskUpdate{
			{JobID: job.ID, Index: 1, State: store.TaskRunning, Attempts: 1},
			{JobID: job.ID, Index: 0, State: store.TaskQueued},
			{JobID: job.ID, Index: 1, State: store.TaskFailed, Attempts: 1, ExitCode: 3},
		},
		Attempts: []store.Attempt{a, b},
		Jobs: []store.JobUpdate{
			{ID: job.ID, State: store.JobRunning, Counts: store.TaskCounts{Queued: 1, Running: 1}},
			{ID: job.ID, State: store.JobFailed, Counts: store.TaskCounts{Queued: 1, Failed: 1}},
		},
	})
	tasks := loadTasks(t, s, job.ID)
	if tasks[1].State != store.TaskFailed || tasks[1].ExitCode != 3 || tasks[0].State != store.TaskQueued {
		t.Errorf("tasks after a batch with two updates of task 1: %+v", tasks)
	}
	checkAttempts(t, s, job.ID, 1, []store.Attempt{b})
	if got := getJob(t, s, job.ID); got.State != store.JobFailed || got.Counts != (store.TaskCounts{Queued: 1, Failed: 1}) {
		t.Errorf("job after two updates: %s %+v", got.State, got.Counts)
	}
}

func testApplyAtomic(t *testing.T, s store.Store) {
	ctx := t.Context()
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(3))
	good := store.Batch{
		Tasks:    []store.TaskUpdate{{JobID: job.ID, Index: 0, State: store.TaskRunning, Attempts: 1, StartedAt: base}},
		Attempts: []store.Attempt{{JobID: job.ID, TaskIndex: 0, Number: 1, WorkerID: "w1", State: store.AttemptRunning, StartedAt: base}},
		Jobs:     []store.JobUpdate{{ID: job.ID, State: store.JobRunning, Counts: store.TaskCounts{Blocked: 2, Running: 1}, StartedAt: base}},
	}
	jobBefore, tasksBefore := getJob(t, s, job.ID), loadTasks(t, s, job.ID)
	for _, tc := range []struct {
		name     string
		edit     func(b *store.Batch)
		notFound bool
		names    string // in the error
	}{
		{"task of an unknown job", func(b *store.Batch) {
			b.Tasks = append(b.Tasks, store.TaskUpdate{JobID: "ghost-job", Index: 0, State: store.TaskQueued})
		}, true, "ghost-job"},
		{"task past the end", func(b *store.Batch) {
			b.Tasks = append(b.Tasks, store.TaskUpdate{JobID: job.ID, Index: 3, State: store.TaskQueued})
		}, true, job.ID},
		{"attempt of an unknown task", func(b *store.Batch) {
			b.Attempts = append(b.Attempts, store.Attempt{JobID: job.ID, TaskIndex: 7, Number: 1, State: store.AttemptRunning})
		}, true, job.ID},
		{"attempt of an unknown job", func(b *store.Batch) {
			b.Attempts = append(b.Attempts, store.Attempt{JobID: "ghost-job", TaskIndex: 0, Number: 1, State: store.AttemptRunning})
		}, true, "ghost-job"},
		{"unknown job", func(b *store.Batch) {
			b.Jobs = append(b.Jobs, store.JobUpdate{ID: "ghost-job", State: store.JobRunning})
		}, true, "ghost-job"},
		{"bad task state", func(b *store.Batch) { b.Tasks[0].State = "done" }, false, "done"},
		{"bad attempt state", func(b *store.Batch) { b.Attempts[0].State = "" }, false, job.ID},
		{"bad job state", func(b *store.Batch) { b.Jobs[0].State = "finished" }, false, "finished"},
		{"NUL in a message", func(b *store.Batch) { b.Attempts[0].Message = "a\x00b" }, false, "message"},
		{"negative run tier", func(b *store.Batch) { b.Tasks[0].RunTier = -1 }, false, "run tier -1"},
		{"NUL in enforcement", func(b *store.Batch) { b.Attempts[0].Enforcement = "cgroup\x00" }, false, "enforcement"},
		{"NaN CPU seconds", func(b *store.Batch) { b.Attempts[0].Usage.CPUUserSeconds = math.NaN() }, false, "cpu_user_seconds"},
		{"infinite system CPU", func(b *store.Batch) { b.Attempts[0].Usage.CPUSystemSeconds = math.Inf(1) }, false, "cpu_system_seconds"},
		{"negative CPU seconds", func(b *store.Batch) { b.Attempts[0].Usage.CPUUserSeconds = -0.5 }, false, "cpu_user_seconds"},
		{"negative peak RSS", func(b *store.Batch) { b.Attempts[0].Usage.PeakRSSBytes = -1 }, false, "peak_rss_bytes"},
		{"negative average RSS", func(b *store.Batch) { b.Attempts[0].Usage.AvgRSSBytes = math.MinInt64 }, false, "avg_rss_bytes"},
		{"NUL in a GPU name", func(b *store.Batch) {
			b.Attempts[0].Usage.GPUs = []store.GPUUsage{{Name: "A100"}, {Index: 1, Name: "H\x00100"}}
		}, false, "gpus[1].name"},
		{"invalid UTF-8 in a GPU name", func(b *store.Batch) { b.Attempts[0].Usage.GPUs = []store.GPUUsage{{Name: "\xff"}} }, false, "gpus[0].name"},
		{"negative GPU memory", func(b *store.Batch) { b.Attempts[0].Usage.GPUs = []store.GPUUsage{{PeakMemoryBytes: -1}} }, false, "peak_memory_bytes"},
		{"NaN GPU utilization", func(b *store.Batch) {
			b.Attempts[0].Usage.GPUs = []store.GPUUsage{{AvgUtilizationPercent: math.NaN()}}
		}, false, "avg_utilization_percent"},
		{"infinite GPU utilization", func(b *store.Batch) {
			b.Attempts[0].Usage.GPUs = []store.GPUUsage{{AvgUtilizationPercent: math.Inf(1)}}
		}, false, "avg_utilization_percent"},
		{"NUL in the GPU note", func(b *store.Batch) { b.Attempts[0].Usage.GPUNote = "no GPU\x00" }, false, "gpu_note"},
		{"NaN worker seconds", func(b *store.Batch) { b.Jobs[0].WorkerSeconds = math.NaN() }, false, "worker_seconds"},
		{"infinite cost", func(b *store.Batch) { b.Jobs[0].CostUSD = math.Inf(-1) }, false, "cost_usd"},
		{"negative requested memory", func(b *store.Batch) { b.Jobs[0].Usage.MemoryRequestedByteSeconds = -1 }, false, "memory_requested_byte_seconds"},
		{"NaN used memory", func(b *store.Batch) { b.Jobs[0].Usage.MemoryUsedByteSeconds = math.NaN() }, false, "memory_used_byte_seconds"},
		{"infinite requested CPU", func(b *store.Batch) { b.Jobs[0].Usage.CPURequestedSeconds = math.Inf(1) }, false, "cpu_requested_seconds"},
		{"negative used CPU", func(b *store.Batch) { b.Jobs[0].Usage.CPUUsedSeconds = -2 }, false, "cpu_used_seconds"},
		{"negative job peak RSS", func(b *store.Batch) { b.Jobs[0].Usage.PeakRSSBytes = -1 }, false, "peak_rss_bytes"},
		{"negative OOM attempts", func(b *store.Batch) { b.Jobs[0].Usage.OOMAttempts = -1 }, false, "oom_attempts"},
	} {
		b := good
		b.Tasks = slices.Clone(good.Tasks)
		b.Attempts = slices.Clone(good.Attempts)
		b.Jobs = slices.Clone(good.Jobs)
		tc.edit(&b)
		err := s.Apply(ctx, &b)
		if err == nil {
			t.Errorf("%s: Apply succeeded", tc.name)
			continue
		}
		if !errors.Is(err, store.ErrRejected) {
			t.Errorf("%s: error %v does not wrap ErrRejected", tc.name, err)
		}
		if errors.Is(err, store.ErrNotFound) != tc.notFound {
			t.Errorf("%s: error %v; wraps ErrNotFound: %v, want %v", tc.name, err, !tc.notFound, tc.notFound)
		}
		if !strings.Contains(err.Error(), tc.names) {
			t.Errorf("%s: error %q does not mention %q", tc.name, err, tc.names)
		}
		checkJob(t, getJob(t, s, job.ID), *jobBefore)
		checkTasks(t, loadTasks(t, s, job.ID), tasksBefore)
		if at, err := s.ListAttempts(ctx, job.ID, 0); err != nil || len(at) != 0 {
			t.Errorf("%s: a failed batch left attempts %v (%v)", tc.name, at, err)
		}
	}
	apply(t, s, &good) // and the good part alone goes through
	if got := getJob(t, s, job.ID); got.State != store.JobRunning {
		t.Errorf("after the good batch: job %s", got.State)
	}
}

func testApplyEmpty(t *testing.T, s store.Store) {
	if err := s.Apply(t.Context(), &store.Batch{}); err != nil {
		t.Errorf("Apply(empty batch): %v", err)
	}
	if err := s.Apply(t.Context(), nil); err != nil {
		t.Errorf("Apply(nil): %v", err)
	}
}

// testConcurrent runs writers and readers at once: no error (no "database
// is locked"), and every write lands.
func testConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	const writers, batches, perBatch = 4, 10, 20
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(writers*batches*perBatch))
	var wg sync.WaitGroup
	errs := make(chan error, writers+2)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				var batch store.Batch
				for i := range perBatch {
					idx := int32((w*batches+b)*perBatch + i)
					batch.Tasks = append(batch.Tasks, store.TaskUpdate{JobID: job.ID, Index: idx, State: store.TaskSucceeded, Attempts: 1})
					batch.Attempts = append(batch.Attempts, store.Attempt{JobID: job.ID, TaskIndex: idx, Number: 1, State: store.AttemptSucceeded})
				}
				if err := s.Apply(ctx, &batch); err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
			}
		})
	}
	for r := range 2 {
		wg.Go(func() {
			for range 25 {
				if _, err := s.ListTasks(ctx, store.TaskFilter{JobID: job.ID, States: []store.TaskState{store.TaskSucceeded}, After: -1, Limit: 50}); err != nil {
					errs <- fmt.Errorf("reader %d: %w", r, err)
					return
				}
				if _, err := s.GetJob(ctx, job.ID); err != nil {
					errs <- fmt.Errorf("reader %d: %w", r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, task := range loadTasks(t, s, job.ID) {
		if task.State != store.TaskSucceeded {
			t.Fatalf("task %d: %s after all writers finished", task.Index, task.State)
		}
	}
}

func testContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.CreateJob(ctx, newJob("cancelled"), newTasks(10)); err == nil {
		t.Errorf("CreateJob with a cancelled context succeeded")
	}
	if _, err := s.GetJob(t.Context(), "cancelled"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after CreateJob with a cancelled context: GetJob: %v, want not found", err)
	}
	if _, err := s.GetJob(ctx, "cancelled"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetJob with a cancelled context: %v, want the context's error", err)
	}
	if err := s.Apply(ctx, &store.Batch{Jobs: []store.JobUpdate{{ID: "x", State: store.JobRunning}}}); err == nil || errors.Is(err, store.ErrRejected) {
		t.Errorf("Apply with a cancelled context: %v, want the context's error (transient, not ErrRejected)", err)
	}
	create(t, s, newJob("growing"), newTasks(1))
	if err := s.AppendTasks(ctx, "growing", moreTasks("x", 1, 2)); err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrRejected) {
		t.Errorf("AppendTasks with a cancelled context: %v, want the context's error", err)
	}
	if j := getJob(t, s, "growing"); j.TaskCount != 1 {
		t.Errorf("after AppendTasks with a cancelled context: task count %d, want 1", j.TaskCount)
	}
}

func testClose(t *testing.T, s store.Store) {
	create(t, s, newJob("closing"), newTasks(1))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.GetJob(t.Context(), "closing"); err == nil {
		t.Errorf("GetJob after Close succeeded")
	}
	if err := s.Apply(t.Context(), &store.Batch{Jobs: []store.JobUpdate{{ID: "closing", State: store.JobRunning}}}); err == nil || errors.Is(err, store.ErrRejected) {
		t.Errorf("Apply after Close: %v, want an error that is not ErrRejected", err)
	}
	if err := s.AppendTasks(t.Context(), "closing", moreTasks("x", 1, 1)); err == nil {
		t.Errorf("AppendTasks after Close succeeded")
	}
}

func testRequestTaskCancel(t *testing.T, s store.Store) {
	ctx := t.Context()
	id, done := newID(base, 1), newID(base, 2)
	create(t, s, newJob(id), newTasks(3))
	create(t, s, newJob(done), newTasks(1))
	checkNotFound(t, "RequestTaskCancel(unknown job)", s.RequestTaskCancel(ctx, "no-such-job", 0), "no-such-job")
	if err := s.RequestTaskCancel(ctx, id, 7); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RequestTaskCancel(unknown index) = %v, want ErrNotFound", err)
	}
	// Task 2 is terminal: a request for it records nothing.
	apply(t, s, &store.Batch{Tasks: []store.TaskUpdate{{JobID: id, Index: 2, State: store.TaskSucceeded}}})
	for range 2 { // a second request is the same as one
		for _, idx := range []int32{1, 2} {
			if err := s.RequestTaskCancel(ctx, id, idx); err != nil {
				t.Fatalf("RequestTaskCancel(%d): %v", idx, err)
			}
		}
	}
	if err := s.RequestTaskCancel(ctx, done, 0); err != nil {
		t.Fatal(err)
	}
	apply(t, s, &store.Batch{Jobs: []store.JobUpdate{{ID: done, State: store.JobSucceeded}}})
	got, err := s.ListTaskCancels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The request of the finished job is no longer listed.
	if want := []store.TaskRef{{JobID: id, Index: 1}}; !slices.Equal(got, want) {
		t.Errorf("ListTaskCancels = %v, want %v", got, want)
	}
}

func testLease(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := base
	a := store.Lease{Name: "runner", Holder: "a", Address: "http://a", ExpiresAt: now.Add(10 * time.Second)}
	got, ok, err := s.AcquireLease(ctx, a, now)
	if err != nil || !ok || got.Holder != "a" || got.Address != "http://a" || !got.ExpiresAt.Equal(a.ExpiresAt) {
		t.Fatalf("first acquire: %+v %v %v", got, ok, err)
	}
	b := store.Lease{Name: "runner", Holder: "b", Address: "http://b", ExpiresAt: now.Add(15 * time.Second)}
	if got, ok, err = s.AcquireLease(ctx, b, now.Add(5*time.Second)); err != nil || ok || got.Holder != "a" {
		t.Fatalf("acquire of a held lease: %+v %v %v, want refused naming holder a", got, ok, err)
	}
	// The holder renews.
	a.ExpiresAt = now.Add(20 * time.Second)
	if got, ok, err = s.AcquireLease(ctx, a, now.Add(6*time.Second)); err != nil || !ok || !got.ExpiresAt.Equal(a.ExpiresAt) {
		t.Fatalf("renew: %+v %v %v", got, ok, err)
	}
	// Another name is independent.
	if _, ok, err = s.AcquireLease(ctx, store.Lease{Name: "other", Holder: "b", ExpiresAt: now.Add(time.Second)}, now); err != nil || !ok {
		t.Fatalf("other lease: %v %v", ok, err)
	}
	// Once expired, someone else takes it.
	b.ExpiresAt = now.Add(40 * time.Second)
	if got, ok, err = s.AcquireLease(ctx, b, now.Add(20*time.Second)); err != nil || !ok || got.Holder != "b" {
		t.Fatalf("acquire of an expired lease: %+v %v %v", got, ok, err)
	}
	// Releasing someone else's lease does nothing; the holder's own frees it.
	if err := s.ReleaseLease(ctx, "runner", "a"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ = s.AcquireLease(ctx, a, now.Add(21*time.Second)); ok {
		t.Fatal("a took b's lease after releasing a lease it no longer held")
	}
	if err := s.ReleaseLease(ctx, "runner", "b"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err = s.AcquireLease(ctx, a, now.Add(22*time.Second)); err != nil || !ok {
		t.Fatalf("acquire after release: %v %v", ok, err)
	}
}

func testCreateRunTier(t *testing.T, s store.Store) {
	ctx := t.Context()
	job := newJob(newID(base, 1))
	job.Tiers = append(job.Tiers, store.Tier{Name: "huge", CPU: 16, MemoryBytes: 1 << 42})
	tasks := []store.Task{
		{Index: 0, Key: "first", Tier: 0, RunTier: 0},
		{Index: 1, Key: "starts-late", Tier: 2, RunTier: 0}, // RunTier left 0: the task runs on Tier
		{Index: 2, Key: "moved-up", Tier: 0, RunTier: 1},    // a later run tier is kept
		{Index: 3, Key: "below-tier", Tier: 2, RunTier: 1},  // never below Tier
		{Index: 4, Key: "same", Tier: 1, RunTier: 1},
	}
	wantRunTiers := []int32{0, 2, 1, 2, 1}
	create(t, s, job, tasks)
	got := loadTasks(t, s, job.ID)
	for i, task := range got {
		if task.Tier != tasks[i].Tier || task.RunTier != wantRunTiers[i] {
			t.Errorf("task %s: tier %d, run tier %d; want %d, %d", task.Key, task.Tier, task.RunTier, tasks[i].Tier, wantRunTiers[i])
		}
	}
	listed, err := s.ListTasks(ctx, store.TaskFilter{JobID: job.ID, After: -1})
	if err != nil {
		t.Fatal(err)
	}
	checkTasks(t, listed, got)
	one, err := s.GetTask(ctx, job.ID, "starts-late")
	if err != nil || one.RunTier != 2 {
		t.Errorf("GetTask(starts-late) = %+v, %v; want run tier 2", one, err)
	}
}

func testApplyRunTier(t *testing.T, s store.Store) {
	ctx := t.Context()
	job := newJob(newID(base, 1))
	job.Tiers = append(job.Tiers, store.Tier{Name: "huge", CPU: 16, MemoryBytes: 1 << 42})
	tasks := newTasks(5)
	create(t, s, job, tasks)
	// Out of memory: tasks 0 and 3 move up a tier, task 1 two; a batch may
	// hold two updates of one task (the later wins).
	apply(t, s, &store.Batch{Tasks: []store.TaskUpdate{
		{JobID: job.ID, Index: 0, RunTier: 1, State: store.TaskQueued, Attempts: 1},
		{JobID: job.ID, Index: 1, RunTier: 2, State: store.TaskQueued, Attempts: 1},
		{JobID: job.ID, Index: 3, RunTier: 1, State: store.TaskRunning, Attempts: 1},
		{JobID: job.ID, Index: 3, RunTier: 2, State: store.TaskQueued, Attempts: 2},
	}})
	want := storedTasks(job.ID, tasks)
	want[0].RunTier, want[0].State, want[0].Attempts = 1, store.TaskQueued, 1
	want[1].RunTier, want[1].State, want[1].Attempts = 2, store.TaskQueued, 1
	want[3].RunTier, want[3].State, want[3].Attempts = 2, store.TaskQueued, 2
	checkTasks(t, loadTasks(t, s, job.ID), want)
	queued, err := s.ListTasks(ctx, store.TaskFilter{JobID: job.ID, States: []store.TaskState{store.TaskQueued}, After: -1})
	if err != nil {
		t.Fatal(err)
	}
	checkTasks(t, queued, []store.Task{want[0], want[1], want[3]})
	if got, err := s.GetTask(ctx, job.ID, "t-1"); err != nil || got.RunTier != 2 {
		t.Errorf("GetTask(t-1) = %+v, %v; want run tier 2", got, err)
	}
	// Apply writes the run tier it is given, as every other field.
	apply(t, s, &store.Batch{Tasks: []store.TaskUpdate{{JobID: job.ID, Index: 1, RunTier: 0, State: store.TaskSucceeded, Attempts: 1}}})
	want[1].RunTier, want[1].State = 0, store.TaskSucceeded
	checkTasks(t, loadTasks(t, s, job.ID), want)
}

// usageGPUs are GPU figures at the edges of what JSON and the columns hold.
var usageGPUs = []store.GPUUsage{
	{Index: 0, Name: "NVIDIA A100-SXM4-80GB", PeakMemoryBytes: 80 << 30, AvgUtilizationPercent: 99.99999999999999},
	{Index: 7, Name: `quote" back\slash 日本 🚀 ` + "\u2028\t\x01", PeakMemoryBytes: math.MaxInt64, AvgUtilizationPercent: math.SmallestNonzeroFloat64},
	{Index: 3, Name: "", PeakMemoryBytes: 0, AvgUtilizationPercent: 0.1 + 0.2},
	{Index: 1, Name: "null", PeakMemoryBytes: 1, AvgUtilizationPercent: math.MaxFloat64},
	{Index: 2, Name: "[]", PeakMemoryBytes: 1 << 53, AvgUtilizationPercent: 1e21},
	{Index: 4, Name: "x", PeakMemoryBytes: 1<<53 + 1, AvgUtilizationPercent: 1e-7},
}

func testApplyAttemptUsage(t *testing.T, s store.Store) {
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(3))
	running := store.Attempt{JobID: job.ID, TaskIndex: 0, Number: 1, Tier: 1, WorkerID: "w1", State: store.AttemptRunning, StartedAt: base}
	apply(t, s, &store.Batch{Attempts: []store.Attempt{running}})
	checkAttempts(t, s, job.ID, 0, []store.Attempt{running}) // zero usage, no GPUs (nil)

	// Finished: the upsert writes its usage. Several attempts in one
	// batch each keep their own figures.
	done := running
	done.State, done.Reason, done.ExitCode, done.Signal, done.FinishedAt = store.AttemptFailed, store.ReasonOOM, 137, 9, base.Add(time.Minute)
	done.Enforcement = "cgroup-v2"
	done.Usage = store.Usage{
		CPUUserSeconds: 0.1 + 0.2, CPUSystemSeconds: math.MaxFloat64,
		PeakRSSBytes: math.MaxInt64, AvgRSSBytes: 1,
		GPUs:    slices.Clone(usageGPUs),
		GPUNote: "",
	}
	other := store.Attempt{JobID: job.ID, TaskIndex: 1, Number: 1, WorkerID: "w2", State: store.AttemptSucceeded, Reason: "exit",
		StartedAt: base, FinishedAt: base.Add(time.Second), Enforcement: "rss-poll",
		Usage: store.Usage{CPUUserSeconds: 12.75, CPUSystemSeconds: math.SmallestNonzeroFloat64, PeakRSSBytes: 4 << 20, AvgRSSBytes: 3 << 20,
			GPUs: []store.GPUUsage{}, GPUNote: "no GPU: the tier requests none"}}
	third := store.Attempt{JobID: job.ID, TaskIndex: 2, Number: 1, WorkerID: "w3", State: store.AttemptSucceeded, Enforcement: "none",
		Usage: store.Usage{CPUUserSeconds: 1e-300, GPUs: usageGPUs[2:3], GPUNote: oddStrings[9]}}
	apply(t, s, &store.Batch{Attempts: []store.Attempt{done, other, third}})
	// No GPUs reads back as nil, whether nil or empty went in.
	otherWant := other
	otherWant.Usage.GPUs = nil
	checkAttempts(t, s, job.ID, 0, []store.Attempt{done})
	checkAttempts(t, s, job.ID, 1, []store.Attempt{otherWant})
	checkAttempts(t, s, job.ID, 2, []store.Attempt{third})
	if at, err := s.ListAttempts(t.Context(), job.ID, 0); err == nil && len(at) == 1 && !at[0].OOM() {
		t.Errorf("attempt with reason %q: OOM() = false", at[0].Reason)
	}

	// Upserted again with other figures and no GPUs: nothing of the old
	// figures remains.
	again := done
	again.Enforcement = "cgroup-v1"
	again.Usage = store.Usage{CPUUserSeconds: 2, AvgRSSBytes: 5, GPUNote: "no GPU: nvidia-smi not found"}
	apply(t, s, &store.Batch{Attempts: []store.Attempt{again}})
	checkAttempts(t, s, job.ID, 0, []store.Attempt{again})
}

func testApplyJobUsage(t *testing.T, s store.Store) {
	ctx := t.Context()
	usages := []store.JobUsage{
		{MemoryRequestedByteSeconds: 3.5e15, MemoryUsedByteSeconds: 1.25e15, CPURequestedSeconds: 7200, CPUUsedSeconds: 0.1 + 0.2, PeakRSSBytes: 3 << 30, OOMAttempts: 2},
		{MemoryRequestedByteSeconds: math.MaxFloat64, MemoryUsedByteSeconds: math.SmallestNonzeroFloat64, CPURequestedSeconds: 1e-300, CPUUsedSeconds: 1e300, PeakRSSBytes: math.MaxInt64, OOMAttempts: math.MaxInt64},
		{}, // a job no attempt of which has finished
	}
	var ids []string
	var b store.Batch
	for i, u := range usages {
		created := base.Add(time.Duration(i) * time.Second)
		job := newJob(newID(created, uint64(i)))
		job.CreatedAt = created
		create(t, s, job, newTasks(1))
		ids = append(ids, job.ID)
		b.Jobs = append(b.Jobs, store.JobUpdate{ID: job.ID, State: store.JobRunning, Counts: store.TaskCounts{Running: 1}, StartedAt: base,
			WorkerSeconds: float64(i) + 0.5, CostUSD: float64(i) / 3, Usage: u})
	}
	apply(t, s, &b)
	for i, id := range ids {
		got := getJob(t, s, id)
		if got.Usage != usages[i] || got.WorkerSeconds != float64(i)+0.5 || got.CostUSD != float64(i)/3 {
			t.Errorf("GetJob(%s): usage %+v, worker seconds %v, cost %v; want %+v, %v, %v", id, got.Usage, got.WorkerSeconds, got.CostUSD, usages[i], float64(i)+0.5, float64(i)/3)
		}
	}
	listed, err := s.ListJobs(ctx, store.JobFilter{})
	if err != nil {
		t.Fatal(err)
	}
	active, err := s.ListActiveJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for what, jobs := range map[string][]store.Job{"ListJobs": listed, "ListActiveJobs": active} {
		if len(jobs) != len(ids) {
			t.Errorf("%s: %d jobs, want %d", what, len(jobs), len(ids))
			continue
		}
		for _, j := range jobs {
			i := slices.Index(ids, j.ID)
			if i < 0 || j.Usage != usages[i] {
				t.Errorf("%s: job %s usage %+v, want %+v", what, j.ID, j.Usage, usages[max(i, 0)])
			}
		}
	}
}

// SchemaV3Rows fill a database with the schema of migrations 1 to 3 (before
// run tiers and usage) with a running job of two tasks, one of them on tier
// 1 and running an attempt, and a held lease (before lease epochs), in SQL
// that both drivers accept. A driver's
// upgrade test runs them on such a database, opens a store on it (which
// migrates it) and calls CheckSchemaV3Rows.
var SchemaV3Rows = []string{
	`INSERT INTO jobs (id, name, namespace, labels, env, tiers, max_workers, state, task_count,
	count_queued, count_running, created_at, started_at, worker_seconds, cost_usd)
VALUES ('v3-job', 'old', 'perception', '{}', 'null',
	'[{"name":"small","cpu":1,"memory_bytes":1073741824,"gpu":0},{"name":"big","cpu":4,"memory_bytes":34359738368,"gpu":1}]',
	2, 'running', 2, 1, 1, 1000, 2000, 2.5, 0.25)`,
	`INSERT INTO tasks (job_id, idx, key, argv, env, cwd, after_deps, tier, retries, timeout_ms, state, attempts, started_at)
VALUES ('v3-job', 0, 'a', '["true"]', '{}', '/', '[]', 0, 1, 0, 'queued', 0, NULL),
	('v3-job', 1, 'b', '["false"]', 'null', '', '["a"]', 1, 2, 5000, 'running', 1, 2000)`,
	`INSERT INTO attempts (job_id, task_idx, number, tier, worker_id, state, exit_code, signal, reason, message, started_at)
VALUES ('v3-job', 1, 1, 1, 'w1', 'running', 0, 0, '', '', 2000)`,
	`INSERT INTO leases (name, holder, address, expires_at) VALUES ('runner', 'old', 'http://old', 5000)`,
}

// CheckSchemaV3Rows checks what a migrated store reads of SchemaV3Rows: the
// old fields as they were, each task's run tier its first tier, no usage,
// the lease in its first epoch, and new fields writable.
func CheckSchemaV3Rows(t *testing.T, s store.Store) {
	t.Helper()
	job := getJob(t, s, "v3-job")
	want := store.Job{
		ID: "v3-job", Name: "old", Namespace: "perception", Labels: map[string]string{},
		Tiers:      []store.Tier{{Name: "small", CPU: 1, MemoryBytes: 1 << 30}, {Name: "big", CPU: 4, MemoryBytes: 32 << 30, GPU: 1}},
		MaxWorkers: 2, State: store.JobRunning, TaskCount: 2, Counts: store.TaskCounts{Queued: 1, Running: 1},
		WorkerSeconds: 2.5, CostUSD: 0.25, CreatedAt: time.Unix(0, 1000), StartedAt: time.Unix(0, 2000),
	}
	checkJob(t, job, want)
	checkTasks(t, loadTasks(t, s, "v3-job"), []store.Task{
		{JobID: "v3-job", Index: 0, Key: "a", Argv: []string{"true"}, Env: map[string]string{}, Cwd: "/", After: []string{},
			Tier: 0, RunTier: 0, Retries: 1, State: store.TaskQueued, DurationMS: -1},
		{JobID: "v3-job", Index: 1, Key: "b", Argv: []string{"false"}, After: []string{"a"},
			Tier: 1, RunTier: 1, Retries: 2, TimeoutMS: 5000, State: store.TaskRunning, Attempts: 1, StartedAt: time.Unix(0, 2000), DurationMS: -1},
	})
	running := store.Attempt{JobID: "v3-job", TaskIndex: 1, Number: 1, Tier: 1, WorkerID: "w1", State: store.AttemptRunning, StartedAt: time.Unix(0, 2000)}
	checkAttempts(t, s, "v3-job", 1, []store.Attempt{running})

	done := running
	done.State, done.Reason, done.FinishedAt, done.Enforcement = store.AttemptFailed, store.ReasonOOM, time.Unix(0, 3000), "cgroup-v2"
	done.Usage = store.Usage{CPUUserSeconds: 1, PeakRSSBytes: 1 << 30, GPUs: usageGPUs[:1]}
	apply(t, s, &store.Batch{
		Tasks:    []store.TaskUpdate{{JobID: "v3-job", Index: 1, RunTier: 1, State: store.TaskQueued, Attempts: 1}},
		Attempts: []store.Attempt{done},
		Jobs:     []store.JobUpdate{{ID: "v3-job", State: store.JobRunning, Counts: store.TaskCounts{Queued: 2}, Usage: store.JobUsage{PeakRSSBytes: 1 << 30, OOMAttempts: 1}}},
	})
	checkAttempts(t, s, "v3-job", 1, []store.Attempt{done})
	if got := getJob(t, s, "v3-job").Usage; got != (store.JobUsage{PeakRSSBytes: 1 << 30, OOMAttempts: 1}) {
		t.Errorf("job usage after an update of the migrated job: %+v", got)
	}

	old := store.Lease{Name: "runner", Holder: "old", Address: "http://old", ExpiresAt: time.Unix(0, 5000), Epoch: 1}
	if ls := listLeases(t, s, ""); len(ls) != 1 {
		t.Errorf("leases of the migrated store: %+v, want %+v", ls, old)
	} else {
		checkLease(t, "the migrated lease", ls[0], old)
	}
	take(t, s, "runner", "old", time.Unix(0, 6000), time.Second, 1)
	take(t, s, "runner", "new", time.Unix(0, 6000).Add(time.Hour), time.Second, 2)
}
