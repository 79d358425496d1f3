package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The workload is paced by gate files that the test creates: gate k opens
// once fault k-1 is over (gate 0 at once; the last gate after the last
// fault). Each gate releases one phase of the big job's tasks and one step
// of the dynamic job, so that every fault strikes while a burst of tasks is
// being handed out and tasks are being added, whatever the machine's speed,
// and neither job can end before the last fault. Only one gate task of each
// job runs at a time (gate k waits for gate k-1), so waiting costs each
// job one worker.

// gatePath is the file that opens gate k.
func gatePath(dir string, k int) string { return filepath.Join(dir, fmt.Sprintf("gate-%d", k)) }

// openGate creates the file of gate k.
func openGate(dir string, k int) error {
	return os.WriteFile(gatePath(dir, k), nil, 0o644)
}

// waitGate is a shell command that returns once gate k is open.
func waitGate(dir string, k int) string {
	return fmt.Sprintf("while [ ! -e '%s' ]; do sleep 0.1; done", gatePath(dir, k))
}

// chains is the number of task chains of the big job: chain c's link k
// waits for link k-1 and gate k.
const chains = 3

// dagSpec is the big job: gates 0..faults+1 in a chain; phase k (k =
// 0..faults) of perPhase `true` tasks t-k-{i} after gate k; chains of one
// link per phase; a fan-in after all of them and the last gate.
func dagSpec(dir string, faults, perPhase int) string {
	var b strings.Builder
	b.WriteString("name: chaos-dag\nretries: 0\ntasks:\n")
	last := faults + 1
	for k := 0; k <= last; k++ {
		fmt.Fprintf(&b, "  - key: gate-%d\n    command: [sh, -c, %q]\n", k, waitGate(dir, k))
		if k > 0 {
			fmt.Fprintf(&b, "    after: [gate-%d]\n", k-1)
		}
	}
	for k := 0; k <= faults; k++ {
		fmt.Fprintf(&b, "  - key: \"t-%d-{i}\"\n    foreach: {range: [0, %d]}\n    command: [\"true\"]\n    after: [gate-%d]\n", k, perPhase, k)
		for c := range chains {
			fmt.Fprintf(&b, "  - key: chain-%d-%d\n    command: [\"true\"]\n    after: [gate-%d", c, k, k)
			if k > 0 {
				fmt.Fprintf(&b, ", chain-%d-%d", c, k-1)
			}
			b.WriteString("]\n")
		}
	}
	fmt.Fprintf(&b, "  - key: fanin\n    command: [\"true\"]\n    after: [\"t-*\", gate-%d", last)
	for c := range chains {
		fmt.Fprintf(&b, ", chain-%d-%d", c, faults)
	}
	b.WriteString("]\n")
	return b.String()
}

// dagTasks is the number of tasks dagSpec compiles to.
func dagTasks(faults, perPhase int) int {
	return (faults + 2) + (faults+1)*(perPhase+chains) + 1
}

// addScript is step k of the dynamic job: wait for gate k, then add leaves
// leaf-k-0..leaf-k-(n-1) with `haul task add`, as a careful client would:
// retried while the API is away (a gateway killed, PostgreSQL restarting),
// and done when the tasks exist already (an add whose reply was lost, or
// an attempt run again).
func addScript(dir, haul string, k, n int) string {
	return fmt.Sprintf(`%s
frag='tasks:
  - key: "leaf-%d-{i}"
    foreach: {range: [0, %d]}
    command: ["true"]
'
tries=0
while :; do
  if out=$(printf '%%s' "$frag" | '%s' task add -f - 2>&1); then echo "$out"; break; fi
  case "$out" in *"already exists"*) echo "added before: $out"; break;; esac
  tries=$((tries+1))
  if [ $tries -ge 120 ]; then echo "giving up: $out" >&2; exit 1; fi
  echo "retry: $out"
  sleep 0.5
done
`, waitGate(dir, k), k, n, haul)
}

// dynamicSpec is the dynamic job: steps 0..faults+1 in a chain, step k
// adding n leaves once gate k is open, and an end task after the last
// step.
func dynamicSpec(dir, haul string, faults, n int) string {
	var b strings.Builder
	b.WriteString("name: chaos-dynamic\nretries: 0\ntasks:\n")
	last := faults + 1
	for k := 0; k <= last; k++ {
		fmt.Fprintf(&b, "  - key: step-%d\n    command:\n      - sh\n      - -c\n      - |\n", k)
		for _, line := range strings.Split(strings.TrimRight(addScript(dir, haul, k, n), "\n"), "\n") {
			b.WriteString("        " + line + "\n")
		}
		if k > 0 {
			fmt.Fprintf(&b, "    after: [step-%d]\n", k-1)
		}
	}
	fmt.Fprintf(&b, "  - key: end\n    command: [\"true\"]\n    after: [step-%d]\n", last)
	return b.String()
}

// dynamicTasks is the number of tasks the dynamic job ends with.
func dynamicTasks(faults, n int) int {
	return (faults+2)*(n+1) + 1
}

// attemptReport is what the attempts stored for one job say.
type attemptReport struct {
	tasks    int // tasks stored
	attempts int // attempts stored
	reruns   int // attempts beyond the first, per task, summed
	lost     int // attempts that ended lost
	failed   int // attempts that ended failed
	// problems are tasks that break "every task ends, succeeded exactly
	// once" (the first few).
	problems []string
	nProblem int
}

// checkAttempts reads a job's tasks and attempts from the store's tables:
// every task must have ended succeeded, with exactly one succeeded attempt
// and no attempt left unended.
func checkAttempts(ctx context.Context, dbURL, jobID string) (attemptReport, error) {
	var r attemptReport
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return r, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
SELECT t.key, t.state, t.attempts, t.finished_at IS NOT NULL,
       count(a.number),
       count(a.number) FILTER (WHERE a.state = 'succeeded'),
       count(a.number) FILTER (WHERE a.state = 'lost'),
       count(a.number) FILTER (WHERE a.state = 'failed'),
       count(a.number) FILTER (WHERE a.state NOT IN ('succeeded', 'failed', 'lost', 'cancelled') OR a.finished_at IS NULL)
FROM tasks t LEFT JOIN attempts a ON a.job_id = t.job_id AND a.task_idx = t.idx
WHERE t.job_id = $1
GROUP BY t.idx, t.key, t.state, t.attempts, t.finished_at
ORDER BY t.idx`, jobID)
	if err != nil {
		return r, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			key, state                          string
			counted                             int32
			ended                               bool
			n, succeeded, lost, failed, unended int64
		)
		if err := rows.Scan(&key, &state, &counted, &ended, &n, &succeeded, &lost, &failed, &unended); err != nil {
			return r, err
		}
		r.tasks++
		r.attempts += int(n)
		if n > 1 {
			r.reruns += int(n - 1)
		}
		r.lost += int(lost)
		r.failed += int(failed)
		var why []string
		if state != "succeeded" {
			why = append(why, "state "+state)
		}
		if !ended {
			why = append(why, "no end time")
		}
		if succeeded != 1 {
			why = append(why, fmt.Sprintf("%d succeeded attempts", succeeded))
		}
		if unended > 0 {
			why = append(why, fmt.Sprintf("%d attempts never ended", unended))
		}
		if int64(counted) != n {
			why = append(why, fmt.Sprintf("the task counts %d attempts, %d stored", counted, n))
		}
		if len(why) > 0 {
			r.nProblem++
			if len(r.problems) < 20 {
				r.problems = append(r.problems, fmt.Sprintf("task %s: %s", key, strings.Join(why, ", ")))
			}
		}
	}
	return r, rows.Err()
}
