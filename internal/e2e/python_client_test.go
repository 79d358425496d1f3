package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestPythonClient installs clients/python offline into a virtual
// environment (pip install --no-build-isolation, no index) and runs its
// unittest suite against a real `haul up` as the server's admin: the
// Python client end to end, as a user installs and calls it.
func TestPythonClient(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is needed to test clients/python: %v", err)
	}
	root := repoRoot(t)
	s := startUp(t, freePort(t), t.TempDir(), "")

	run := func(timeout time.Duration, env []string, name string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), env...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %v: %v\n%s\nserver log:\n%s", name, args, err, out.String(), s.log)
		}
		return out.String()
	}

	// A copy of the package, so that building it leaves nothing in the
	// repository (setuptools writes egg-info next to the sources).
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	run(time.Minute, nil, "cp", "-r", filepath.Join(root, "clients", "python"), src)
	venv := filepath.Join(tmp, "venv")
	run(2*time.Minute, nil, python, "-m", "venv", "--system-site-packages", venv)
	vpy := filepath.Join(venv, "bin", "python")
	quiet := []string{"PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_NO_INPUT=1"}
	run(5*time.Minute, quiet, vpy, "-m", "pip", "install", "--no-build-isolation", "--no-index", src)

	// The installed package, not the sources: PYTHONPATH is emptied and
	// the suite runs from outside the copy.
	env := []string{
		"PYTHONPATH=",
		"PYTHONDONTWRITEBYTECODE=1",
		"HAUL_SERVER=" + s.url(),
		"HAUL_API_TOKEN=" + s.token,
	}
	out := run(15*time.Minute, env, vpy, "-c", "import haul_client, sys; print(haul_client.__file__)")
	if !bytes.Contains([]byte(out), []byte(venv)) {
		t.Fatalf("haul_client imported from %s, not from the virtual environment %s", out, venv)
	}
	out = run(15*time.Minute, env, vpy, "-m", "unittest", "discover", "-s", filepath.Join(src, "tests"), "-t", filepath.Join(src, "tests"), "-v")
	t.Logf("python3 -m unittest:\n%s", out)
}
