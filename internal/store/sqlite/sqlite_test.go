package sqlite

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
	"github.com/haul-dev/haul/internal/store/storetest"
)

// crashChildEnv, when set to a database path, makes the test binary the
// child of TestCommittedBatchSurvivesKill instead of running tests.
const crashChildEnv = "HAUL_SQLITE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		os.Exit(crashChild(path))
	}
	// Register the SQL function with the driver before any test runs: tests
	// that open the driver directly (sql.Open) would otherwise race with
	// the registration an Open in a parallel test makes.
	if err := registerOnce(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func openTest(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path, nil)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Exercise(t, func(t *testing.T) store.Store {
		return openTest(t, filepath.Join(t.TempDir(), "haul.db"))
	})
}

func TestPlacementConformance(t *testing.T) {
	t.Parallel()
	storetest.ExercisePlacement(t, func(t *testing.T) store.Store {
		return openTest(t, filepath.Join(t.TempDir(), "haul.db"))
	})
}

func TestLogConformance(t *testing.T) {
	t.Parallel()
	storetest.ExerciseLogs(t, func(t *testing.T) store.Store {
		return openTest(t, filepath.Join(t.TempDir(), "haul.db"))
	})
}

func schemaVersion(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow("SELECT max(version) FROM schema_migrations").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMigrations(t *testing.T) {
	t.Parallel()
	ms, err := storesql.Migrations(migrationFS)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "haul.db")
	s := openTest(t, path)
	if err := s.CreateJob(t.Context(), &store.Job{ID: "j1"}, []store.Task{{Key: "a"}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if v := schemaVersion(t, path); v != len(ms) {
		t.Fatalf("schema version %d after Open, want %d", v, len(ms))
	}

	// Re-opening a migrated database applies nothing and keeps the data.
	s = openTest(t, path)
	if _, err := s.GetJob(t.Context(), "j1"); err != nil {
		t.Fatalf("after re-open: %v", err)
	}
	s.Close()

	// A database from a newer haul is refused.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	future := len(ms) + 1
	if _, err := db.Exec("INSERT INTO schema_migrations (version, name) VALUES (?, 'from_the_future')", future); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(t.Context(), path, nil)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d", future)) || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open(database of schema version %d) = %v, want an error saying it is newer", future, err)
	}
}

// TestUpgradeFromV3 migrates a database that schema version 3 left with
// rows in it.
func TestUpgradeFromV3(t *testing.T) {
	t.Parallel()
	s := upgradeFrom(t, 3, storetest.SchemaV3Rows)
	storetest.CheckSchemaV3Rows(t, s)
}

// TestUpgradeFromV13 migrates a database that schema version 13 left with
// ended tasks in it.
func TestUpgradeFromV13(t *testing.T) {
	t.Parallel()
	s := upgradeFrom(t, 13, storetest.SchemaV13Rows)
	storetest.CheckSchemaV13Rows(t, s)
}

// upgradeFrom makes a database of schema version v holding rows, opens it
// (which migrates it to the latest version, checked) and returns the store.
func upgradeFrom(t *testing.T, v int, rows []string) *Store {
	t.Helper()
	ms, err := storesql.Migrations(migrationFS)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "haul.db")
	db, err := sql.Open("sqlite", path+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(qCreateMigrations); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:v] {
		if _, err := db.Exec(m.SQL); err != nil {
			t.Fatalf("apply %s: %v", m.Name, err)
		}
		if _, err := db.Exec(qRecordMigration, m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range rows {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s := openTest(t, path)
	if got := schemaVersion(t, path); got != len(ms) {
		t.Fatalf("schema version %d after Open, want %d", got, len(ms))
	}
	return s
}

func TestOpenRefusesBadPaths(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro", filepath.Join(t.TempDir(), "no", "such", "dir", "x.db")} {
		if s, err := Open(t.Context(), p, nil); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

// TestPragmas checks the durability settings the package doc promises.
func TestPragmas(t *testing.T) {
	t.Parallel()
	s := openTest(t, filepath.Join(t.TempDir(), "haul.db"))
	for _, c := range []struct {
		db     *sql.DB
		pragma string
		want   string
	}{
		{s.write, "journal_mode", "wal"},
		{s.write, "synchronous", "2"}, // FULL
		{s.write, "foreign_keys", "1"},
		{s.read, "foreign_keys", "1"},
		{s.read, "query_only", "1"},
		{s.write, "busy_timeout", "10000"},
	} {
		var got string
		if err := c.db.QueryRow("PRAGMA " + c.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("PRAGMA %s = %s, want %s", c.pragma, got, c.want)
		}
	}
}

// crashChild creates a job, applies a batch, says "committed" on stdout
// and waits to be killed.
func crashChild(path string) int {
	ctx := context.Background()
	s, err := Open(ctx, path, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	err = errors.Join(
		s.CreateJob(ctx, &store.Job{ID: "durable"}, []store.Task{{Key: "a"}, {Index: 1, Key: "b"}}),
		s.Apply(ctx, &store.Batch{
			Tasks: []store.TaskUpdate{{JobID: "durable", Index: 1, State: store.TaskSucceeded, Attempts: 1}},
			Jobs:  []store.JobUpdate{{ID: "durable", State: store.JobRunning, Counts: store.TaskCounts{Blocked: 1, Succeeded: 1}}},
		}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("committed")
	select {} // until killed
}

// TestCommittedBatchSurvivesKill kills a process with SIGKILL right after
// its Apply returned, and finds the batch in the database.
func TestCommittedBatchSurvivesKill(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "haul.db")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if l != "committed\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child said %q", l)
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("child did not commit within a minute")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	s := openTest(t, path)
	job, err := s.GetJob(t.Context(), "durable")
	if err != nil {
		t.Fatal(err)
	}
	if job.State != store.JobRunning || job.Counts.Succeeded != 1 {
		t.Errorf("after kill -9: job %s %+v, want the committed batch", job.State, job.Counts)
	}
	task, err := s.GetTask(t.Context(), "durable", "b")
	if err != nil || task.State != store.TaskSucceeded {
		t.Errorf("after kill -9: task b = %+v, %v", task, err)
	}
}

func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, func(b *testing.B) store.Store {
		s, err := Open(b.Context(), filepath.Join(b.TempDir(), "haul.db"), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	})
}

// TestGlobPredicate checks ListTasks' key predicate (GLOB, then path.Match
// where GLOB cannot spell the glob exactly) against path.Match for random
// globs and keys over an alphabet full of special cases.
func TestGlobPredicate(t *testing.T) {
	t.Parallel()
	s := openTest(t, filepath.Join(t.TempDir(), "haul.db"))
	stmt, err := s.read.PrepareContext(t.Context(), `SELECT (?1 GLOB ?2) AND (?3 IS NULL OR `+pathMatchFunc+`(?3, ?1))`)
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	alphabet := []rune("ab/-^]\\[*?.%_ü")
	pick := func(n int) string {
		var b strings.Builder
		for range rng.IntN(n) {
			b.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	valid, matched := 0, 0
	for range 5000 {
		glob, key := pick(7), pick(6)
		if rng.IntN(2) == 0 { // often a key the glob could match
			key = strings.NewReplacer("*", "ab", "?", "b", "[", "", "]", "", "\\", "").Replace(glob)
		}
		want, err := path.Match(glob, key)
		toks, perr := storesql.ParseGlob(glob)
		if (err != nil) != (perr != nil) {
			t.Fatalf("glob %q: path.Match error %v, parseGlob error %v", glob, err, perr)
		}
		if err != nil {
			continue
		}
		valid++
		if want {
			matched++
		}
		pattern, exact := sqliteGlob(toks)
		var match any
		if !exact {
			match = glob
		}
		var got bool
		if err := stmt.QueryRowContext(t.Context(), key, pattern, match).Scan(&got); err != nil {
			t.Fatalf("glob %q: %v", glob, err)
		}
		if got != want {
			t.Fatalf("glob %q (GLOB %q, exact %v), key %q: got %v, path.Match says %v", glob, pattern, exact, key, got, want)
		}
	}
	if valid < 1000 || matched < 300 {
		t.Fatalf("only %d well-formed globs, %d matches: the generator needs work", valid, matched)
	}
}

func TestHistoryConformance(t *testing.T) {
	t.Parallel()
	storetest.ExerciseHistory(t, func(t *testing.T) store.Store {
		return openTest(t, filepath.Join(t.TempDir(), "haul.db"))
	})
}

func TestRetentionConformance(t *testing.T) {
	t.Parallel()
	storetest.ExerciseRetention(t, func(t *testing.T) store.Store {
		return openTest(t, filepath.Join(t.TempDir(), "haul.db"))
	})
}

func TestNotifyConformance(t *testing.T) {
	t.Parallel()
	storetest.ExerciseNotify(t, func(t *testing.T) store.Store {
		return openTest(t, filepath.Join(t.TempDir(), "haul.db"))
	})
}
