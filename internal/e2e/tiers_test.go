package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/cgroup"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

// TestTiersExample runs examples/tiers.yaml on the local backend with real
// memory limits: the two tasks that allocate 300 MiB are killed by the
// kernel on the 128 MiB tier, read from the worker's cgroup, and succeed on
// the 1 GiB tier without using a retry (the job has retries: 0); the others
// succeed on the first tier. After the server stops, no cgroup is left.
func TestTiersExample(t *testing.T) {
	t.Parallel()
	s := startUp(t, freePort(t), t.TempDir(), "")
	env := []string{"HAUL_SERVER=" + s.url()}
	r := haul(t, env, "run", "examples/tiers.yaml")
	if r.code != 0 {
		t.Fatalf("haul run examples/tiers.yaml: exit %d\nstdout: %s\nstderr: %s\nserver: %s", r.code, r.stdout, r.stderr, s.log)
	}
	id := strings.SplitN(r.stdout, "\n", 2)[0]
	c := s.client()
	ctx := context.Background()
	for i := range 10 {
		key := fmt.Sprintf("load-%d", i)
		resp, err := c.GetTask(ctx, connect.NewRequest(&apiv1.GetTaskRequest{JobId: id, Key: key}))
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		atts := resp.Msg.Attempts
		big := i == 3 || i == 7
		if !big {
			if len(atts) != 1 || atts[0].State != "succeeded" || atts[0].Tier != "small" {
				t.Fatalf("%s: want one success on tier small, got %v", key, atts)
			}
			if p := atts[0].PeakRssBytes; p <= 0 || p >= 128<<20 {
				t.Errorf("%s: peak RSS %d, want between 0 and 128 MiB", key, p)
			}
			continue
		}
		if len(atts) != 2 {
			t.Fatalf("%s: want 2 attempts (oom on small, success on big), got %d: %v", key, len(atts), atts)
		}
		oom, ok := atts[0], atts[1]
		if !oom.Oom || oom.Reason != "oom" || oom.State != "failed" || oom.Tier != "small" {
			t.Errorf("%s attempt 1: want an oom failure on tier small, got %v", key, oom)
		}
		if oom.Enforcement != "cgroup-v1" && oom.Enforcement != "cgroup-v2" {
			t.Errorf("%s attempt 1: enforcement %q, want the worker's cgroup to have enforced the limit", key, oom.Enforcement)
		}
		if oom.MemoryRequestBytes != 128<<20 {
			t.Errorf("%s attempt 1: memory request %d, want 128 MiB", key, oom.MemoryRequestBytes)
		}
		if ok.State != "succeeded" || ok.Tier != "big" || ok.Oom {
			t.Errorf("%s attempt 2: want a success on tier big, got %v", key, ok)
		}
		if ok.PeakRssBytes < 300<<20 {
			t.Errorf("%s attempt 2: peak RSS %d, want at least the 300 MiB it allocated", key, ok.PeakRssBytes)
		}
		if ok.CpuUserSeconds+ok.CpuSystemSeconds <= 0 {
			t.Errorf("%s attempt 2: no CPU time recorded: %v", key, ok)
		}
		if resp.Msg.Task.Tier != "big" {
			t.Errorf("%s: runs on tier %q now, want big", key, resp.Msg.Task.Tier)
		}
	}
	j, err := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
	if err != nil {
		t.Fatal(err)
	}
	u := j.Msg.Job.Usage
	if u.GetOomAttempts() != 2 || u.GetPeakRssBytes() < 300<<20 {
		t.Errorf("job usage: want 2 oom attempts and a peak of at least 300 MiB, got %v", u)
	}
	if u.GetMemoryRequestedByteSeconds() <= u.GetMemoryUsedByteSeconds() || u.GetMemoryUsedByteSeconds() <= 0 {
		t.Errorf("job usage: want 0 < used < requested memory, got %v", u)
	}
	r = haul(t, env, "job", "get", id)
	if r.code != 0 || !strings.Contains(r.stdout, "RESOURCE") || !strings.Contains(r.stdout, "out of memory: 2") {
		t.Errorf("haul job get: want the requested-versus-used table with 2 OOM kills:\n%s\n%s", r.stdout, r.stderr)
	}
	r = haul(t, env, "task", "get", id, "load-3")
	if r.code != 0 || !strings.Contains(r.stdout, "oom") || !strings.Contains(r.stdout, "128Mi cgroup-") {
		t.Errorf("haul task get load-3: want the oom attempt with its enforced limit:\n%s\n%s", r.stdout, r.stderr)
	}

	// The server's cgroups go with it.
	pid := s.cmd.Process.Pid
	s.stop()
	self, err := cgroup.Self("/")
	if err != nil {
		t.Fatalf("find this test's cgroup: %v", err)
	}
	// Under this test's own group (where the server made them), and under
	// the hierarchies' roots (where it would have without permission).
	for _, dir := range []string{self.Path(), "/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		p := filepath.Join(dir, "haul", cgroup.Owner(pid))
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s left behind after the server stopped (stat: %v)", p, err)
		}
	}
}

// TestReuseTargeting runs a job of many 10 ms tasks and a job of long tasks
// side by side, each allowed 6 workers: reuse targeting keeps the short job
// on a worker or two (a start costs more than the work it would take over)
// and scales the long job out to its max_workers.
func TestReuseTargeting(t *testing.T) {
	t.Parallel()
	s := startUp(t, freePort(t), t.TempDir(), "", "--max-workers", "12")
	env := []string{"HAUL_SERVER=" + s.url()}
	short := writeSpec(t, `
name: short
namespace: short-tasks
max_workers: 6
tasks:
  - key: "s-{i}"
    foreach: {range: [0, 300]}
    command: [sleep, "0.01"]
`)
	long := writeSpec(t, `
name: long
namespace: long-tasks
max_workers: 6
tasks:
  - key: "l-{i}"
    foreach: {range: [0, 12]}
    command: [sleep, "3"]
`)
	ids := make(chan string, 2)
	errs := make(chan error, 2)
	for _, spec := range []string{short, long} {
		go func() {
			r := haul(t, env, "run", spec)
			if r.code != 0 {
				errs <- fmt.Errorf("haul run %s: exit %d\n%s\n%s", spec, r.code, r.stdout, r.stderr)
				return
			}
			ids <- strings.SplitN(r.stdout, "\n", 2)[0]
		}()
	}
	workers := map[string]int{}
	for range 2 {
		select {
		case err := <-errs:
			t.Fatal(err)
		case id := <-ids:
			name, n := distinctWorkers(t, s, id)
			workers[name] = n
		case <-time.After(5 * time.Minute):
			t.Fatal("jobs did not finish in 5 minutes")
		}
	}
	t.Logf("workers used: short %d, long %d", workers["short"], workers["long"])
	if workers["short"] > 2 {
		t.Errorf("the job of 300 10-ms tasks used %d workers, want at most 2", workers["short"])
	}
	if workers["long"] != 6 {
		t.Errorf("the job of 12 3-second tasks used %d workers, want its max_workers, 6", workers["long"])
	}
}

// distinctWorkers returns a job's name and how many workers ran its attempts.
func distinctWorkers(t *testing.T, s *upServer, id string) (string, int) {
	t.Helper()
	c := s.client()
	ctx := context.Background()
	j, err := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	tasks, err := c.ListTasks(ctx, connect.NewRequest(&apiv1.ListTasksRequest{JobId: id, PageSize: 1000}))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks.Msg.Tasks {
		resp, err := c.GetTask(ctx, connect.NewRequest(&apiv1.GetTaskRequest{JobId: id, Key: task.Key}))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range resp.Msg.Attempts {
			seen[a.WorkerId] = true
		}
	}
	return j.Msg.Job.Name, len(seen)
}
