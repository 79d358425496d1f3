// Package pgtest starts throwaway PostgreSQL servers for tests and
// benchmarks: initdb into a directory, a postgres process listening on a
// unix socket in that directory only (no TCP port), trust authentication,
// fsync on. It needs the PostgreSQL server binaries (by default those of
// PostgreSQL 15 under /usr/lib/postgresql/15/bin; PGTEST_BIN_DIR overrides)
// and imports only the standard library and pgx.
//
// A test package that needs many databases starts one server in TestMain
// with StartServer and gives each test its own database with NewDatabase;
// a lone test calls Start.
//
// Leaks: postgres runs as a direct child of the test process, in its own
// process group, with a parent-death signal (SIGQUIT, PostgreSQL's
// immediate shutdown) so that it goes away with the test binary even when
// that is killed with SIGKILL. The server's directory is removed by Start's
// cleanup; after a SIGKILL nothing removes it (it lies in the system's
// temporary directory, named pgtest-*).
//
// When the test runs as root, initdb and postgres (which refuse to run as
// root) run as the "postgres" user, and the server's directory is handed to
// that user.
package pgtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultBinDir is where the PostgreSQL 15 server binaries are looked for
// when PGTEST_BIN_DIR is not set.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// readyLine is what postgres logs once it accepts connections.
const readyLine = "database system is ready to accept connections"

// maxSocketPath is the longest unix socket path Linux accepts (108 bytes
// with the terminating NUL).
const maxSocketPath = 107

// startTimeout bounds initdb and server start when the caller's context
// has no deadline.
const startTimeout = 2 * time.Minute

// Server is a running PostgreSQL server started by StartServer.
type Server struct {
	dir     string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when postgres has exited
	waitErr error         // set before done is closed

	logMu   sync.Mutex
	logTail []string // the last lines of the server log

	stopOnce sync.Once
	stopErr  error
}

// StartServer starts a PostgreSQL server whose data, socket and log live in
// dir (created if missing): the cluster in dir/data (initialised by initdb
// unless it already holds one, so a stopped server can be started again on
// the same directory, which runs crash recovery after Stop or Kill), the
// socket in dir and the log in dir/postgres.log. The superuser is
// "postgres", authentication is trust, and the server keeps fsync on. dir
// must be short enough for a socket path (about 90 bytes) and, when running
// as root, reachable by the postgres user. The caller stops the server with
// Stop and removes dir.
func StartServer(ctx context.Context, dir string) (*Server, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("pgtest: server directory: %w", err)
	}
	if n := len(dir) + len("/.s.PGSQL.5432"); n > maxSocketPath {
		return nil, fmt.Errorf("pgtest: server directory %s is too long for a unix socket path (%d bytes, at most %d)", dir, n, maxSocketPath)
	}
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pgtest: create server directory: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pgtest: server directory: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("pgtest: hand server directory to the postgres user: %w", err)
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}

	data := filepath.Join(dir, "data")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := initdb(ctx, bin, data, cred); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("pgtest: inspect data directory: %w", err)
	}

	s := &Server{dir: dir, logPath: filepath.Join(dir, "postgres.log"), done: make(chan struct{})}
	if err := s.start(ctx, bin, data, cred); err != nil {
		return nil, err
	}
	return s, nil
}

// binDir finds the directory of the PostgreSQL server binaries.
func binDir() (string, error) {
	dir := os.Getenv("PGTEST_BIN_DIR")
	if dir == "" {
		dir = DefaultBinDir
	}
	for _, name := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("pgtest: PostgreSQL server binary %s not found in %s (install PostgreSQL 15 or set PGTEST_BIN_DIR): %w", name, dir, err)
		}
	}
	return dir, nil
}

// serverCredential returns the postgres user's credential when running as
// root, and nil otherwise.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root, and PostgreSQL refuses to run as root; need a postgres user: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: postgres user id %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: postgres group id %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// serverEnv is the environment of initdb and postgres: the test's, without
// libpq variables that could point them elsewhere, in the C locale.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "LANG=C")
}

func initdb(ctx context.Context, bin, data string, cred *syscall.Credential) error {
	// --no-sync only skips flushing the fresh cluster's files at the end of
	// initdb (they survive anything but an OS crash); the server itself
	// runs with fsync on.
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"--pgdata="+data, "--username=postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	cmd.Env = serverEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgtest: initdb %s: %w\n%s", data, err, out.Bytes())
	}
	return nil
}

// start runs postgres and returns once it accepts connections.
func (s *Server) start(ctx context.Context, bin, data string, cred *syscall.Credential) error {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: open server log: %w", err)
	}
	// postgres logs to stderr, which this process reads: that is how it
	// learns, without polling, that the server is ready.
	cmd := exec.Command(filepath.Join(bin, "postgres"),
		"-D", data,
		"-k", s.dir,
		"-c", "listen_addresses=",
		"-c", "fsync=on",
		"-c", "synchronous_commit=on",
		"-c", "logging_collector=off",
		"-c", "log_destination=stderr",
		"-c", "lc_messages=C",
		"-c", "max_connections=200",
		"-c", "shared_buffers=64MB",
	)
	cmd.Env = serverEnv()
	// Own process group, so a terminal's Ctrl-C does not reach it and Kill
	// can take down its backends too; SIGQUIT (immediate shutdown) when the
	// process that started it dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logFile.Close()
		return fmt.Errorf("pgtest: %w", err)
	}
	cmd.Stdout = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	s.cmd = cmd

	ready := make(chan struct{})
	go func() {
		defer close(s.done)
		defer logFile.Close()
		s.follow(stderr, logFile, ready)
		s.waitErr = cmd.Wait()
	}()

	select {
	case <-ready:
		return nil
	case <-s.done:
		return fmt.Errorf("pgtest: postgres exited before accepting connections (%v); log %s ends:\n%s", s.waitErr, s.logPath, s.tail())
	case <-ctx.Done():
		_ = s.Kill()
		return fmt.Errorf("pgtest: waiting for postgres to accept connections: %w; log %s ends:\n%s", ctx.Err(), s.logPath, s.tail())
	}
}

// follow copies the server's log lines to w, keeps the last ones for error
// messages, and closes ready when the server says it is ready.
func (s *Server) follow(r io.Reader, w io.Writer, ready chan struct{}) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	signalled := false
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(w, line)
		s.logMu.Lock()
		s.logTail = append(s.logTail, line)
		if len(s.logTail) > 40 {
			s.logTail = s.logTail[len(s.logTail)-20:]
		}
		s.logMu.Unlock()
		if !signalled && strings.Contains(line, readyLine) {
			signalled = true
			close(ready)
		}
	}
	// Keep draining on a scanner error (an over-long line) so that
	// postgres never blocks writing its log.
	_, _ = io.Copy(w, r)
}

func (s *Server) tail() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return strings.Join(s.logTail, "\n")
}

// Dir returns the server's directory.
func (s *Server) Dir() string { return s.dir }

// URL returns a connection URL for the server's "postgres" database as the
// superuser.
func (s *Server) URL() string { return s.DatabaseURL("postgres") }

// DatabaseURL returns a connection URL for database name on the server.
func (s *Server) DatabaseURL(name string) string {
	q := url.Values{"host": {s.dir}, "user": {"postgres"}, "sslmode": {"disable"}}
	u := url.URL{Scheme: "postgres", Path: "/" + name, RawQuery: q.Encode()}
	return u.String()
}

// Stop shuts the server down the way `pg_ctl stop -m immediate` does (it
// sends SIGQUIT: no checkpoint, so the next start runs crash recovery) and
// waits for it to exit. It leaves the directory in place. It is idempotent.
func (s *Server) Stop() error { return s.stop(syscall.SIGQUIT) }

// Kill kills the server and its backends with SIGKILL, as a crash would,
// and waits for it to exit. It is idempotent, and a no-op after Stop.
func (s *Server) Kill() error { return s.stop(syscall.SIGKILL) }

func (s *Server) stop(sig syscall.Signal) error {
	s.stopOnce.Do(func() {
		pid := s.cmd.Process.Pid
		if sig == syscall.SIGKILL {
			_ = syscall.Kill(-pid, sig) // the whole process group
		} else {
			_ = syscall.Kill(pid, sig)
		}
		timer := time.NewTimer(30 * time.Second)
		defer timer.Stop()
		select {
		case <-s.done:
		case <-timer.C:
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-s.done
			s.stopErr = fmt.Errorf("pgtest: postgres did not stop on %v within 30s; killed", sig)
		}
	})
	return s.stopErr
}

// Start starts a throwaway server for the test in a fresh directory under
// the system's temporary directory, stops it and removes the directory when
// the test ends, and returns the URL of its "postgres" database. Tests that
// each need a clean database on a shared server use NewDatabase instead.
func Start(t testing.TB) string {
	t.Helper()
	dir, err := MkdirTemp()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s, err := StartServer(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s.URL()
}

// MkdirTemp creates a fresh directory for a server, short enough for a
// socket path and traversable by other users (mode 0755), under the
// system's temporary directory (or /tmp when that path is too long). The
// caller removes it.
func MkdirTemp() (string, error) {
	parent := os.TempDir()
	if len(parent) > 60 {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, "pgtest-")
	if err != nil {
		return "", fmt.Errorf("pgtest: create server directory: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("pgtest: server directory: %w", err)
	}
	return dir, nil
}

var dbSeq atomic.Int64

// NewDatabase creates a fresh, empty database on the server that serverURL
// points at (as returned by Start or Server.URL), drops it when the test
// ends, and returns its URL.
func NewDatabase(t testing.TB, serverURL string) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	dbURL, err := CreateDatabase(t.Context(), serverURL, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := DropDatabase(ctx, serverURL, name); err != nil {
			t.Error(err)
		}
	})
	return dbURL
}

// CreateDatabase creates database name (letters, digits and underscores)
// on the server that serverURL points at and returns its URL.
func CreateDatabase(ctx context.Context, serverURL, name string) (string, error) {
	if err := checkDatabaseName(name); err != nil {
		return "", err
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", fmt.Errorf("pgtest: server URL: %w", err)
	}
	if err := adminExec(ctx, serverURL, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// DropDatabase drops database name, closing its open connections.
func DropDatabase(ctx context.Context, serverURL, name string) error {
	if err := checkDatabaseName(name); err != nil {
		return err
	}
	if err := adminExec(ctx, serverURL, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgtest: drop database %s: %w", name, err)
	}
	return nil
}

func checkDatabaseName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("pgtest: database name %q: want 1 to 63 characters", name)
	}
	for i, c := range name {
		if !(c == '_' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9') {
			return fmt.Errorf("pgtest: database name %q: want lower-case letters, digits and underscores, starting with a letter or underscore", name)
		}
	}
	return nil
}

func adminExec(ctx context.Context, serverURL, sql string) error {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}
