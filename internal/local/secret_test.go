package local

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/runner"
)

// TestWorkerSecretInEnvironment: the taskhost gets the worker's credential
// in HAUL_WORKER_SECRET, and not on its command line, which every user
// sees in ps; its tier on the command line and its locator in
// HAUL_LOCATOR.
func TestWorkerSecretInEnvironment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "seen")
	exited := make(chan string, 1)
	b, err := New(Config{
		Command:   []string{"/bin/sh", "-c", `printf '%s\n%s\n%s\n' "$HAUL_WORKER_SECRET" "$HAUL_LOCATOR" "$*" > "$0.tmp" && mv "$0.tmp" "$0"`, out},
		Dir:       filepath.Join(dir, "workers"),
		NoCgroups: true,
		Exited:    func(id, _ string) { exited <- id },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	spec := runner.WorkerSpec{ID: "w1", JobID: "j1", RunnerURL: "http://127.0.0.1:1", BlobURL: "file:///nonexistent", Secret: "the-worker-secret",
		TierIndex: 2, LocatorURL: "http://127.0.0.1:2"}
	if err := b.StartWorker(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(waitLimit):
		t.Fatal("the worker did not exit")
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(data), "\n", 3)
	if len(lines) != 3 {
		t.Fatalf("the fake taskhost wrote %q", data)
	}
	env, locator, args := lines[0], lines[1], lines[2]
	if env != spec.Secret {
		t.Errorf("HAUL_WORKER_SECRET = %q, want the worker's secret", env)
	}
	if locator != spec.LocatorURL {
		t.Errorf("HAUL_LOCATOR = %q, want %q", locator, spec.LocatorURL)
	}
	if strings.Contains(args, spec.Secret) || !strings.Contains(args, "--worker-id w1") || !strings.Contains(args, "--tier 2 ") {
		t.Errorf("taskhost arguments %q: want the worker ID, its tier and not its secret", args)
	}
}
