package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/haul-dev/haul/internal/history"
	"github.com/haul-dev/haul/internal/history/historytest"
	"github.com/haul-dev/haul/internal/store/sqlite"
)

func runHaul(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

func TestHistoryQueriedTables(t *testing.T) {
	for q, want := range map[string][]string{
		"SELECT * FROM Attempts a JOIN jobs USING (job_id)":   {"jobs", "attempts"},
		"select count(*) from LOG_ENTRIES where task_index=1": {"log_entries"},
		"SELECT jobsx, my_tasks, tasks_2 FROM foo":            nil,
		"SELECT 1 FROM workers, tasks, workers":               {"tasks", "workers"},
	} {
		if got := QueriedTables(q); !slices.Equal(got, want) {
			t.Errorf("QueriedTables(%q) = %v; want %v", q, got, want)
		}
	}
}

// fakeQueryBin installs a haul-query stand-in that prints its arguments
// and the files of --dir, and exits with the status in $FAKE_EXIT.
func fakeQueryBin(t *testing.T) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "haul-query")
	script := "#!/bin/sh\necho \"args: $*\"\n(cd \"$2\" && find . -name '*.parquet' | sort)\nexit ${FAKE_EXIT:-0}\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(QueryBinEnv, p)
}

func TestHistoryQueryFetches(t *testing.T) {
	fakeQueryBin(t)
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	export := t.TempDir()
	historytest.Export(t, export)
	from := "file://" + export
	sum := sha256.Sum256([]byte(from))
	dir := filepath.Join(cache, "haul", "history", hex.EncodeToString(sum[:]))

	q := "SELECT team, count(*) FROM Attempts JOIN jobs ON jobs.id = attempts.job_id GROUP BY team"
	out, errs, code := runHaul(t, "query", "--from", from, "--format", "csv", q)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want := "args: --dir " + dir + " --format csv " + q + "\n" +
		"./attempts/date=2026-11-02/batch-000000001.parquet\n./attempts/date=2026-11-03/batch-000000001.parquet\n./attempts/date=2026-11-03/batch-000000002.parquet\n" +
		"./jobs/date=2026-11-02/batch-000000001.parquet\n./jobs/date=2026-11-03/batch-000000001.parquet\n./jobs/date=2026-11-03/batch-000000002.parquet\n"
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	if !strings.Contains(errs, "fetched 6 objects") {
		t.Errorf("stderr %q; want 6 objects fetched", errs)
	}
	// The cached copies are the objects.
	for _, k := range []string{"jobs/date=2026-11-02/batch-000000001.parquet", "attempts/date=2026-11-03/batch-000000002.parquet"} {
		a, _ := os.ReadFile(filepath.Join(export, k))
		b, err := os.ReadFile(filepath.Join(dir, k))
		if err != nil || !bytes.Equal(a, b) || len(a) == 0 {
			t.Errorf("cached %s differs from the object (%v)", k, err)
		}
	}

	// Again: nothing fetched; another table: only its objects.
	_, errs, code = runHaul(t, "query", "--from", from, q)
	if code != 0 || errs != "" {
		t.Errorf("second query: exit %d, stderr %q; want nothing fetched", code, errs)
	}
	_, errs, _ = runHaul(t, "query", "--from", from, "SELECT * FROM workers, jobs")
	if !strings.Contains(errs, "fetched 3 objects") || !strings.Contains(errs, "3 were cached") {
		t.Errorf("workers query: stderr %q; want 3 fetched, 3 cached", errs)
	}
	// An object that changed size is fetched again.
	stale := filepath.Join(dir, "jobs", "date=2026-11-02", "batch-000000001.parquet")
	if err := os.WriteFile(stale, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, _ = runHaul(t, "query", "--from", from, "SELECT * FROM jobs")
	if !strings.Contains(errs, "fetched 1 objects") {
		t.Errorf("after a size change: stderr %q; want 1 fetched", errs)
	}

	// A local folder is queried in place; the binary's exit status is haul's.
	t.Setenv("FAKE_EXIT", "1")
	out, _, code = runHaul(t, "query", "--from", export, "SELECT 1")
	if code != 1 || !strings.HasPrefix(out, "args: --dir "+export+" --format table SELECT 1\n") {
		t.Errorf("local folder: exit %d, %q", code, out)
	}
}

func TestHistoryQueryNoBinary(t *testing.T) {
	t.Setenv(QueryBinEnv, "")
	t.Setenv("PATH", t.TempDir())
	_, errs, code := runHaul(t, "query", "--from", t.TempDir(), "SELECT 1")
	if code != 1 || !strings.Contains(errs, "go build -o bin/haul-query ./cmd/haul-query") {
		t.Errorf("exit %d, %q; want how to build haul-query", code, errs)
	}
	t.Setenv(HistoryEnv, "")
	if _, _, code := runHaul(t, "query", "SELECT 1"); code != 2 {
		t.Errorf("no --from: exit %d; want 2", code)
	}
}

func TestHistoryExportCommand(t *testing.T) {
	db := filepath.Join(t.TempDir(), "haul.db")
	s, err := sqlite.Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := historytest.Seed(t, s)
	s.Close()
	to := t.TempDir()
	out, errs, code := runHaul(t, "history", "export", "--db", db, "--to", "file://"+to, "--batch-jobs", "2", "--finished-before", "0s")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.HasPrefix(out, "exported 3 jobs in 2 batches: 15 files") ||
		!strings.Contains(out, fmt.Sprintf("attempts     %d rows", f.Rows[history.TableAttempts])) {
		t.Errorf("output:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(to, "attempts", "date=2026-11-02", "batch-000000001.parquet")); err != nil {
		t.Error(err)
	}
	out, _, code = runHaul(t, "history", "export", "--db", db, "--to", to, "-o", "json")
	if code != 0 || !strings.Contains(out, `"Batches": 0`) {
		t.Errorf("second export: exit %d, %s", code, out)
	}
}
