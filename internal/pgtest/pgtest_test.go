package pgtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func query(t *testing.T, dbURL, sql string) string {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect %s: %v", dbURL, err)
	}
	defer conn.Close(context.Background())
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func execSQL(t *testing.T, dbURL, sql string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatalf("connect %s: %v", dbURL, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TestServerLifecycle starts a server, writes, stops it (immediate
// shutdown), starts it again on the same directory, reads what was
// committed, kills it like a crash, and reads it once more.
func TestServerLifecycle(t *testing.T) {
	t.Parallel()
	dir, err := MkdirTemp()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	s, err := StartServer(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := query(t, s.URL(), "SHOW server_version_num"); !strings.HasPrefix(got, "15") {
		t.Errorf("server_version_num = %s, want PostgreSQL 15", got)
	}
	if got := query(t, s.URL(), "SHOW fsync"); got != "on" {
		t.Errorf("fsync = %s, want on", got)
	}
	if got := query(t, s.URL(), "SHOW listen_addresses"); got != "" {
		t.Errorf("listen_addresses = %q, want none (unix socket only)", got)
	}
	db, err := CreateDatabase(t.Context(), s.URL(), "lifecycle")
	if err != nil {
		t.Fatal(err)
	}
	execSQL(t, db, "CREATE TABLE kv (k text PRIMARY KEY, v text); INSERT INTO kv VALUES ('a', 'before stop')")
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}

	s, err = StartServer(t.Context(), dir)
	if err != nil {
		t.Fatalf("restart after Stop: %v", err)
	}
	if got := query(t, db, "SELECT v FROM kv WHERE k = 'a'"); got != "before stop" {
		t.Errorf("after restart: %q", got)
	}
	execSQL(t, db, "INSERT INTO kv VALUES ('b', 'before kill')")
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}

	s, err = StartServer(t.Context(), dir)
	if err != nil {
		t.Fatalf("restart after Kill: %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	if got := query(t, db, "SELECT string_agg(v, ',' ORDER BY k) FROM kv"); got != "before stop,before kill" {
		t.Errorf("after crash recovery: %q", got)
	}
	if err := DropDatabase(t.Context(), s.URL(), "lifecycle"); err != nil {
		t.Fatal(err)
	}
}

func TestStartAndNewDatabase(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	a, b := NewDatabase(t, srv), NewDatabase(t, srv)
	if a == b {
		t.Fatalf("two databases with one URL %s", a)
	}
	execSQL(t, a, "CREATE TABLE only_in_a (x int)")
	if got := query(t, b, "SELECT count(*)::text FROM pg_tables WHERE tablename = 'only_in_a'"); got != "0" {
		t.Errorf("table of database a visible in database b")
	}
	if got := query(t, a, "SELECT current_database()"); !strings.HasPrefix(got, "t") {
		t.Errorf("current_database() = %q", got)
	}
}

func TestStartServerErrors(t *testing.T) {
	t.Parallel()
	long := filepath.Join(os.TempDir(), strings.Repeat("x", 120))
	if _, err := StartServer(t.Context(), long); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("StartServer(too long a directory) = %v, want an error saying so", err)
	}
	for _, name := range []string{"", "Bad", "a-b", "1abc", "x; DROP DATABASE postgres", strings.Repeat("a", 64)} {
		if _, err := CreateDatabase(t.Context(), "postgres:///postgres?host=/nonexistent", name); err == nil || !strings.Contains(err.Error(), "database name") {
			t.Errorf("CreateDatabase(%q) = %v, want an error about the name", name, err)
		}
	}
}
