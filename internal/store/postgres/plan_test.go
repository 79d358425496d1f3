package postgres

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/haul-dev/haul/internal/pgtest"
	"github.com/haul-dev/haul/internal/store"
)

// TestListTasksPlans checks, on an analysed job of many tasks of which
// some ended, that ListTasks sorted reads the partial index of ended tasks
// (from the key it continues after), never the whole table nor a sort of
// every ended task, and that TaskRangeStats reads each range through the
// primary key.
func TestListTasksPlans(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openTest(t, pgtest.NewDatabase(t, serverURL))
	const n = 20_000
	base := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	job := &store.Job{ID: "plan-job", Name: "plan", CreatedAt: base}
	tasks := make([]store.Task, n)
	for i := range tasks {
		tasks[i] = store.Task{Index: int32(i), Key: fmt.Sprintf("t-%d", i)}
	}
	if err := s.CreateJob(ctx, job, tasks); err != nil {
		t.Fatal(err)
	}
	var b store.Batch
	for i := int32(0); i < n; i += 4 {
		b.Tasks = append(b.Tasks, store.TaskUpdate{JobID: job.ID, Index: i, State: store.TaskSucceeded,
			StartedAt: base, FinishedAt: base.Add(time.Duration(i%997) * time.Millisecond), PeakRSSBytes: int64(i%89) << 20})
	}
	if err := s.Apply(ctx, &b); err != nil {
		t.Fatal(err)
	}
	explain := func(c *pgx.Conn, query string, args ...any) string {
		rows, err := c.Query(ctx, "EXPLAIN "+query, args...)
		if err != nil {
			t.Fatalf("EXPLAIN: %v\n%s", err, query)
		}
		defer rows.Close()
		var lines []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, line)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return strings.Join(lines, "\n")
	}
	indexes := map[string]string{"duration_ms": "tasks_job_duration_idx", "peak_rss": "tasks_job_peak_rss_idx"}
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		if _, err := c.Exec(ctx, "ANALYZE tasks"); err != nil {
			return err
		}
		for q, query := range listTasksQueries {
			args := []any{job.ID, int64(0), int64(1 << 31), nil, nil, nil, nil, "", 10}
			if q.After {
				args = append(args, int64(500), int32(4000))
			}
			plan := explain(c, query, args...)
			if strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Bitmap") {
				t.Errorf("%+v: plan reads the table, not an index:\n%s", q, plan)
			}
			if q.Column == "" {
				continue
			}
			if !strings.Contains(plan, "Index Scan using "+indexes[q.Column]) && !strings.Contains(plan, "Index Scan Backward using "+indexes[q.Column]) {
				t.Errorf("%+v: plan does not read %s:\n%s", q, indexes[q.Column], plan)
			}
			if strings.Contains(plan, "\n  ->  Sort") || strings.Contains(plan, "->  Sort ") {
				t.Errorf("%+v: plan sorts every ended task:\n%s", q, plan)
			}
			if q.After && !strings.Contains(plan, "Index Cond: ((job_id = 'plan-job'::text) AND ") {
				t.Errorf("%+v: plan does not start from the key it continues after:\n%s", q, plan)
			}
		}
		plan := explain(c, qTaskRangeStats, job.ID, []int32{0, 100}, []int32{50, 200})
		if !strings.Contains(plan, "Index Scan using tasks_pkey") || strings.Contains(plan, "Seq Scan") {
			t.Errorf("TaskRangeStats plan does not read ranges of the primary key:\n%s", plan)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
