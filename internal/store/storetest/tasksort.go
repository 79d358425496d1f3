package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// The suite of ListTasks's sorts and new filters, ListJobs's name, label
// and creation time filters, job groups and TaskRangeStats. Expected
// results come from a model the tests keep of what they wrote, never from
// the store.

// sortTask is the model of one task of testTaskSort's job.
type sortTask struct {
	idx      int32
	key      string
	state    store.TaskState
	exit     int32
	runTier  int32
	reason   string
	duration int64 // -1: not ended having run
	peak     int64
	started  time.Time
	finished time.Time
}

// sortJob creates a job of n tasks and ends or moves many of them with
// assorted run times (whole milliseconds plus a fraction the store drops,
// with ties), peak memory (with ties), exit codes, run tiers and reasons,
// and returns the model of every task.
func sortJob(t *testing.T, s store.Store, n int) (*store.Job, []sortTask) {
	t.Helper()
	job := newJob(newID(base, 1))
	tasks := make([]store.Task, n)
	model := make([]sortTask, n)
	for i := range tasks {
		key := fmt.Sprintf("sim/%d", i)
		if i%4 == 0 {
			key = fmt.Sprintf("prep-%d", i)
		}
		tasks[i] = store.Task{Index: int32(i), Key: key, Argv: []string{"x"}}
		model[i] = sortTask{idx: int32(i), key: key, state: store.TaskQueued, duration: -1} // a root: stored queued
	}
	create(t, s, job, tasks)

	r := rand.New(rand.NewPCG(7, uint64(n)))
	durations := []int64{0, 5, 5, 17, 100, 100, 100, 2500, 86_400_000}
	peaks := []int64{0, 7, 1 << 20, 1 << 20, 3 << 30, 3 << 30, 1 << 40}
	exits := []int32{0, 1, 137, -1}
	reasons := []string{"", "exit", "oom", "timeout"}
	var b store.Batch
	for i := range model {
		m := &model[i]
		m.exit, m.runTier, m.reason = exits[r.IntN(len(exits))], int32(r.IntN(2)), reasons[r.IntN(len(reasons))]
		u := store.TaskUpdate{JobID: job.ID, Index: m.idx, RunTier: m.runTier, Attempts: 1, ExitCode: m.exit, Reason: m.reason}
		switch kind := r.IntN(10); {
		case kind < 6: // ended having run
			m.state = []store.TaskState{store.TaskSucceeded, store.TaskFailed, store.TaskCancelled}[r.IntN(3)]
			m.duration, m.peak = durations[r.IntN(len(durations))], peaks[r.IntN(len(peaks))]
			m.started = base.Add(time.Duration(i) * time.Second)
			m.finished = m.started.Add(time.Duration(m.duration)*time.Millisecond + time.Duration(r.IntN(1_000_000)))
			u.PeakRSSBytes = m.peak
		case kind == 6: // never ran
			m.state = []store.TaskState{store.TaskUpstreamFailed, store.TaskCancelled}[r.IntN(2)]
			m.finished = base
		case kind == 7: // running
			m.state, m.started = store.TaskRunning, base
			u.PeakRSSBytes = 99 // not an end: not stored
		case kind == 8:
			m.state = store.TaskBlocked
		default: // as created
			m.state, m.exit, m.runTier, m.reason = store.TaskQueued, 0, 0, ""
			continue
		}
		u.State, u.StartedAt, u.FinishedAt = m.state, m.started, m.finished
		b.Tasks = append(b.Tasks, u)
	}
	apply(t, s, &b)

	// Tasks 1 and 2 end, then go back to the queue for a retry: what
	// they ended with stays. Task 3 ends with a finish before its start
	// (clocks): a run time of 0. Task 5 ends with no finish time: no run
	// time. Task 6 ends with no start after an earlier end: no run time.
	fix := func(i int, st store.TaskState, started, finished time.Time, peak int64) store.TaskUpdate {
		m := &model[i]
		m.state, m.started, m.finished = st, started, finished
		return store.TaskUpdate{JobID: job.ID, Index: m.idx, State: st, RunTier: m.runTier, Attempts: 1, ExitCode: m.exit, Reason: m.reason,
			StartedAt: started, FinishedAt: finished, PeakRSSBytes: peak}
	}
	b = store.Batch{Tasks: []store.TaskUpdate{
		fix(1, store.TaskFailed, base, base.Add(1234*time.Millisecond+999_999), 55),
		fix(2, store.TaskFailed, base, base.Add(100*time.Millisecond), 1<<20),
		fix(3, store.TaskSucceeded, base.Add(time.Second), base, 8),
		fix(5, store.TaskFailed, base, time.Time{}, 9),
		fix(6, store.TaskSucceeded, base, base.Add(time.Second), 10),
	}}
	apply(t, s, &b)
	model[1].duration, model[1].peak = 1234, 55
	model[2].duration, model[2].peak = 100, 1<<20
	model[3].duration, model[3].peak = 0, 8
	model[5].duration, model[5].peak = -1, 9
	apply(t, s, &store.Batch{Tasks: []store.TaskUpdate{
		fix(1, store.TaskQueued, time.Time{}, time.Time{}, 0),
		fix(2, store.TaskQueued, time.Time{}, time.Time{}, 77),
		fix(6, store.TaskCancelled, time.Time{}, base, 0),
	}})
	model[6].duration, model[6].peak = -1, 0
	return job, model
}

// checkSortModel checks that the store holds what the model says.
func checkSortModel(t *testing.T, s store.Store, jobID string, model []sortTask) {
	t.Helper()
	got := loadTasks(t, s, jobID)
	if len(got) != len(model) {
		t.Fatalf("LoadTasks: %d tasks, want %d", len(got), len(model))
	}
	for i, m := range model {
		g := got[i]
		if g.Index != m.idx || g.State != m.state || g.ExitCode != m.exit || g.RunTier != m.runTier || g.Reason != m.reason ||
			g.DurationMS != m.duration || g.PeakRSSBytes != m.peak {
			t.Errorf("task %d: state %s exit %d tier %d reason %q duration %d peak %d; want %s %d %d %q %d %d",
				m.idx, g.State, g.ExitCode, g.RunTier, g.Reason, g.DurationMS, g.PeakRSSBytes,
				m.state, m.exit, m.runTier, m.reason, m.duration, m.peak)
		}
	}
}

func (m *sortTask) matches(f *store.TaskFilter) bool {
	if len(f.States) > 0 && !slices.Contains(f.States, m.state) {
		return false
	}
	if f.KeyGlob != "" {
		if ok, _ := path.Match(f.KeyGlob, m.key); !ok {
			return false
		}
	}
	if f.ExitCode != nil && *f.ExitCode != m.exit || f.RunTier != nil && *f.RunTier != m.runTier || f.Reason != "" && f.Reason != m.reason {
		return false
	}
	if m.idx < f.FirstIndex || f.EndIndex != 0 && m.idx >= f.EndIndex {
		return false
	}
	return f.Sort == store.SortIndex || m.duration >= 0
}

func (m *sortTask) sortValue(s store.TaskSort) int64 {
	switch s {
	case store.SortDuration:
		return m.duration
	case store.SortPeakRSS:
		return m.peak
	}
	return int64(m.idx)
}

// wantSorted is the model's answer to f, all pages together.
func wantSorted(model []sortTask, f store.TaskFilter) []int32 {
	var sel []sortTask
	for _, m := range model {
		if m.matches(&f) {
			sel = append(sel, m)
		}
	}
	slices.SortStableFunc(sel, func(a, b sortTask) int {
		va, vb := a.sortValue(f.Sort), b.sortValue(f.Sort)
		if va != vb {
			if (va < vb) != f.Desc {
				return -1
			}
			return 1
		}
		return int(a.idx - b.idx)
	})
	out := make([]int32, len(sel))
	for i, m := range sel {
		out[i] = m.idx
	}
	return out
}

// pageAll lists f's tasks page by page (keyset: the last row's sort value
// and index), checking each page's rows against the model.
func pageAll(t *testing.T, s store.Store, model []sortTask, f store.TaskFilter) ([]int32, error) {
	t.Helper()
	f.After = -1
	f.AfterValue = -12345 // ignored on the first page
	var got []int32
	for range len(model) + 2 {
		page, err := s.ListTasks(t.Context(), f)
		if err != nil {
			return nil, err
		}
		if f.Limit > 0 && len(page) > f.Limit {
			t.Errorf("ListTasks(%+v): page of %d, limit %d", f, len(page), f.Limit)
		}
		if len(page) == 0 {
			return got, nil
		}
		for _, task := range page {
			m := model[task.Index]
			if task.Key != m.key || task.State != m.state || task.DurationMS != m.duration || task.PeakRSSBytes != m.peak {
				t.Errorf("ListTasks(%+v): task %d %s %s %d %d, want %s %s %d %d", f, task.Index, task.Key, task.State,
					task.DurationMS, task.PeakRSSBytes, m.key, m.state, m.duration, m.peak)
			}
			got = append(got, task.Index)
		}
		last := model[page[len(page)-1].Index]
		f.After, f.AfterValue = last.idx, last.sortValue(f.Sort)
		if f.Limit <= 0 {
			f.Limit = 1000
		}
	}
	return nil, fmt.Errorf("ListTasks(%+v): pages do not end", f)
}

func int32p(v int32) *int32 { return &v }

func testTaskSort(t *testing.T, s store.Store) {
	job, model := sortJob(t, s, 120)
	checkSortModel(t, s, job.ID, model)

	filters := []struct {
		name     string
		f        store.TaskFilter
		nonEmpty bool // the filter selects some ended task: the test means something
	}{
		{"all", store.TaskFilter{}, true},
		{"state", store.TaskFilter{States: []store.TaskState{store.TaskFailed}}, true},
		{"states", store.TaskFilter{States: []store.TaskState{store.TaskSucceeded, store.TaskQueued}}, true},
		{"glob", store.TaskFilter{KeyGlob: "sim/*"}, true},
		{"glob prep", store.TaskFilter{KeyGlob: "prep-?"}, false},
		{"exit 137", store.TaskFilter{ExitCode: int32p(137)}, true},
		{"exit 0", store.TaskFilter{ExitCode: int32p(0)}, true},
		{"exit -1", store.TaskFilter{ExitCode: int32p(-1)}, true},
		{"run tier 1", store.TaskFilter{RunTier: int32p(1)}, true},
		{"run tier 0", store.TaskFilter{RunTier: int32p(0)}, true},
		{"reason", store.TaskFilter{Reason: "oom"}, true},
		{"range", store.TaskFilter{FirstIndex: 10, EndIndex: 30}, true},
		{"from", store.TaskFilter{FirstIndex: 100}, true},
		{"to", store.TaskFilter{EndIndex: 7}, true},
		{"empty range", store.TaskFilter{FirstIndex: 30, EndIndex: 30}, false},
		{"combined", store.TaskFilter{States: []store.TaskState{store.TaskSucceeded, store.TaskFailed, store.TaskCancelled},
			KeyGlob: "sim/*", RunTier: int32p(1), FirstIndex: 5, EndIndex: 110}, true},
		{"all filters", store.TaskFilter{States: []store.TaskState{store.TaskSucceeded, store.TaskFailed, store.TaskCancelled},
			KeyGlob: "*", ExitCode: int32p(1), RunTier: int32p(0), Reason: "exit", FirstIndex: 1, EndIndex: 120}, false},
		{"none", store.TaskFilter{ExitCode: int32p(42)}, false},
	}
	sorts := []struct {
		name string
		sort store.TaskSort
		desc bool
	}{
		{"index", store.SortIndex, false},
		{"duration", store.SortDuration, false},
		{"duration desc", store.SortDuration, true},
		{"peak", store.SortPeakRSS, false},
		{"peak desc", store.SortPeakRSS, true},
	}
	for _, fc := range filters {
		for _, sc := range sorts {
			f := fc.f
			f.JobID, f.Sort, f.Desc = job.ID, sc.sort, sc.desc
			want := wantSorted(model, f)
			if fc.nonEmpty && sc.sort != store.SortIndex && len(want) == 0 {
				t.Fatalf("%s by %s: the model selects no task; the test needs other data", fc.name, sc.name)
			}
			for _, limit := range []int{0, 1, 4} {
				f.Limit = limit
				got, err := pageAll(t, s, model, f)
				if err != nil {
					t.Errorf("%s by %s, limit %d: %v", fc.name, sc.name, limit, err)
					continue
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s by %s, limit %d: pages list %v, want %v", fc.name, sc.name, limit, got, want)
				}
			}
		}
	}

	// Every ended task exactly once, by either sort, in either order; no
	// task that has not ended having run.
	var ended []int32
	for _, m := range model {
		if m.duration >= 0 {
			ended = append(ended, m.idx)
		}
	}
	for _, sc := range sorts[1:] {
		got, err := pageAll(t, s, model, store.TaskFilter{JobID: job.ID, Sort: sc.sort, Desc: sc.desc, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		sorted := slices.Clone(got)
		slices.Sort(sorted)
		if !slices.Equal(sorted, ended) {
			t.Errorf("by %s: listed %v, want each of %v once", sc.name, got, ended)
		}
		for i := 1; i < len(got); i++ {
			a, b := model[got[i-1]], model[got[i]]
			va, vb := a.sortValue(sc.sort), b.sortValue(sc.sort)
			if sc.desc && va < vb || !sc.desc && va > vb || va == vb && a.idx > b.idx {
				t.Errorf("by %s: task %d (%d) before task %d (%d)", sc.name, a.idx, va, b.idx, vb)
			}
		}
	}

	// A page continues strictly after the key it is given, ties by index.
	var tie int64 = -1
	for _, m := range model {
		if m.duration == 100 {
			tie = 100
		}
	}
	if tie < 0 {
		t.Fatal("no task ran 100ms; the test needs other data")
	}
	f := store.TaskFilter{JobID: job.ID, Sort: store.SortDuration, After: 0, AfterValue: 100, Limit: 1000}
	got, err := s.ListTasks(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	var want []int32
	for _, idx := range wantSorted(model, f) {
		if m := model[idx]; m.duration > 100 || m.duration == 100 && m.idx > 0 {
			want = append(want, idx)
		}
	}
	if !slices.Equal(indexesOf(got), want) {
		t.Errorf("after (100, 0) by duration: %v, want %v", indexesOf(got), want)
	}
	f.Desc = true
	got, err = s.ListTasks(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	want = nil
	for _, idx := range wantSorted(model, f) {
		if m := model[idx]; m.duration < 100 || m.duration == 100 && m.idx > 0 {
			want = append(want, idx)
		}
	}
	if !slices.Equal(indexesOf(got), want) {
		t.Errorf("after (100, 0) by duration descending: %v, want %v", indexesOf(got), want)
	}
}

func indexesOf(tasks []store.Task) []int32 {
	out := make([]int32, len(tasks))
	for i, task := range tasks {
		out[i] = task.Index
	}
	return out
}

func testTaskSortRefused(t *testing.T, s store.Store) {
	ctx := t.Context()
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(2))
	for _, sort := range []store.TaskSort{3, -1, 77} {
		_, err := s.ListTasks(ctx, store.TaskFilter{JobID: job.ID, After: -1, Sort: sort})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprint(int(sort))) {
			t.Errorf("ListTasks(sort %d) = %v, want an error naming it", sort, err)
		}
	}
	_, err := s.ListTasks(ctx, store.TaskFilter{JobID: "no-such-job", After: -1, Sort: store.SortDuration, Desc: true})
	checkNotFound(t, "ListTasks(unknown job, by duration)", err, "no-such-job")
	_, err = s.ListTasks(ctx, store.TaskFilter{JobID: "no-such-job", After: 3, AfterValue: 5, Sort: store.SortPeakRSS, ExitCode: int32p(1)})
	checkNotFound(t, "ListTasks(unknown job, by peak memory)", err, "no-such-job")
	// A known job with no ended task: no tasks, no error.
	got, err := s.ListTasks(ctx, store.TaskFilter{JobID: job.ID, After: -1, Sort: store.SortDuration})
	if err != nil || len(got) != 0 {
		t.Errorf("ListTasks(by duration, nothing ended) = %v, %v; want none", got, err)
	}
	// New tasks start with no run time.
	for _, task := range loadTasks(t, s, job.ID) {
		if task.DurationMS != -1 || task.PeakRSSBytes != 0 {
			t.Errorf("new task %d: duration %d, peak %d; want -1, 0", task.Index, task.DurationMS, task.PeakRSSBytes)
		}
	}
	if _, err := s.ListTasks(ctx, store.TaskFilter{JobID: job.ID, After: -1, Reason: "a\x00b"}); err == nil {
		t.Errorf("ListTasks(reason with a NUL) succeeded")
	}
	// A negative peak memory is refused.
	err = s.Apply(ctx, &store.Batch{Tasks: []store.TaskUpdate{{JobID: job.ID, Index: 0, State: store.TaskSucceeded,
		StartedAt: base, FinishedAt: base.Add(time.Second), PeakRSSBytes: -1}}})
	if !errors.Is(err, store.ErrRejected) {
		t.Errorf("Apply(negative peak memory) = %v, want an error wrapping store.ErrRejected", err)
	}
}

// testTaskSortAppended: tasks appended to a job start with no run time and
// sort once they end.
func testTaskSortAppended(t *testing.T, s store.Store) {
	ctx := t.Context()
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(2))
	more := newTasks(4)[2:]
	if err := s.AppendTasks(ctx, job.ID, more); err != nil {
		t.Fatal(err)
	}
	apply(t, s, &store.Batch{Tasks: []store.TaskUpdate{
		{JobID: job.ID, Index: 3, State: store.TaskSucceeded, StartedAt: base, FinishedAt: base.Add(3 * time.Millisecond), PeakRSSBytes: 30},
		{JobID: job.ID, Index: 0, State: store.TaskFailed, StartedAt: base, FinishedAt: base.Add(9 * time.Millisecond), PeakRSSBytes: 10},
		{JobID: job.ID, Index: 2, State: store.TaskRunning, StartedAt: base},
	}})
	got, err := s.ListTasks(ctx, store.TaskFilter{JobID: job.ID, After: -1, Sort: store.SortDuration})
	if err != nil || !slices.Equal(indexesOf(got), []int32{3, 0}) {
		t.Errorf("by duration: %v, %v; want [3 0]", indexesOf(got), err)
	}
	got, err = s.ListTasks(ctx, store.TaskFilter{JobID: job.ID, After: -1, Sort: store.SortPeakRSS, Desc: true})
	if err != nil || !slices.Equal(indexesOf(got), []int32{3, 0}) {
		t.Errorf("by peak memory descending: %v, %v; want [3 0]", indexesOf(got), err)
	}
	if len(got) == 2 && (got[0].DurationMS != 3 || got[0].PeakRSSBytes != 30 || got[1].DurationMS != 9 || got[1].PeakRSSBytes != 10) {
		t.Errorf("by peak memory: %+v", got)
	}
}

func testListJobsFilters(t *testing.T, s store.Store) {
	ctx := t.Context()
	type jobModel struct {
		id      string
		name    string
		labels  map[string]string
		created time.Time
	}
	names := []string{"resim-a", "resim-b", "resim/x", "train-1", "train-12", "Resim-c", "resim-[1]", "ré-sim", "resim-a"}
	labelSets := []map[string]string{
		{"team": "perception", "a.b": "1"},
		{"team": "perception", `q"k`: "x", "a.b": "2"},
		{"team": "planning", "a.b": "1", `q"k`: "x"},
		nil,
		{},
		{"team": "perception", "$.a": "'; DROP TABLE jobs; --"},
		{"a": "1", "a.b": "1"},
		{"team": "perception"},
		{"a.b": "1", `q"k`: "y"},
	}
	var jobs []jobModel
	for i, name := range names {
		created := base.Add(time.Duration(i) * time.Hour)
		job := newJob(newID(created, uint64(i)))
		job.Name, job.Labels, job.CreatedAt = name, labelSets[i], created
		if i == 4 {
			job.CreatedAt = time.Time{} // no creation time: never within bounds
		}
		create(t, s, job, nil)
		jobs = append(jobs, jobModel{job.ID, name, labelSets[i], job.CreatedAt})
	}
	want := func(f store.JobFilter) []string {
		var out []string
		for i := len(jobs) - 1; i >= 0; i-- { // newest first
			j := jobs[i]
			if f.NameGlob != "" {
				if ok, _ := path.Match(f.NameGlob, j.name); !ok {
					continue
				}
			}
			ok := true
			for k, v := range f.Labels {
				if got, has := j.labels[k]; !has || got != v {
					ok = false
				}
			}
			if !ok {
				continue
			}
			if !f.CreatedAfter.IsZero() && (j.created.IsZero() || j.created.Before(f.CreatedAfter)) {
				continue
			}
			if !f.CreatedBefore.IsZero() && (j.created.IsZero() || !j.created.Before(f.CreatedBefore)) {
				continue
			}
			if f.Before != "" && j.id >= f.Before {
				continue
			}
			if !strings.HasPrefix(j.id, f.IDPrefix) {
				continue
			}
			out = append(out, j.id)
		}
		if f.Limit > 0 && len(out) > f.Limit {
			out = out[:f.Limit]
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		f        store.JobFilter
		nonEmpty bool
	}{
		{"glob star", store.JobFilter{NameGlob: "resim-*"}, true},
		{"glob no slash", store.JobFilter{NameGlob: "resim*"}, true},
		{"glob slash", store.JobFilter{NameGlob: "resim/*"}, true},
		{"glob any", store.JobFilter{NameGlob: "train-?"}, true},
		{"glob class", store.JobFilter{NameGlob: "[Rr]esim-[a-b]"}, true},
		{"glob negated class", store.JobFilter{NameGlob: "[^r]*"}, true},
		{"glob escaped", store.JobFilter{NameGlob: `resim-\[1\]`}, true},
		{"glob unicode", store.JobFilter{NameGlob: "r?-sim"}, true},
		{"glob exact", store.JobFilter{NameGlob: "resim-a"}, true},
		{"glob none", store.JobFilter{NameGlob: "nothing*"}, false},
		{"label", store.JobFilter{Labels: map[string]string{"team": "perception"}}, true},
		{"label with a dot", store.JobFilter{Labels: map[string]string{"a.b": "1"}}, true},
		{"label with a quote", store.JobFilter{Labels: map[string]string{`q"k`: "x"}}, true},
		{"labels", store.JobFilter{Labels: map[string]string{"a.b": "1", `q"k`: "x"}}, true},
		{"label path-like key", store.JobFilter{Labels: map[string]string{"$.a": "'; DROP TABLE jobs; --"}}, true},
		{"label wrong value", store.JobFilter{Labels: map[string]string{"team": "nobody"}}, false},
		{"label missing", store.JobFilter{Labels: map[string]string{"zone": ""}}, false},
		{"label prefix of a dotted key", store.JobFilter{Labels: map[string]string{"a": "1"}}, true},
		{"created after", store.JobFilter{CreatedAfter: base.Add(3 * time.Hour)}, true},
		{"created before", store.JobFilter{CreatedBefore: base.Add(3 * time.Hour)}, true},
		{"created between", store.JobFilter{CreatedAfter: base.Add(2 * time.Hour), CreatedBefore: base.Add(6*time.Hour + 1)}, true},
		{"created empty", store.JobFilter{CreatedAfter: base.Add(2 * time.Hour), CreatedBefore: base.Add(2 * time.Hour)}, false},
		{"all", store.JobFilter{NameGlob: "resim*", Labels: map[string]string{"a.b": "1"}, CreatedAfter: base, CreatedBefore: base.Add(100 * time.Hour)}, true},
		{"ID prefix of one", store.JobFilter{IDPrefix: jobs[3].id}, true},
		{"ID prefix of one, shortened", store.JobFilter{IDPrefix: jobs[3].id[:len(jobs[3].id)-1]}, true},
		{"ID prefix of all", store.JobFilter{IDPrefix: jobs[0].id[:1]}, true},
		{"ID prefix of none", store.JobFilter{IDPrefix: "zzzz"}, false},
		{"all paged", store.JobFilter{NameGlob: "*", Labels: map[string]string{"team": "perception"}, CreatedAfter: base.Add(time.Hour), Before: jobs[7].id, Limit: 1}, true},
	} {
		w := want(tc.f)
		if tc.nonEmpty && len(w) == 0 {
			t.Fatalf("%s: the model selects no job; the test needs other data", tc.name)
		}
		got, err := s.ListJobs(ctx, tc.f)
		if err != nil {
			t.Errorf("%s: ListJobs(%+v): %v", tc.name, tc.f, err)
			continue
		}
		if !slices.Equal(jobIDs(got), w) {
			t.Errorf("%s: ListJobs(%+v) = %v, want %v", tc.name, tc.f, jobIDs(got), w)
		}
		for _, j := range got {
			if j.Groups != nil {
				t.Errorf("%s: ListJobs loads groups of job %s", tc.name, j.ID)
			}
		}
	}
	if _, err := s.ListJobs(ctx, store.JobFilter{IDPrefix: "ab%"}); !errors.Is(err, store.ErrRejected) {
		t.Errorf("ListJobs with ID prefix %q: %v, want a refusal", "ab%", err)
	}
	// Paging with filters: every match exactly once.
	f := store.JobFilter{NameGlob: "*", Labels: map[string]string{"a.b": "1"}, Limit: 1}
	var all []string
	for range 20 {
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
	f.Before, f.Limit = "", 0
	if w := want(f); !slices.Equal(all, w) {
		t.Errorf("paged by label: %v, want %v", all, w)
	}
	// The table is intact after the label that looks like SQL.
	if got, err := s.ListJobs(ctx, store.JobFilter{}); err != nil || len(got) != len(jobs) {
		t.Errorf("ListJobs after the filters: %d jobs, %v; want %d", len(got), err, len(jobs))
	}

	for _, bad := range []store.JobFilter{
		{NameGlob: "resim-["},
		{NameGlob: "a\x00*"},
		{Labels: map[string]string{"k\x00": "v"}},
		{Labels: map[string]string{"k": "\xff"}},
		{CreatedAfter: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if _, err := s.ListJobs(ctx, bad); err == nil {
			t.Errorf("ListJobs(%+v) succeeded", bad)
		}
	}
	if _, err := s.ListJobs(ctx, store.JobFilter{NameGlob: "resim-["}); err == nil || !strings.Contains(err.Error(), "resim-[") {
		t.Errorf("ListJobs(glob resim-[) = %v, want an error naming it", err)
	}
}

func testJobGroups(t *testing.T, s store.Store) {
	ctx := t.Context()
	groups := []store.TaskGroup{
		{Name: "split", First: 0, Count: 1},
		{Name: "sim \"quoted\" ✓", First: 1, Count: 3, Parents: []int32{0}},
		{Name: "", First: 4, Count: 0, Parents: []int32{}},
		{Name: "merge", First: 4, Count: 1, Parents: []int32{1, 0}},
	}
	job := newJob(newID(base, 1))
	job.Groups = groups
	create(t, s, job, newTasks(5))
	got, err := s.JobGroups(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Parents: an empty list reads back as none (omitempty).
	want := slices.Clone(groups)
	want[2].Parents = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("JobGroups = %#v, want %#v", got, want)
	}
	if j := getJob(t, s, job.ID); j.Groups != nil {
		t.Errorf("GetJob loads groups: %+v", j.Groups)
	}
	if jobs, err := s.ListActiveJobs(ctx); err != nil || len(jobs) != 1 || jobs[0].Groups != nil {
		t.Errorf("ListActiveJobs = %v, %v; want the job, without groups", jobs, err)
	}

	none := newJob(newID(base, 2))
	create(t, s, none, nil)
	if got, err := s.JobGroups(ctx, none.ID); err != nil || got != nil {
		t.Errorf("JobGroups(job without groups) = %#v, %v; want nil", got, err)
	}
	empty := newJob(newID(base, 3))
	empty.Groups = []store.TaskGroup{}
	create(t, s, empty, nil)
	if got, err := s.JobGroups(ctx, empty.ID); err != nil || got == nil || len(got) != 0 {
		t.Errorf("JobGroups(job with no groups) = %#v, %v; want an empty list", got, err)
	}

	_, err = s.JobGroups(ctx, "no-such-job")
	checkNotFound(t, "JobGroups(unknown job)", err, "no-such-job")

	bad := newJob(newID(base, 4))
	bad.Groups = []store.TaskGroup{{Name: "a\x00b", Count: 1}}
	if err := s.CreateJob(ctx, bad, newTasks(1)); !errors.Is(err, store.ErrRejected) {
		t.Errorf("CreateJob(group name with a NUL) = %v, want an error wrapping store.ErrRejected", err)
	}
	if _, err := s.GetJob(ctx, bad.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused job was stored: %v", err)
	}
}

func testTaskRangeStats(t *testing.T, s store.Store) {
	ctx := t.Context()
	job, model := sortJob(t, s, 60)
	other := newJob(newID(base, 9))
	create(t, s, other, newTasks(60)) // another job's tasks never count
	apply(t, s, &store.Batch{Tasks: []store.TaskUpdate{{JobID: other.ID, Index: 3, State: store.TaskSucceeded,
		StartedAt: base.Add(-time.Hour), FinishedAt: base.Add(time.Hour * 1000)}}})

	var ranges []store.IndexRange
	for _, r := range [][2]int32{{0, 10}, {10, 60}, {0, 60}, {5, 5}, {59, 60}, {50, 200}, {-5, 3}, {100, 200}, {20, 40}, {0, 1}} {
		ranges = append(ranges, store.IndexRange{First: r[0], End: r[1]})
	}
	got, err := s.TaskRangeStats(ctx, job.ID, ranges)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ranges) {
		t.Fatalf("TaskRangeStats: %d results for %d ranges", len(got), len(ranges))
	}
	states := map[store.TaskState]bool{}
	for i, r := range ranges {
		var want store.RangeStats
		for _, m := range model {
			if m.idx < r.First || m.idx >= r.End {
				continue
			}
			want.Counts.Add(m.state, 1)
			states[m.state] = true
			if !m.started.IsZero() && (want.StartedAt.IsZero() || m.started.Before(want.StartedAt)) {
				want.StartedAt = m.started
			}
			if !m.finished.IsZero() && (want.FinishedAt.IsZero() || m.finished.After(want.FinishedAt)) {
				want.FinishedAt = m.finished
			}
		}
		want.StartedAt, want.FinishedAt = norm(want.StartedAt), norm(want.FinishedAt)
		if !reflect.DeepEqual(got[i], want) {
			t.Errorf("range %d..%d: %+v, want %+v", r.First, r.End, got[i], want)
		}
	}
	if len(states) < 5 {
		t.Errorf("the job's tasks are in %d states; the test wants more", len(states))
	}
	if got[3] != (store.RangeStats{}) || got[7] != (store.RangeStats{}) {
		t.Errorf("empty ranges: %+v, %+v; want zero", got[3], got[7])
	}

	if got, err := s.TaskRangeStats(ctx, job.ID, nil); err != nil || len(got) != 0 {
		t.Errorf("TaskRangeStats(no ranges) = %v, %v", got, err)
	}
	_, err = s.TaskRangeStats(ctx, "no-such-job", ranges)
	checkNotFound(t, "TaskRangeStats(unknown job)", err, "no-such-job")
	_, err = s.TaskRangeStats(ctx, "no-such-job", nil)
	checkNotFound(t, "TaskRangeStats(unknown job, no ranges)", err, "no-such-job")

	many := make([]store.IndexRange, 10_001)
	if _, err := s.TaskRangeStats(ctx, job.ID, many); err == nil || !strings.Contains(err.Error(), "10001") {
		t.Errorf("TaskRangeStats(10001 ranges) = %v, want an error naming the count", err)
	}
	if _, err := s.TaskRangeStats(ctx, job.ID, []store.IndexRange{{First: 0, End: 1}, {First: 5, End: 2}}); err == nil {
		t.Errorf("TaskRangeStats(range 5..2) succeeded")
	}
	// The most ranges one call may ask for, one task each.
	many = many[:10_000]
	for i := range many {
		many[i] = store.IndexRange{First: int32(i % 60), End: int32(i%60 + 1)}
	}
	got, err = s.TaskRangeStats(ctx, job.ID, many)
	if err != nil || len(got) != len(many) {
		t.Fatalf("TaskRangeStats(10000 ranges) = %d results, %v", len(got), err)
	}
	for i, rs := range got {
		m := model[i%60]
		if rs.Counts.Get(m.state) != 1 || !rs.StartedAt.Equal(norm(m.started)) || !rs.FinishedAt.Equal(norm(m.finished)) {
			t.Errorf("range of task %d: %+v, want one %s task started %v finished %v", m.idx, rs, m.state, m.started, m.finished)
			break
		}
	}
}

// SchemaV13Rows fill a database with the schema of migrations 1 to 13
// (before tasks' run times) with a job whose tasks ended in several ways,
// in SQL both drivers accept. A driver's upgrade test runs them on such a
// database, opens a store on it (which migrates it) and calls
// CheckSchemaV13Rows.
var SchemaV13Rows = []string{
	`INSERT INTO jobs (id, name, namespace, labels, env, tiers, max_workers, state, task_count,
	count_succeeded, count_failed, count_upstream_failed, count_running, created_at, started_at, worker_seconds, cost_usd)
VALUES ('v13-job', 'old', 'perception', '{}', 'null', '[]', 2, 'running', 5, 2, 1, 1, 1, 1000, 2000, 0, 0)`,
	`INSERT INTO tasks (job_id, idx, key, argv, env, cwd, after_deps, tier, retries, timeout_ms, state, attempts, started_at, finished_at)
VALUES ('v13-job', 0, 'a', '[]', '{}', '/', '[]', 0, 1, 0, 'succeeded', 2, 1000000000, 3500000000),
	('v13-job', 1, 'b', '[]', '{}', '/', '[]', 0, 0, 0, 'failed', 1, 5000000000, 4000000000),
	('v13-job', 2, 'c', '[]', '{}', '/', '[]', 0, 0, 0, 'upstream_failed', 0, NULL, 7000),
	('v13-job', 3, 'd', '[]', '{}', '/', '[]', 0, 0, 0, 'running', 1, 1000, NULL),
	('v13-job', 4, 'e', '[]', '{}', '/', '[]', 0, 0, 0, 'succeeded', 1, 1000, 1000999999)`,
	`INSERT INTO attempts (job_id, task_idx, number, tier, worker_id, state, exit_code, signal, reason, message, started_at, finished_at, peak_rss_bytes)
VALUES ('v13-job', 0, 1, 0, 'w', 'failed', 1, 0, 'exit', '', 1000, 2000, 111),
	('v13-job', 0, 2, 0, 'w', 'succeeded', 0, 0, 'exit', '', 1000000000, 3500000000, 222),
	('v13-job', 1, 1, 0, 'w', 'failed', 1, 0, 'exit', '', 5000000000, 4000000000, 333),
	('v13-job', 3, 1, 0, 'w', 'running', 0, 0, '', '', 1000, NULL, 444)`,
}

// CheckSchemaV13Rows checks what a migrated store reads of SchemaV13Rows:
// tasks that ended having run get their run time from their times and
// their peak memory from their last attempt; the others none; the job no
// groups.
func CheckSchemaV13Rows(t *testing.T, s store.Store) {
	t.Helper()
	type end struct{ duration, peak int64 }
	want := []end{{2500, 222}, {0, 333}, {-1, 0}, {-1, 0}, {1000, 0}}
	tasks := loadTasks(t, s, "v13-job")
	if len(tasks) != len(want) {
		t.Fatalf("LoadTasks(v13-job): %d tasks, want %d", len(tasks), len(want))
	}
	for i, task := range tasks {
		if got := (end{task.DurationMS, task.PeakRSSBytes}); got != want[i] {
			t.Errorf("migrated task %d: duration %d, peak %d; want %d, %d", i, got.duration, got.peak, want[i].duration, want[i].peak)
		}
	}
	got, err := s.ListTasks(t.Context(), store.TaskFilter{JobID: "v13-job", After: -1, Sort: store.SortDuration, Desc: true})
	if err != nil || !slices.Equal(indexesOf(got), []int32{0, 4, 1}) {
		t.Errorf("migrated tasks by duration descending: %v, %v; want [0 4 1]", indexesOf(got), err)
	}
	if gs, err := s.JobGroups(t.Context(), "v13-job"); err != nil || gs != nil {
		t.Errorf("JobGroups(migrated job) = %v, %v; want nil", gs, err)
	}
}
