package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/sqlite"
)

// BenchmarkWebUI measures the web UI at the scale the issue names, in
// headless Chromium against a real `haul up` (SQLite):
//
//   - a job of 1,000,000 tasks, written into the store the server then
//     opens (running a million real processes would take this machine half
//     an hour and measure the workers, not the UI): the job page until its
//     counts show and until its graph is drawn; the task table sorted by
//     duration until its first page shows, and the next page after a
//     scroll; the API's sorted page alone;
//   - a real task that printed 100 MB: its task page until the first log
//     line shows;
//   - the tab's JS heap after scrolling 100 pages of the million-task
//     table and after following the 100 MB log for 20 s;
//   - the server's CPU over 15 s while a real job runs: with no page open,
//     with 100 WatchJob streams (what 100 open job pages hold), and with 100
//     clients polling GetJob and GetJobGraph every second for contrast.
//
// Run: go test -run XXX -bench WebUI -benchtime 1x -timeout 30m ./internal/e2e
// docs/benchmarks.md records the figures.
func BenchmarkWebUI(b *testing.B) {
	data := b.TempDir()
	addr := freePort(b)
	s := startUp(b, addr, data, "")
	s.stop()
	million := writeMillionJob(b, filepath.Join(data, "haul.db"))
	s = startUp(b, addr, data, "")
	c := s.client()

	logJob := submitSpec(b, s, `name: big-log
tasks:
  - key: big
    command: [sh, -c, "yes 'a line of a very long log, as a simulation prints it every step' | head -c 100000000"]
`)
	waitJob(b, c, logJob, 5*time.Minute, func(j *apiv1.Job) bool { return j.State == "succeeded" })

	br := newBrowser(b, s.url())
	br.loginToken(s.token)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	until := func(what, js string) time.Duration {
		start := time.Now()
		br.waitFor(what, js, 60*time.Second)
		return time.Since(start)
	}
	var counts, graph, tasksFirst, tasksNext, logFirst []float64
	for b.Loop() {
		br.open("/ui/config") // off the app, so each open starts it afresh
		start := time.Now()
		br.open("/jobs/" + million)
		br.waitFor("counts", `(document.querySelector('`+sel("count-succeeded")+`') || {}).textContent`, 60*time.Second)
		counts = append(counts, ms(time.Since(start)))
		br.waitFor("graph", `document.querySelector('`+sel("job-graph")+`[data-loaded="true"]')`, 60*time.Second)
		graph = append(graph, ms(time.Since(start)))

		br.open("/ui/config")
		start = time.Now()
		br.open("/jobs/" + million + "/tasks?sort=duration&desc=1")
		br.waitFor("first page", `document.querySelector('`+sel("tasks-table")+`[data-loaded="true"]')`, 60*time.Second)
		tasksFirst = append(tasksFirst, ms(time.Since(start)))
		rows := eval[string](br, `[...document.querySelectorAll('`+sel("task-row")+`')].map(r => r.dataset.key).join(",")`)
		br.eval0(scrollTasks)
		tasksNext = append(tasksNext, ms(until("the next page", `[...document.querySelectorAll('`+sel("task-row")+`')].map(r => r.dataset.key).join(",") !== `+strconv.Quote(rows))))

		br.open("/ui/config")
		start = time.Now()
		br.open("/jobs/" + logJob + "/tasks/big")
		br.waitFor("the first log line", `document.querySelector('`+sel("log-view")+` .log-line')`, 60*time.Second)
		logFirst = append(logFirst, ms(time.Since(start)))
	}
	b.StopTimer()
	b.ReportMetric(median(counts), "ms-job-counts")
	b.ReportMetric(median(graph), "ms-job-graph")
	b.ReportMetric(median(tasksFirst), "ms-tasks-first-page")
	b.ReportMetric(median(tasksNext), "ms-tasks-next-page")
	b.ReportMetric(median(logFirst), "ms-log-first-line")

	// The API alone: a page of 200 tasks sorted by duration, deep in the
	// job (the keyset of the 50th page).
	var api []float64
	req := &apiv1.ListTasksRequest{JobId: million, PageSize: 200, Sort: apiv1.TaskSort_TASK_SORT_DURATION, Descending: true}
	for i := 0; i < 50; i++ {
		start := time.Now()
		resp, err := c.ListTasks(context.Background(), connect.NewRequest(req))
		if err != nil {
			b.Fatal(err)
		}
		api = append(api, ms(time.Since(start)))
		req.PageToken = resp.Msg.NextPageToken
	}
	b.ReportMetric(median(api), "ms-api-tasks-page")

	// The tab's heap: after scrolling 100 pages down the million-task
	// table, and while following the 100 MB log.
	heap := func() float64 {
		br.eval0(`window.gc && window.gc()`)
		return float64(eval[float64](br, `performance.memory.usedJSHeapSize`)) / (1 << 20)
	}
	br.open("/jobs/" + million + "/tasks?sort=duration&desc=1")
	br.waitFor("first page", `document.querySelector('`+sel("tasks-table")+`[data-loaded="true"]')`, 60*time.Second)
	b.ReportMetric(heap(), "MiB-heap-tasks-start")
	for i := 0; i < 100; i++ {
		listed := eval[int](br, tasksListed)
		// Scroll to the end until the next page arrived (scrolling again
		// while it loads).
		br.waitFor("the next page", `(`+scrollTasks+`, `+tasksListed+` > `+strconv.Itoa(listed)+`)`, 60*time.Second)
	}
	b.ReportMetric(float64(eval[int](br, tasksListed)), "rows-scrolled")
	b.ReportMetric(heap(), "MiB-heap-tasks-100-pages")
	br.open("/jobs/" + logJob + "/tasks/big")
	br.waitFor("the first log line", `document.querySelector('`+sel("log-view")+` .log-line')`, 60*time.Second)
	time.Sleep(20 * time.Second)
	b.ReportMetric(heap(), "MiB-heap-log-100MB")

	// Server load while a real job runs.
	steady := submitSpec(b, s, `name: steady
tasks:
  - key: "t-{i}"
    foreach: {range: [0, 4000]}
    command: [sleep, "0.5"]
`)
	waitJob(b, c, steady, time.Minute, func(j *apiv1.Job) bool { return j.Counts.GetSucceeded() > 0 })
	cpu := func(what string, load func(ctx context.Context)) {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		if load != nil {
			for i := 0; i < 100; i++ {
				wg.Add(1)
				go func() { defer wg.Done(); load(ctx) }()
			}
		}
		time.Sleep(2 * time.Second) // the streams open
		before := procCPU(b, s.cmd.Process.Pid)
		time.Sleep(15 * time.Second)
		used := procCPU(b, s.cmd.Process.Pid) - before
		cancel()
		wg.Wait()
		b.ReportMetric(used.Seconds()/15*100, "%cpu-"+what)
	}
	cpu("idle-pages", nil)
	cpu("100-watch-streams", func(ctx context.Context) {
		st, err := c.WatchJob(ctx, connect.NewRequest(&apiv1.WatchJobRequest{JobId: steady, Groups: true}))
		if err != nil {
			return
		}
		for st.Receive() {
		}
	})
	cpu("100-pollers", func(ctx context.Context) {
		for ctx.Err() == nil {
			c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: steady}))
			c.GetJobGraph(ctx, connect.NewRequest(&apiv1.GetJobGraphRequest{JobId: steady}))
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	})
	c.CancelJob(context.Background(), connect.NewRequest(&apiv1.CancelJobRequest{JobId: steady}))
}

// scrollTasks scrolls the task table's scrolling container to its end.
const scrollTasks = `(() => {
  let el = document.querySelector('[data-testid="tasks-table"]');
  while (el && el.scrollHeight <= el.clientHeight) el = el.parentElement;
  (el || document.scrollingElement).scrollTop = (el || document.scrollingElement).scrollHeight;
})()`

// tasksListed is how many rows the task table has listed so far (its
// footer: "N tasks listed").
const tasksListed = `(() => {
  const m = document.body.innerText.match(/([\d,]+) tasks listed/);
  return m ? parseInt(m[1].replace(/,/g, ""), 10) : 0;
})()`

// eval0 evaluates JavaScript for its effect.
func (b *browser) eval0(js string) {
	b.t.Helper()
	eval[any](b, js)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// procCPU is a process's user and system CPU time so far.
func procCPU(t testing.TB, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command's closing parenthesis; utime and stime are
	// the 14th and 15th of the line, in clock ticks (100 a second).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

// submitSpec submits a spec as the server's admin.
func submitSpec(t testing.TB, s *upServer, spec string) string {
	t.Helper()
	r := haul(t, []string{"HAUL_SERVER=" + s.url()}, "job", "submit", writeSpec(t, spec))
	if r.code != 0 {
		t.Fatalf("submit: %d %s", r.code, r.stderr)
	}
	return strings.TrimSpace(r.stdout)
}

// writeMillionJob stores an ended job of 1,000,000 tasks as the runner
// would have left it: prep, then sim-0 .. sim-999997 (one in a thousand
// failed, durations and peak memory spread), then merge, upstream_failed.
func writeMillionJob(t testing.TB, db string) string {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const n = 1_000_000
	start := time.Now().Add(-2 * time.Hour)
	job := &store.Job{
		ID: store.NewJobID(start, rand.Reader), Name: "million", Namespace: "default", Labels: map[string]string{"size": "1M"},
		State: store.JobPending, TaskCount: n, Counts: store.TaskCounts{Blocked: n}, CreatedAt: start,
		Tiers:       []store.Tier{{Name: "default", CPU: 1, MemoryBytes: 1 << 30}},
		Spec:        []byte("name: million\ntasks:\n  - {key: prep, command: [\"true\"]}\n  - {key: \"sim-{i}\", foreach: {range: [0, 999998]}, command: [\"true\"], after: [prep]}\n  - {key: merge, command: [\"true\"], after: [\"sim-*\"]}\n"),
		SubmittedBy: "bench",
		Groups: []store.TaskGroup{{Name: "prep", First: 0, Count: 1}, {Name: "sim-{i}", First: 1, Count: n - 2, Parents: []int32{0}},
			{Name: "merge", First: n - 1, Count: 1, Parents: []int32{1}}},
	}
	tasks := make([]store.Task, n)
	for i := range tasks {
		key := "sim-" + strconv.Itoa(i-1)
		switch i {
		case 0:
			key = "prep"
		case n - 1:
			key = "merge"
		}
		tasks[i] = store.Task{JobID: job.ID, Index: int32(i), Key: key, Argv: []string{"true"}, State: store.TaskBlocked}
	}
	if err := st.CreateJob(ctx, job, tasks); err != nil {
		t.Fatal(err)
	}
	tasks = nil
	var counts store.TaskCounts
	for lo := 0; lo < n; lo += 50_000 {
		var batch store.Batch
		for i := lo; i < min(lo+50_000, n); i++ {
			u := store.TaskUpdate{JobID: job.ID, Index: int32(i), State: store.TaskSucceeded, Attempts: 1,
				StartedAt:    start.Add(time.Duration(i) * 7 * time.Millisecond),
				PeakRSSBytes: int64(20<<20 + (i*7919)%(400<<20))}
			u.FinishedAt = u.StartedAt.Add(time.Duration(100+(i*104729)%60000) * time.Millisecond)
			switch {
			case i == n-1:
				u = store.TaskUpdate{JobID: job.ID, Index: int32(i), State: store.TaskUpstreamFailed, FinishedAt: u.FinishedAt}
			case i%1000 == 7:
				u.State, u.ExitCode, u.Reason = store.TaskFailed, 3, "exit"
			}
			counts.Add(u.State, 1)
			batch.Tasks = append(batch.Tasks, u)
		}
		if err := st.Apply(ctx, &batch); err != nil {
			t.Fatal(err)
		}
	}
	end := start.Add(n * 7 * time.Millisecond).Add(time.Minute)
	if err := st.Apply(ctx, &store.Batch{Jobs: []store.JobUpdate{{ID: job.ID, State: store.JobFailed, Counts: counts, StartedAt: start, FinishedAt: end}}}); err != nil {
		t.Fatal(err)
	}
	return job.ID
}
