package sqlite

import (
	"path/filepath"
	"strings"
	"testing"
)

// queryPlan returns SQLite's plan of a query, one line per step.
func queryPlan(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.read.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatalf("EXPLAIN QUERY PLAN: %v\n%s", err, query)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// TestListTasksPlans checks that ListTasks reads a range of the primary
// key in index order and, sorted, the partial index of ended tasks from
// the key it continues after (never every ended task of the job, never a
// sort of them all), and that TaskRangeStats reads a range of the primary
// key.
func TestListTasksPlans(t *testing.T) {
	t.Parallel()
	s := openTest(t, filepath.Join(t.TempDir(), "haul.db"))
	for q, query := range listTasksQueries {
		args := []any{"j", 0, 1 << 31, nil, nil, nil, nil, nil, "", 10}
		if q.After {
			args = append(args, 5, 3)
		}
		plan := queryPlan(t, s, query, args...)
		var want []string
		switch {
		case q.Column == "":
			want = []string{"USING PRIMARY KEY (job_id=? AND idx>? AND idx<?)"}
		case !q.After:
			want = []string{"USING INDEX " + sortIndexes[q.Column] + " (job_id=?"}
		case !q.Desc:
			want = []string{"USING INDEX " + sortIndexes[q.Column] + " (job_id=? AND (" + q.Column + ",idx)>(?,?))"}
		default:
			want = []string{"USING INDEX " + sortIndexes[q.Column] + " (job_id=? AND ", q.Column + "<?)"}
		}
		for _, w := range want {
			if !strings.Contains(plan, w) {
				t.Errorf("%+v: plan lacks %q:\n%s", q, w, plan)
			}
		}
		if strings.Contains(plan, "USE TEMP B-TREE FOR ORDER BY") {
			t.Errorf("%+v: plan sorts all the rows it reads:\n%s", q, plan)
		}
	}
	if plan := queryPlan(t, s, qTaskRangeStats, "j", 0, 10); !strings.Contains(plan, "USING PRIMARY KEY (job_id=? AND idx>? AND idx<?)") {
		t.Errorf("TaskRangeStats plan does not read a range of the primary key:\n%s", plan)
	}
}
