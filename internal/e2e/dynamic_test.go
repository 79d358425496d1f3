package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/pgtest"
)

// prober is a job whose task `probe` tries `haul task add` in every way that
// must fail, then in ways that must work, printing one line per case:
// "NAME exit=CODE". The test reads its log.
const prober = `
name: prober
tasks:
  - key: first
    command: [/bin/true]
  - key: probe
    after: [first]
    command:
      - sh
      - -c
      - |
        try() { name=$1; shift; out=$("$@" 2>&1); echo "$name exit=$? $out"; }
        try unknown-dep  sh -c 'printf "tasks: [{key: u, command: [true], after: [nope]}]" | haul task add -f -'
        try cycle        sh -c 'printf "tasks: [{key: x, command: [true], after: [y]}, {key: y, command: [true], after: [x]}]" | haul task add -f -'
        try duplicate    sh -c 'printf "tasks: [{key: first, command: [true]}]" | haul task add -f -'
        try bad-field    sh -c 'printf "name: other\ntasks: [{key: n, command: [true]}]" | haul task add -f -'
        try bad-token    sh -c 'printf "tasks: [{key: t, command: [true]}]" | HAUL_TOKEN=hjt1.forged haul task add -f -'
        try other-task   sh -c 'printf "tasks: [{key: t, command: [true]}]" | haul task add -f - --task first'
        try after-done   sh -c 'printf "tasks: [{key: after-first, command: [true], after: [first]}]" | haul task add -f -'
        try after-me     sh -c 'printf "tasks: [{key: after-probe, command: [sh, -c, \"echo ran after probe\"], after: [probe]}]" | haul task add -f -'
        # after-first is ready at once: wait until it has run, while this task runs.
        for i in $(seq 100); do
          haul task get "$HAUL_JOB" after-first -o json | grep -q '"state": *"succeeded"' && break
          sleep 0.1
        done
        haul task get "$HAUL_JOB" after-first -o json | grep -o '"state": *"[a-z_]*"' | head -1 | sed 's/^/after-first-while-probe-runs /'
`

func TestDynamicDAG(t *testing.T) {
	t.Parallel()
	for _, st := range []string{"sqlite", "postgres"} {
		t.Run(st, func(t *testing.T) {
			t.Parallel()
			dbURL := ""
			if st == "postgres" {
				dbURL = pgtest.Start(t)
			}
			s := startUp(t, freePort(t), t.TempDir(), dbURL)
			env := []string{"HAUL_SERVER=" + s.url()}

			// The example: discover adds its parts and a reduce.
			r := haul(t, env, "run", "examples/dynamic.yaml")
			if r.code != 0 {
				t.Fatalf("haul run examples/dynamic.yaml: exit %d\n%s\n%s\nserver: %s", r.code, r.stdout, r.stderr, s.log)
			}
			id := strings.SplitN(r.stdout, "\n", 2)[0]
			checkDynamicExample(t, s, id)

			// The edge cases.
			r = haul(t, env, "run", writeSpec(t, prober))
			if r.code != 0 {
				t.Fatalf("prober job: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			id = strings.SplitN(r.stdout, "\n", 2)[0]
			r = haul(t, env, "task", "logs", id, "probe")
			log := r.stdout
			for _, c := range []struct{ name, want string }{
				{"unknown-dep", `exit=1 haul: failed_precondition: cannot add tasks: task "u" field after: unknown dependency "nope"`},
				{"cycle", "exit=1 haul: failed_precondition: cannot add tasks: task \"x\" field after: dependency cycle: x -> y -> x"},
				{"duplicate", `exit=1 haul: failed_precondition: cannot add tasks: task "first" already exists`},
				{"bad-field", "exit=1 haul: stdin:1: field name: cannot be changed by adding tasks"},
				{"bad-token", "exit=1 haul: unauthenticated: not a valid task token"},
				// The adder is the token's task, whatever the request names.
				{"other-task", `exit=1 haul: permission_denied: job ` + id + `: the request names task "first" but its token is task "probe"'s`},
				{"after-done", "exit=0 added 1 tasks"},
				{"after-me", "exit=0 added 1 tasks"},
				{"after-first-while-probe-runs", `"succeeded"`},
			} {
				line := lineStarting(log, c.name+" ")
				if !strings.Contains(line, c.want) {
					t.Errorf("case %s: got %q, want it to contain %q\nwhole log:\n%s", c.name, line, c.want, log)
				}
			}
			c := s.client()
			j, err := c.GetJob(context.Background(), connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
			if err != nil {
				t.Fatal(err)
			}
			if j.Msg.Job.TaskCount != 4 || j.Msg.Job.Counts.Succeeded != 4 {
				t.Errorf("prober job: %d tasks, %d succeeded; want 4 and 4 (nothing of the refused adds stored)", j.Msg.Job.TaskCount, j.Msg.Job.Counts.Succeeded)
			}
			probe := getTask(t, s, id, "probe")
			after := getTask(t, s, id, "after-probe")
			if after.StartedAt.AsTime().Before(probe.FinishedAt.AsTime()) {
				t.Errorf("after-probe started at %v, before probe finished at %v", after.StartedAt.AsTime(), probe.FinishedAt.AsTime())
			}
		})
	}
}

func checkDynamicExample(t *testing.T, s *upServer, id string) {
	t.Helper()
	c := s.client()
	j, err := c.GetJob(context.Background(), connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
	if err != nil {
		t.Fatal(err)
	}
	n := j.Msg.Job.TaskCount
	if j.Msg.Job.State != "succeeded" || n < 5 || j.Msg.Job.Counts.Succeeded != n {
		t.Fatalf("dynamic example: %s with %d tasks (%v); want succeeded, discover + 3..7 parts + reduce", j.Msg.Job.State, n, j.Msg.Job.Counts)
	}
	reduce := getTask(t, s, id, "reduce")
	parts, err := c.ListTasks(context.Background(), connect.NewRequest(&apiv1.ListTasksRequest{JobId: id, KeyGlob: "part-*"}))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(parts.Msg.Tasks)) != n-2 {
		t.Fatalf("%d parts of %d tasks", len(parts.Msg.Tasks), n)
	}
	var last time.Time
	for _, p := range parts.Msg.Tasks {
		if f := p.FinishedAt.AsTime(); f.After(last) {
			last = f
		}
	}
	if reduce.StartedAt.AsTime().Before(last) {
		t.Errorf("reduce started at %v, before the last part finished at %v", reduce.StartedAt.AsTime(), last)
	}
}

func getTask(t *testing.T, s *upServer, job, key string) *apiv1.Task {
	t.Helper()
	resp, err := s.client().GetTask(context.Background(), connect.NewRequest(&apiv1.GetTaskRequest{JobId: job, Key: key}))
	if err != nil {
		t.Fatalf("get task %s: %v", key, err)
	}
	return resp.Msg.Task
}

func lineStarting(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
