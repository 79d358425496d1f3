package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = Main(args, strings.NewReader(""), &o, &e)
	return code, o.String(), e.String()
}

// TestExitCodes: every usage error, at every level, exits 2 with a message
// that says what was wrong; asking for help exits 0.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		want string // in stderr
	}{
		{[]string{"job", "retryx"}, 2, `unknown command "retryx" for "haul job"`},
		{[]string{"task", "lst"}, 2, `unknown command "lst" for "haul task"; did you mean list?`},
		{[]string{"task", "lst", "J"}, 2, `unknown command "lst" for "haul task"`},
		{[]string{"worker", "lst"}, 2, `did you mean list?`},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate" for "haul"`},
		{[]string{"job"}, 2, "haul job needs a command"},
		{[]string{"task"}, 2, "haul task needs a command"},
		{[]string{"job", "list", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"job", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"job", "list", "--limit", "many"}, 2, "invalid argument"},
		{[]string{"job", "list", "--since", "yesterday-ish"}, 2, "--since"},
		{[]string{"job", "list", "-l", "a!=b"}, 2, "label selector"},
		{[]string{"job", "list", "--user", "x", "--mine"}, 2, "mine"},
		{[]string{"worker", "list", "--state", "sleeping"}, 2, "--state"},
		{[]string{"job", "list", "--state", "done"}, 2, `--state "done"`},
		{[]string{"-o", "xml", "job", "list"}, 2, "--output"},
	} {
		code, _, stderr := run(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("haul %s: exit %d, stderr %q; want exit %d mentioning %q", strings.Join(tc.args, " "), code, stderr, tc.code, tc.want)
		}
	}
	// A group alone prints its help (on stdout) as well.
	if code, stdout, _ := run(t, "job"); code != 2 || !strings.Contains(stdout, "Available Commands") {
		t.Errorf("haul job: exit %d, stdout %q; want its help and exit 2", code, stdout)
	}
	for _, args := range [][]string{{"--help"}, {"job", "--help"}, {"task", "list", "--help"}, {"worker", "--help"}} {
		if code, stdout, _ := run(t, args...); code != 0 || !strings.Contains(stdout, "Usage:") {
			t.Errorf("haul %s: exit %d; want the help and exit 0", strings.Join(args, " "), code)
		}
	}
}

// TestOutputJSON: numbers are numbers (64-bit ones too), nothing is HTML
// escaped, and -o yaml is the same document.
func TestOutputJSON(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	j := &apiv1.Job{Id: "J", Name: "a<b>&c", TaskCount: 3, Counts: &apiv1.TaskCounts{Succeeded: 2, Failed: 1},
		Labels: map[string]string{"k": "v"}, CreatedAt: timestamppb.New(created), EstimatedCostUsd: 0.5,
		Usage: &apiv1.Usage{PeakRssBytes: 1 << 40}}
	task := &apiv1.Task{Key: "t", Command: []string{"sh", "-c", "echo hi >&2"}, DurationMs: 1234}
	for _, tc := range []struct {
		v    any
		want map[string]any // top-level fields and their values
	}{
		{j, map[string]any{"task_count": 3.0, "name": "a<b>&c", "created_at": "2026-12-01T09:00:00Z", "estimated_cost_usd": 0.5}},
		{task, map[string]any{"duration_ms": 1234.0, "attempts": 0.0}},
		{map[string]any{"id": "J", "task_count": int64(7), "cmd": ">&2"}, map[string]any{"task_count": 7.0, "cmd": ">&2"}},
	} {
		var out bytes.Buffer
		a := &app{stdout: &out}
		if err := a.printJSON(tc.v); err != nil {
			t.Fatal(err)
		}
		if s := out.String(); strings.Contains(s, `\u003c`) || strings.Contains(s, `\u003e`) || strings.Contains(s, `\u0026`) {
			t.Errorf("HTML-escaped output: %s", s)
		}
		var got map[string]any
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatalf("%s: %v", out.String(), err)
		}
		for k, want := range tc.want {
			if got[k] != want {
				t.Errorf("%s = %#v (%T), want %#v in %s", k, got[k], got[k], want, out.String())
			}
		}
		// The same document in YAML.
		out.Reset()
		a.yaml = true
		if err := a.printJSON(tc.v); err != nil {
			t.Fatal(err)
		}
		var y map[string]any
		if err := yaml.Unmarshal(out.Bytes(), &y); err != nil {
			t.Fatalf("yaml %s: %v", out.String(), err)
		}
		for k, want := range tc.want {
			gotV := y[k]
			if n, ok := gotV.(int); ok {
				gotV = float64(n)
			}
			if gotV != want {
				t.Errorf("yaml %s = %#v (%T), want %#v in %s", k, y[k], y[k], want, out.String())
			}
		}
	}
	// Nested 64-bit integers: counts and usage.
	var out bytes.Buffer
	if err := (&app{stdout: &out}).printJSON(j); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"succeeded": 2`) || !strings.Contains(out.String(), `"peak_rss_bytes": 1099511627776`) {
		t.Errorf("nested int64 fields not numbers: %s", out.String())
	}
	// A list of messages.
	out.Reset()
	if err := (&app{stdout: &out}).printJSON(protoList([]*apiv1.Job{j, j})); err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	if err := json.Unmarshal(out.Bytes(), &list); err != nil || len(list) != 2 || list[1]["task_count"] != 3.0 {
		t.Fatalf("list: %v, %v", list, err)
	}
}

func TestOutputReasons(t *testing.T) {
	t.Parallel()
	// A timed-out task reads the same in task list (from the task's exit
	// status) as in task get (from the attempt's signal).
	if got := reasonText("timeout", taskSignal("timeout", 143)); got != "timeout (SIGTERM)" {
		t.Errorf("task list reason %q", got)
	}
	if got := reasonText("timeout", "SIGTERM"); got != "timeout (SIGTERM)" {
		t.Errorf("task get reason %q", got)
	}
	if exitText(143, taskSignal("timeout", 143)) != "" || exitText(143, taskSignal("exit", 143)) != "143" {
		t.Errorf("exit column: a signal shows no code; an exit of 143 shows 143")
	}
	if got := reasonText("oom", "SIGKILL"); got != "oom (SIGKILL)" {
		t.Errorf("oom reason %q", got)
	}
	if got := reasonText("exit", ""); got != "exit" {
		t.Errorf("exit reason %q", got)
	}
	if got := costText(0); got != "no price configured" {
		t.Errorf("no price: %q", got)
	}
	if got := costText(0.25); got != "$0.2500" {
		t.Errorf("cost: %q", got)
	}
	// The progress line of a finished job shows its run time, not the
	// watch's.
	start := time.Now().Add(-time.Hour)
	j := &apiv1.Job{StartedAt: timestamppb.New(start), FinishedAt: timestamppb.New(start.Add(3200 * time.Millisecond))}
	if got := jobElapsed(j, time.Now()); got != 3200*time.Millisecond {
		t.Errorf("elapsed of a finished job: %s, want 3.2s", got)
	}
	if !strings.HasSuffix(progressLine(j, jobElapsed(j, time.Now()), false), "· 3.2s") {
		t.Errorf("progress line: %q", progressLine(j, jobElapsed(j, time.Now()), false))
	}
}

func TestParseWhenAndSelector(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"24h":                  now.Add(-24 * time.Hour),
		"90m":                  now.Add(-90 * time.Minute),
		"7d":                   now.Add(-7 * 24 * time.Hour),
		"2026-12-01T09:00:00Z": time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC),
		"2026-12-01":           time.Date(2026, 12, 1, 0, 0, 0, 0, time.Local),
	} {
		got, err := parseWhen(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-5h", "2026-13-01"} {
		if _, err := parseWhen(bad, now); err == nil {
			t.Errorf("parseWhen(%q): no error", bad)
		}
	}
	got, err := parseSelector("run=nightly, team=ml")
	if err != nil || len(got) != 2 || got["run"] != "nightly" || got["team"] != "ml" {
		t.Errorf("selector: %v, %v", got, err)
	}
	for _, bad := range []string{"run", "=x", "a!=b", "a==b", "a=1,a=2"} {
		if _, err := parseSelector(bad); err == nil {
			t.Errorf("parseSelector(%q): no error", bad)
		}
	}
}

// fakeJobs answers ListJobs and ListTasks from fixed jobs, recording the
// requests.
type fakeJobs struct {
	apiv1connect.UnimplementedJobServiceHandler
	jobs  []*apiv1.Job // newest first
	mine  string       // the caller's subject
	tasks []*apiv1.Task
	gets  chan string
}

func (f *fakeJobs) ListJobs(_ context.Context, req *connect.Request[apiv1.ListJobsRequest]) (*connect.Response[apiv1.ListJobsResponse], error) {
	m := req.Msg
	resp := &apiv1.ListJobsResponse{}
	for _, j := range f.jobs {
		if !strings.HasPrefix(j.Id, m.IdPrefix) || m.Mine && j.SubmittedBy != f.mine {
			continue
		}
		if m.PageSize > 0 && len(resp.Jobs) == int(m.PageSize) {
			resp.NextPageToken = resp.Jobs[len(resp.Jobs)-1].Id
			break
		}
		resp.Jobs = append(resp.Jobs, j)
	}
	return connect.NewResponse(resp), nil
}

func (f *fakeJobs) GetJob(_ context.Context, req *connect.Request[apiv1.GetJobRequest]) (*connect.Response[apiv1.GetJobResponse], error) {
	f.gets <- req.Msg.JobId
	for _, j := range f.jobs {
		if j.Id == req.Msg.JobId {
			return connect.NewResponse(&apiv1.GetJobResponse{Job: j}), nil
		}
	}
	return nil, connect.NewError(connect.CodeNotFound, nil)
}

func (f *fakeJobs) ListTasks(_ context.Context, req *connect.Request[apiv1.ListTasksRequest]) (*connect.Response[apiv1.ListTasksResponse], error) {
	resp := &apiv1.ListTasksResponse{}
	if req.Msg.JobId != f.jobs[0].Id {
		return nil, connect.NewError(connect.CodeNotFound, nil)
	}
	prefix := strings.TrimSuffix(req.Msg.KeyGlob, "*")
	for _, t := range f.tasks {
		if strings.HasPrefix(t.Key, prefix) {
			resp.Tasks = append(resp.Tasks, t)
		}
	}
	return connect.NewResponse(resp), nil
}

func startFake(t *testing.T) (*fakeJobs, string) {
	f := &fakeJobs{mine: "me", gets: make(chan string, 10), jobs: []*apiv1.Job{
		{Id: "1m8xaaaa00001", Name: "newest", State: "running", SubmittedBy: "someone"},
		{Id: "1m8xaaaa00002", Name: "mine", State: "succeeded", SubmittedBy: "me"},
		{Id: "1m8xbbbb00003", Name: "old", State: "failed", SubmittedBy: "me"},
	}, tasks: []*apiv1.Task{{Key: "sim-1", State: "succeeded"}, {Key: "sim-2", State: "failed"}, {Key: "merge", State: "blocked"}}}
	mux := http.NewServeMux()
	mux.Handle(apiv1connect.NewJobServiceHandler(f))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

// TestCLIFindJobRefs: a unique prefix and @last resolve; none and an
// ambiguous prefix say so.
func TestCLIFindJobRefs(t *testing.T) {
	t.Parallel()
	f, url := startFake(t)
	for ref, want := range map[string]string{
		"1m8xb":         "1m8xbbbb00003",
		"1M8XB":         "1m8xbbbb00003",
		"@last":         "1m8xaaaa00002",
		"1m8xaaaa00001": "1m8xaaaa00001",
	} {
		code, _, stderr := run(t, "job", "get", ref, "--server", url)
		if code != 0 {
			t.Errorf("job get %s: exit %d: %s", ref, code, stderr)
			continue
		}
		if got := <-f.gets; got != want {
			t.Errorf("job get %s asked for %s, want %s", ref, got, want)
		}
	}
	for ref, want := range map[string]string{
		"1m8xa": `job prefix "1m8xa" is ambiguous: 1m8xaaaa00001, 1m8xaaaa00002`,
		"1m8xz": `no job starts with "1m8xz"`,
	} {
		code, _, stderr := run(t, "job", "get", ref, "--server", url)
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("job get %s: exit %d, stderr %q; want 1 and %q", ref, code, stderr, want)
		}
	}
	// Task commands take references too.
	if code, stdout, stderr := run(t, "task", "list", "1m8xaaaa0000", "--server", url); code != 1 || !strings.Contains(stderr, "ambiguous") {
		t.Errorf("task list with an ambiguous prefix: exit %d %s %s", code, stdout, stderr)
	}
	if code, stdout, stderr := run(t, "task", "list", "1m8xaaaa00001", "--server", url); code != 0 || !strings.Contains(stdout, "sim-2") {
		t.Errorf("task list: exit %d %s %s", code, stdout, stderr)
	}
}

// TestCLIFindComplete: completion lists the caller's jobs and a job's
// task keys, and nothing (silently) when no server answers.
func TestCLIFindComplete(t *testing.T) {
	t.Parallel()
	_, url := startFake(t)
	lines := func(args ...string) ([]string, int, string) {
		code, stdout, stderr := run(t, append([]string{"__complete", "--server", url}, args...)...)
		var out []string
		for l := range strings.SplitSeq(strings.TrimSpace(stdout), "\n") {
			if l != "" && !strings.HasPrefix(l, ":") {
				out = append(out, strings.SplitN(l, "\t", 2)[0])
			}
		}
		return out, code, stderr
	}
	if got, code, stderr := lines("job", "get", ""); code != 0 || !slices.Equal(got, []string{"1m8xaaaa00002", "1m8xbbbb00003"}) {
		t.Errorf("complete job get: %v exit %d %s; want the caller's jobs", got, code, stderr)
	}
	if got, _, _ := lines("task", "get", "1m8xaaaa00001", "sim"); !slices.Equal(got, []string{"sim-1", "sim-2"}) {
		t.Errorf("complete task get J sim: %v", got)
	}
	if got, _, _ := lines("task", "logs", "1m8xaaaa00001", ""); len(got) != 3 {
		t.Errorf("complete task logs J '': %v", got)
	}
	code, stdout, stderr := run(t, "__complete", "--server", "http://127.0.0.1:1", "job", "get", "")
	if code != 0 || strings.TrimSpace(stdout) != ":4" || strings.Contains(stderr, "haul:") {
		t.Errorf("complete with no server: exit %d, stdout %q, stderr %q; want no completions, silently", code, stdout, stderr)
	}
}

// A task state the server does not know is refused before any call, as a
// usage error naming the states there are.
func TestTaskListBadState(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	args := []string{"task", "list", "J", "--state", "failed,bogus", "--server", "http://127.0.0.1:1"}
	if code := Main(args, strings.NewReader(""), &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), `--state "bogus"`) || !strings.Contains(stderr.String(), "upstream_failed") {
		t.Errorf("haul %s: exit %d, stderr %q; want exit 2 naming the state and the known ones", strings.Join(args, " "), code, stderr.String())
	}
}
