package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

// TestExitCodesCLI: usage errors exit 2 at every level, against a real
// server as without one.
func TestExitCodesCLI(t *testing.T) {
	t.Parallel()
	s := startUp(t, freePort(t), t.TempDir(), "")
	env := []string{"HAUL_SERVER=" + s.url()}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"job", "retryx"}, `unknown command "retryx" for "haul job"`},
		{[]string{"task", "lst"}, `unknown command "lst" for "haul task"; did you mean list?`},
		{[]string{"job", "list", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"worker", "get"}, "accepts 1 arg"},
		{[]string{"job"}, "haul job needs a command"},
		{[]string{"job", "list", "-o", "xml"}, "--output"},
	} {
		r := haul(t, env, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("haul %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}
}

const (
	findSpecNightly = `name: nightly-resim
labels: {run: nightly, team: ml}
tasks:
  - key: prep
    command: [sh, -c, 'echo prepared >&2']
  - key: "sim-{i}"
    foreach: {range: [0, 3]}
    command: [sh, -c, 'echo "scene $0" && sleep 0.3', "{i}"]
    after: [prep]
`
	findSpecAdhoc = `name: adhoc-check
labels: {run: adhoc}
tasks:
  - key: only
    command: [sh, -c, 'echo hi']
`
	findSpecTimeout = `name: slow-one
tasks:
  - key: slow
    command: [sleep, "30"]
    timeout: 1s
`
)

// TestCLIFind: finding jobs (filters, labels, prefixes, @last,
// completion), output types and workers, through the CLI against a real
// haul up.
func TestCLIFind(t *testing.T) {
	t.Parallel()
	s := startUp(t, freePort(t), t.TempDir(), "")
	admin := []string{"HAUL_SERVER=" + s.url()}
	c := s.client()

	// Alice, a member of the default team, submits one job; the admin the
	// others.
	r := haul(t, admin, "token", "create", "--subject", "alice@example.com", "--team", "default=member")
	if r.code != 0 {
		t.Fatalf("token create: %d %s", r.code, r.stderr)
	}
	alice := []string{"HAUL_SERVER=" + s.url(), "HAUL_API_TOKEN=" + strings.TrimSpace(r.stdout)}

	before := time.Now()
	r = haul(t, admin, "job", "submit", writeSpec(t, findSpecNightly), "-o", "json")
	if r.code != 0 {
		t.Fatalf("submit: %d %s", r.code, r.stderr)
	}
	var sub map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &sub); err != nil {
		t.Fatalf("submit -o json: %v: %s", err, r.stdout)
	}
	if _, ok := sub["task_count"].(float64); !ok {
		t.Errorf("submit -o json: task_count %#v is not a number: %s", sub["task_count"], r.stdout)
	}
	nightly := sub["id"].(string)
	r = haul(t, alice, "job", "submit", writeSpec(t, findSpecAdhoc))
	if r.code != 0 {
		t.Fatalf("submit as alice: %d %s", r.code, r.stderr)
	}
	adhoc := strings.TrimSpace(r.stdout)
	r = haul(t, admin, "job", "submit", writeSpec(t, findSpecTimeout))
	if r.code != 0 {
		t.Fatalf("submit: %d %s", r.code, r.stderr)
	}
	slow := strings.TrimSpace(r.stdout)
	for _, id := range []string{nightly, adhoc, slow} {
		waitJob(t, c, id, time.Minute, func(j *apiv1.Job) bool { return j.FinishedAt != nil })
	}

	t.Run("Output", func(t *testing.T) {
		r := haul(t, admin, "job", "get", nightly, "-o", "json")
		var j map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
			t.Fatalf("job get -o json: %v: %s", err, r.stdout)
		}
		if j["task_count"] != 4.0 {
			t.Errorf("job get: task_count %#v (%T), want the number 4", j["task_count"], j["task_count"])
		}
		if n, ok := j["counts"].(map[string]any)["succeeded"].(float64); !ok || n != 4 {
			t.Errorf("job get: counts.succeeded %#v, want the number 4", j["counts"])
		}
		r = haul(t, admin, "task", "get", nightly, "prep", "-o", "json")
		if r.code != 0 || !strings.Contains(r.stdout, `echo prepared >&2`) || strings.Contains(r.stdout, `\u003e`) {
			t.Errorf("task get -o json: the command must be as written (no HTML escaping): %s", r.stdout)
		}
		var tg map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &tg); err != nil {
			t.Fatal(err)
		}
		if _, ok := tg["task"].(map[string]any)["duration_ms"].(float64); !ok {
			t.Errorf("task get: duration_ms is not a number: %s", r.stdout)
		}
		r = haul(t, admin, "job", "get", nightly, "-o", "yaml")
		var y map[string]any
		if err := yaml.Unmarshal([]byte(r.stdout), &y); err != nil || y["id"] != nightly || y["task_count"] != 4 {
			t.Errorf("job get -o yaml: %v, %v: %s", y["task_count"], err, r.stdout)
		}
		r = haul(t, admin, "job", "list", "-o", "yaml")
		var yl []map[string]any
		if err := yaml.Unmarshal([]byte(r.stdout), &yl); err != nil || len(yl) != 3 {
			t.Errorf("job list -o yaml: %d jobs, %v: %s", len(yl), err, r.stdout)
		}
		// No cost without a price.
		r = haul(t, admin, "job", "get", nightly)
		if strings.Contains(r.stdout, "$0.0000") {
			t.Errorf("job get shows a cost without a price:\n%s", r.stdout)
		}
		// One reason rendering for a timed-out task in list and get.
		r = haul(t, admin, "task", "list", slow)
		if !strings.Contains(r.stdout, "timeout (SIGTERM)") {
			t.Errorf("task list of a timed-out task:\n%s", r.stdout)
		}
		r = haul(t, admin, "task", "get", slow, "slow")
		if !strings.Contains(r.stdout, "timeout (SIGTERM)") {
			t.Errorf("task get of a timed-out task:\n%s", r.stdout)
		}
		// job watch of an ended job: its run time, not the watch's.
		r = haul(t, admin, "job", "watch", nightly)
		jr := waitJob(t, c, nightly, time.Second, func(*apiv1.Job) bool { return true })
		run := jr.FinishedAt.AsTime().Sub(jr.StartedAt.AsTime())
		want := run.Round(time.Millisecond).String()
		if run >= time.Second {
			want = run.Round(100 * time.Millisecond).String()
		}
		if r.code != 0 || run < 300*time.Millisecond || !strings.HasSuffix(strings.TrimSpace(r.stderr), "· "+want) {
			t.Errorf("job watch of a job that ran %s: exit %d, want its progress line to end with %q:\n%s%s", run, r.code, want, r.stderr, r.stdout)
		}
	})

	ids := func(r result) []string {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		var jobs []map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &jobs); err != nil {
			t.Fatalf("%v: %s", err, r.stdout)
		}
		var out []string
		for _, j := range jobs {
			out = append(out, j["id"].(string))
		}
		return out
	}
	t.Run("Filters", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"-l", "run=nightly"}, []string{nightly}},
			{[]string{"--selector", "run=nightly,team=ml"}, []string{nightly}},
			{[]string{"-l", "run=nightly,team=web"}, nil},
			{[]string{"--name", "adhoc-*"}, []string{adhoc}},
			{[]string{"--user", "alice@example.com"}, []string{adhoc}},
			{[]string{"--state", "failed"}, []string{slow}},
			{[]string{"--state", "succeeded", "-l", "run=adhoc"}, []string{adhoc}},
			{[]string{"--since", "1h"}, []string{slow, adhoc, nightly}},
			{[]string{"--since", before.Add(-time.Hour).UTC().Format(time.RFC3339)}, []string{slow, adhoc, nightly}},
			{[]string{"--until", "1h"}, nil},
			{[]string{"--until", "2000-01-01"}, nil},
		} {
			got := ids(haul(t, admin, append([]string{"job", "list", "-o", "json"}, tc.args...)...))
			if !slices.Equal(got, tc.want) {
				t.Errorf("job list %s: %v, want %v", strings.Join(tc.args, " "), got, tc.want)
			}
		}
		if got := ids(haul(t, alice, "job", "list", "--mine", "-o", "json")); !slices.Equal(got, []string{adhoc}) {
			t.Errorf("job list --mine as alice: %v", got)
		}
		r := haul(t, admin, "job", "list", "--show-labels", "-l", "run=nightly")
		if !strings.Contains(r.stdout, "LABELS") || !strings.Contains(r.stdout, "run=nightly,team=ml") {
			t.Errorf("--show-labels:\n%s", r.stdout)
		}
	})

	t.Run("Refs", func(t *testing.T) {
		// The shortest unique prefix of nightly's ID among the three.
		prefix := ""
		for n := 1; n <= len(nightly); n++ {
			p := nightly[:n]
			if !strings.HasPrefix(adhoc, p) && !strings.HasPrefix(slow, p) {
				prefix = p
				break
			}
		}
		r := haul(t, admin, "job", "get", prefix, "-o", "json")
		if r.code != 0 || !strings.Contains(r.stdout, `"id": "`+nightly+`"`) {
			t.Errorf("job get %s: exit %d %s %s", prefix, r.code, r.stdout, r.stderr)
		}
		r = haul(t, admin, "task", "list", prefix)
		if r.code != 0 || !strings.Contains(r.stdout, "sim-2") {
			t.Errorf("task list %s: exit %d %s %s", prefix, r.code, r.stdout, r.stderr)
		}
		r = haul(t, admin, "task", "logs", prefix, "sim-1")
		if r.code != 0 || r.stdout != "scene 1\n" {
			t.Errorf("task logs %s sim-1: exit %d %q %s", prefix, r.code, r.stdout, r.stderr)
		}
		// @last: the caller's newest job.
		r = haul(t, alice, "job", "get", "@last", "-o", "json")
		if r.code != 0 || !strings.Contains(r.stdout, `"id": "`+adhoc+`"`) {
			t.Errorf("job get @last as alice: exit %d %s %s", r.code, r.stdout, r.stderr)
		}
		r = haul(t, admin, "task", "list", "@last")
		if r.code != 0 || !strings.Contains(r.stdout, "slow") {
			t.Errorf("task list @last as admin: exit %d %s %s", r.code, r.stdout, r.stderr)
		}
		r = haul(t, alice, "task", "logs", "@last", "only")
		if r.code != 0 || r.stdout != "hi\n" {
			t.Errorf("task logs @last only: exit %d %q %s", r.code, r.stdout, r.stderr)
		}
		// The common prefix of all three jobs (created within a second)
		// is ambiguous.
		common := nightly[:1]
		r = haul(t, admin, "job", "get", common)
		if r.code != 1 || !strings.Contains(r.stderr, "is ambiguous: ") {
			t.Errorf("job get %s: exit %d, stderr %q; want an ambiguous prefix", common, r.code, r.stderr)
		}
		r = haul(t, admin, "job", "get", "zzzz")
		if r.code != 1 || !strings.Contains(r.stderr, `no job starts with "zzzz"`) {
			t.Errorf("job get zzzz: exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("Complete", func(t *testing.T) {
		words := func(r result) []string {
			var out []string
			for l := range strings.SplitSeq(strings.TrimSpace(r.stdout), "\n") {
				if l != "" && !strings.HasPrefix(l, ":") {
					out = append(out, strings.SplitN(l, "\t", 2)[0])
				}
			}
			return out
		}
		if got := words(haul(t, admin, "__complete", "job", "get", "")); !slices.Equal(got, []string{slow, nightly}) {
			t.Errorf("complete job get '': %v, want the admin's jobs %v", got, []string{slow, nightly})
		}
		if got := words(haul(t, admin, "__complete", "task", "get", nightly, "")); !slices.Equal(got, []string{"prep", "sim-0", "sim-1", "sim-2"}) {
			t.Errorf("complete task get J '': %v", got)
		}
		if got := words(haul(t, admin, "__complete", "task", "logs", nightly, "sim-")); len(got) != 3 {
			t.Errorf("complete task logs J sim-: %v", got)
		}
		r := haul(t, []string{"HAUL_SERVER=http://" + freePort(t)}, "__complete", "job", "get", "")
		if r.code != 0 || len(words(r)) != 0 || strings.Contains(r.stderr, "haul:") {
			t.Errorf("complete with no server: exit %d, %q, %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("Workers", func(t *testing.T) {
		// The job has ended; its workers' records say so once the
		// workers have exited and the runner has written them.
		var r result
		var ws []map[string]any
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
			r = haul(t, admin, "worker", "list", "--job", nightly, "-o", "json")
			if r.code != 0 {
				t.Fatalf("worker list: %d %s", r.code, r.stderr)
			}
			if err := json.Unmarshal([]byte(r.stdout), &ws); err != nil || len(ws) == 0 {
				t.Fatalf("worker list --job: %v: %s", err, r.stdout)
			}
			ended := true
			for _, w := range ws {
				ended = ended && w["state"] == "ended"
			}
			if ended || time.Now().After(deadline) {
				break
			}
		}
		total := 0.0
		for _, w := range ws {
			if w["job_id"] != nightly || w["state"] != "ended" {
				t.Errorf("worker %v: want an ended worker of %s", w, nightly)
			}
			n, ok := w["attempts"].(float64)
			if !ok {
				t.Errorf("attempts %#v is not a number", w["attempts"])
			}
			total += n
		}
		if total != 4 {
			t.Errorf("the job's workers ran %v attempts, want 4: %s", total, r.stdout)
		}
		wid := ws[0]["id"].(string)
		r = haul(t, admin, "worker", "get", wid)
		if r.code != 0 || !strings.Contains(r.stdout, "job:") || !strings.Contains(r.stdout, nightly) || !strings.Contains(r.stdout, "no price configured") {
			t.Errorf("worker get %s: exit %d\n%s%s", wid, r.code, r.stdout, r.stderr)
		}
		r = haul(t, admin, "worker", "get", wid, "-o", "json")
		var g struct {
			Worker   map[string]any `json:"worker"`
			Attempts []struct {
				TaskKey string `json:"task_key"`
			} `json:"attempts"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &g); err != nil || g.Worker["id"] != wid || len(g.Attempts) == 0 {
			t.Fatalf("worker get -o json: %v: %s", err, r.stdout)
		}
		for _, a := range g.Attempts {
			if a.TaskKey != "prep" && !strings.HasPrefix(a.TaskKey, "sim-") {
				t.Errorf("worker %s ran %q, not a task of %s", wid, a.TaskKey, nightly)
			}
		}
		// With the prefix and the filters.
		r = haul(t, admin, "worker", "list", "--job", nightly[:len(nightly)-1], "--state", "ended", "-l", "run=nightly")
		if r.code != 0 || !strings.Contains(r.stdout, wid) {
			t.Errorf("worker list with filters: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r = haul(t, admin, "worker", "list", "-l", "run=none", "-o", "json")
		if r.code != 0 || strings.Contains(r.stdout, wid) {
			t.Errorf("worker list -l run=none: %s", r.stdout)
		}
		// Alice sees the workers of her team's jobs (the default team).
		r = haul(t, alice, "worker", "get", wid)
		if r.code != 0 {
			t.Errorf("worker get as alice: exit %d %s", r.code, r.stderr)
		}
	})
}

// TestWorkersCost: with a price on the cluster, a worker's estimated cost
// is its lifetime times what its tier holds there, the job's cost being
// the sum of its workers'.
func TestWorkersCost(t *testing.T) {
	t.Parallel()
	s := startUp(t, freePort(t), t.TempDir(), "")
	env := []string{"HAUL_SERVER=" + s.url()}
	// The local cluster at $36 a core-hour: a cent a core-second.
	if r := haul(t, env, "cluster", "register", "local", "--cpu", "4", "--memory", "8Gi", "--price-cpu-hour", "36"); r.code != 0 {
		t.Fatalf("cluster register: %d %s", r.code, r.stderr)
	}
	id := submit(t, s, "name: priced\ntasks:\n  - key: a\n    command: [sleep, '0.5']\n")
	j := waitJob(t, s.client(), id, time.Minute, func(j *apiv1.Job) bool { return j.FinishedAt != nil })
	var ws []struct {
		ID        string    `json:"id"`
		State     string    `json:"state"`
		CostKnown bool      `json:"cost_known"`
		Cost      float64   `json:"estimated_cost_usd"`
		Started   time.Time `json:"started_at"`
		Ended     time.Time `json:"ended_at"`
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		r := haul(t, env, "worker", "list", "--job", id, "-o", "json")
		if err := json.Unmarshal([]byte(r.stdout), &ws); r.code != 0 || err != nil {
			t.Fatalf("worker list: %d %v %s %s", r.code, err, r.stdout, r.stderr)
		}
		if len(ws) > 0 && ws[0].State == "ended" || time.Now().After(deadline) {
			break
		}
	}
	sum := 0.0
	for _, w := range ws {
		life := w.Ended.Sub(w.Started).Seconds()
		if w.State != "ended" || !w.CostKnown || life <= 0 || w.Cost < life*0.01*0.999 || w.Cost > life*0.01*1.001 {
			t.Errorf("worker %+v: want ended, cost known, $0.01 a second of its %.3fs", w, life)
		}
		sum += w.Cost
	}
	j = waitJob(t, s.client(), id, time.Minute, func(j *apiv1.Job) bool { return j.EstimatedCostUsd > 0 })
	if sum < j.EstimatedCostUsd*0.95 || sum > j.EstimatedCostUsd*1.05 {
		t.Errorf("the workers cost $%.5f together, the job $%.5f", sum, j.EstimatedCostUsd)
	}
	r := haul(t, env, "worker", "get", ws[0].ID)
	if r.code != 0 || !strings.Contains(r.stdout, "estimated cost:  $0.0") {
		t.Errorf("worker get: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
