package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/haul-dev/haul/internal/pgtest"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
	"github.com/haul-dev/haul/internal/store/storetest"
)

// serverURL is the throwaway PostgreSQL server TestMain starts for the
// package; each test gets its own database on it.
var serverURL string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := pgtest.MkdirTemp()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	srv, err := pgtest.StartServer(context.Background(), dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer srv.Stop()
	serverURL = srv.URL()
	return m.Run()
}

func openTest(t testing.TB, url string) *Store {
	t.Helper()
	s, err := Open(t.Context(), url, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Exercise(t, func(t *testing.T) store.Store {
		return openTest(t, pgtest.NewDatabase(t, serverURL))
	})
}

func TestPlacementConformance(t *testing.T) {
	t.Parallel()
	storetest.ExercisePlacement(t, func(t *testing.T) store.Store {
		return openTest(t, pgtest.NewDatabase(t, serverURL))
	})
}

func TestLogConformance(t *testing.T) {
	t.Parallel()
	storetest.ExerciseLogs(t, func(t *testing.T) store.Store {
		return openTest(t, pgtest.NewDatabase(t, serverURL))
	})
}

func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, func(b *testing.B) store.Store {
		return openTest(b, pgtest.NewDatabase(b, serverURL))
	})
}

func TestMigrations(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ms, err := storesql.Migrations(migrationFS)
	if err != nil {
		t.Fatal(err)
	}
	url := pgtest.NewDatabase(t, serverURL)
	s := openTest(t, url)
	if err := s.CreateJob(ctx, &store.Job{ID: "j1"}, []store.Task{{Key: "a"}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Re-opening a migrated database applies nothing and keeps the data.
	s = openTest(t, url)
	if _, err := s.GetJob(ctx, "j1"); err != nil {
		t.Fatalf("after re-open: %v", err)
	}
	s.Close()

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n, v int
	if err := conn.QueryRow(ctx, "SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) || v != len(ms) {
		t.Fatalf("schema_migrations: %d rows up to version %d, want %d", n, v, len(ms))
	}

	// A database from a newer haul is refused.
	future := len(ms) + 1
	if _, err := conn.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_the_future')", future); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, url, nil)
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
	ctx := t.Context()
	ms, err := storesql.Migrations(migrationFS)
	if err != nil {
		t.Fatal(err)
	}
	url := pgtest.NewDatabase(t, serverURL)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, qCreateMigrations); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:v] {
		if _, err := conn.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("apply %s: %v", m.Name, err)
		}
		if _, err := conn.Exec(ctx, qRecordMigration, m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range rows {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	s := openTest(t, url)
	var got int
	if err := conn.QueryRow(ctx, "SELECT max(version) FROM schema_migrations").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != len(ms) {
		t.Fatalf("schema version %d after Open, want %d", got, len(ms))
	}
	return s
}

// TestConcurrentOpen opens one fresh database from several stores at once:
// the advisory lock makes them migrate one after another.
func TestConcurrentOpen(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t, serverURL)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := Open(t.Context(), url, nil)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	if _, err := Open(t.Context(), "postgres://user:secret@[::1", nil); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("Open(bad URL) = %v, want an error that does not show the password", err)
	}
	if _, err := Open(t.Context(), serverURL+"&pool_max_conns=zero", nil); err == nil || !strings.Contains(err.Error(), "pool_max_conns") {
		t.Errorf("Open(pool_max_conns=zero) = %v", err)
	}
	s := openTest(t, pgtest.NewDatabase(t, serverURL)+"&pool_max_conns=1")
	if err := s.CreateJob(t.Context(), &store.Job{ID: "one-conn"}, nil); err != nil {
		t.Errorf("with one connection: %v", err)
	}
}

// TestGlobRegexp checks the glob translation against path.Match with Go's
// regexp, whose syntax agrees with PostgreSQL's for what the translation
// writes; the conformance suite checks it against PostgreSQL itself.
func TestGlobRegexp(t *testing.T) {
	t.Parallel()
	for glob, want := range map[string]string{
		"sim-*":       `^sim\-[^/]*$`,
		"a?b":         `^a[^/]b$`,
		`a\*[^x-z\]]`: `^a\*[^x-z\]]$`,
		"ü.%_":        `^ü\.\%\_$`,
	} {
		toks, err := storesql.ParseGlob(glob)
		if err != nil {
			t.Fatal(err)
		}
		if got := globRegexp(toks); got != want {
			t.Errorf("globRegexp(%q) = %q, want %q", glob, got, want)
		}
	}

	// Random globs and keys over a small alphabet full of special cases.
	rng := rand.New(rand.NewPCG(3, 4))
	const alphabet = "ab/-^]\\[*?.%_ü"
	pick := func(n int) string {
		r := []rune(alphabet)
		var b strings.Builder
		for range rng.IntN(n) {
			b.WriteRune(r[rng.IntN(len(r))])
		}
		return b.String()
	}
	valid, matched := 0, 0
	for range 20000 {
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
		re, err := regexp.Compile(globRegexp(toks))
		if err != nil {
			t.Fatalf("glob %q: regexp %q: %v", glob, globRegexp(toks), err)
		}
		if got := re.MatchString(key); got != want {
			t.Fatalf("glob %q, key %q: regexp %q says %v, path.Match %v", glob, key, globRegexp(toks), got, want)
		}
	}
	if valid < 4000 || matched < 1000 {
		t.Fatalf("only %d well-formed globs, %d matches: the generator needs work", valid, matched)
	}
}

func TestHistoryConformance(t *testing.T) {
	t.Parallel()
	storetest.ExerciseHistory(t, func(t *testing.T) store.Store {
		return openTest(t, pgtest.NewDatabase(t, serverURL))
	})
}

func TestRetentionConformance(t *testing.T) {
	t.Parallel()
	storetest.ExerciseRetention(t, func(t *testing.T) store.Store {
		return openTest(t, pgtest.NewDatabase(t, serverURL))
	})
}

func TestNotifyConformance(t *testing.T) {
	t.Parallel()
	storetest.ExerciseNotify(t, func(t *testing.T) store.Store {
		return openTest(t, pgtest.NewDatabase(t, serverURL))
	})
}
