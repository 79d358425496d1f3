package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProfileFileModes: a file holding a token is written 0600, and one
// others may read is refused while it holds a token (not without one).
func TestProfileFileModes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "haul", "config.yaml")
	p := &profiles{Current: "a", Profiles: map[string]*profile{"a": {Server: "http://h:1", Token: "secret-token", Team: "ml"}}}
	if err := p.save(path); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("saved with mode %v (%v); want 0600", st.Mode(), err)
	}
	got, err := loadProfiles(path)
	if err != nil || got.Current != "a" || got.Profiles["a"].Token != "secret-token" || got.Profiles["a"].Team != "ml" {
		t.Fatalf("load: %+v %v", got, err)
	}
	os.Chmod(path, 0o640)
	if _, err := loadProfiles(path); err == nil || !strings.Contains(err.Error(), "chmod 600") || strings.Contains(err.Error(), "secret-token") {
		t.Fatalf("a group-readable file with a token: %v", err)
	}
	os.WriteFile(path, []byte("profiles:\n  b: {server: http://h:2}\n"), 0o644)
	if got, err := loadProfiles(path); err != nil || got.Profiles["b"].Server != "http://h:2" {
		t.Fatalf("a world-readable file without tokens: %+v %v", got, err)
	}
	if got, err := loadProfiles(filepath.Join(dir, "none.yaml")); err != nil || len(got.Profiles) != 0 {
		t.Fatalf("no file: %+v %v", got, err)
	}
}

// TestProfileCommands: set, list, use, and an unknown profile is a usage
// error (exit 2).
func TestProfileCommands(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("HAUL_PROFILE", "")
	t.Setenv("HAUL_SERVER", "")
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Main(args, strings.NewReader(""), &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, _, e := run("profile", "set", "one", "--server", "http://127.0.0.1:1", "--team", "t1"); code != 0 {
		t.Fatalf("set one: %d %s", code, e)
	}
	if code, _, e := run("profile", "set", "two", "--server", "http://127.0.0.1:2"); code != 0 {
		t.Fatalf("set two: %d %s", code, e)
	}
	code, out, _ := run("profile", "list")
	if code != 0 || !strings.Contains(out, "*        one") && !strings.Contains(out, "*") || !strings.Contains(out, "two") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	if code, _, e := run("profile", "use", "three"); code != 2 || !strings.Contains(e, `profile "three"`) {
		t.Fatalf("use three: %d %s", code, e)
	}
	if code, _, e := run("--profile", "nope", "job", "list"); code != 2 || !strings.Contains(e, `profile "nope"`) {
		t.Fatalf("--profile nope: %d %s", code, e)
	}
	if code, _, e := run("profile", "use", "two"); code != 0 {
		t.Fatalf("use two: %d %s", code, e)
	}
	p, err := loadProfiles(configPath())
	if err != nil || p.Current != "two" || p.Profiles["one"].Team != "t1" {
		t.Fatalf("file after use: %+v %v", p, err)
	}
}

// TestPrefixWriter: lines of several tasks, written in pieces, come out
// whole, each prefixed by its key; a last line without a newline gets one.
func TestPrefixWriter(t *testing.T) {
	var b bytes.Buffer
	pw := &prefixWriter{out: &b}
	wa, fa := pw.lines("a")
	wb, fb := pw.lines("b")
	wa([]byte("one\ntw"))
	wb([]byte("x"))
	wa([]byte("o\nthree"))
	wb([]byte("y\n"))
	fa()
	fb()
	if want := "a | one\na | two\nb | xy\na | three\n"; b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
}

// TestProfileSkipsServers: a broken configuration file does not stop the
// commands that talk to no server through a profile (a worker's taskhost
// runs as the user).
func TestProfileSkipsServers(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv("HAUL_PROFILE", "")
	os.MkdirAll(filepath.Join(dir, "haul"), 0o700)
	os.WriteFile(filepath.Join(dir, "haul", "config.yaml"), []byte("current: a\nprofiles:\n  a: {server: http://127.0.0.1:1, token: x}\n"), 0o644)
	var out, errb bytes.Buffer
	if code := Main([]string{"job", "list"}, strings.NewReader(""), &out, &errb); code == 0 || !strings.Contains(errb.String(), "chmod 600") {
		t.Fatalf("job list with a world-readable token file: %d %s", code, errb.String())
	}
	errb.Reset()
	// haul up gets past the profile to its own checks (here: listening
	// beyond loopback needs TLS).
	code := Main([]string{"up", "--listen", "0.0.0.0:0", "--data", t.TempDir()}, strings.NewReader(""), &out, &errb)
	if code == 0 || strings.Contains(errb.String(), "chmod 600") || !strings.Contains(errb.String(), "tls") {
		t.Fatalf("haul up with a broken config: %d %s", code, errb.String())
	}
}
