package gpu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const waitLimit = 10 * time.Second

// Outputs as drivers 535 to 570 print them.
const (
	gpusOut = "0, GPU-4aa494b9-9659-a279-8cc5-12c1c9fbf439, NVIDIA H100 80GB HBM3\n" +
		"1, GPU-0c5d9a8e-1b2f-4e6a-9c3d-7f8e9a0b1c2d, NVIDIA A100-SXM4-40GB\n"
	appsOut = "12345, GPU-4aa494b9-9659-a279-8cc5-12c1c9fbf439, 1024\n" +
		"12346, GPU-0c5d9a8e-1b2f-4e6a-9c3d-7f8e9a0b1c2d, 2048\n" +
		"99999, GPU-4aa494b9-9659-a279-8cc5-12c1c9fbf439, 4096\n" +
		"12347, GPU-4aa494b9-9659-a279-8cc5-12c1c9fbf439, [N/A]\n"
	pmonOut = "# gpu         pid   type     sm    mem    enc    dec    jpg    ofa    command \n" +
		"# Idx           #    C/G      %      %      %      %      %      %    name \n" +
		"    0      12345     C     60     40      -      -      -      -    python         \n" +
		"    0      12347   C+G     50      1      -      -      -      -    my tool        \n" +
		"    1      12346     C      -      -      -      -      -      -    python         \n" +
		"    0      99999     C     10      5      -      -      -      -    other          \n" +
		"    1          -     -      -      -      -      -      -      -    -              \n"
	// An older driver: no jpg and ofa columns, sm after more columns.
	pmonOld = "# gpu        pid  type    sm   mem   enc   dec   command\n" +
		"# Idx          #   C/G     %     %     %     %   name\n" +
		"    0      4711     C    95    40     0     0   train.py\n"
)

func TestParse(t *testing.T) {
	t.Parallel()
	devs, err := parseGPUs(gpusOut)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0] != (Device{0, "GPU-4aa494b9-9659-a279-8cc5-12c1c9fbf439", "NVIDIA H100 80GB HBM3"}) || devs[1].Index != 1 {
		t.Fatalf("gpus %+v", devs)
	}
	apps, err := parseComputeApps(appsOut)
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 4 || apps[0] != (ProcessMemory{12345, "GPU-4aa494b9-9659-a279-8cc5-12c1c9fbf439", 1 << 30}) || apps[3].UsedBytes != -1 {
		t.Fatalf("apps %+v", apps)
	}
	if apps, err := parseComputeApps("No running processes found\n"); err != nil || len(apps) != 0 {
		t.Fatalf("no apps: %+v, %v", apps, err)
	}
	rows, err := parsePmon(pmonOut)
	if err != nil {
		t.Fatal(err)
	}
	want := []ProcessUtil{{0, 12345, 60, true}, {0, 12347, 50, true}, {1, 12346, 0, false}, {0, 99999, 10, true}}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("pmon %+v", rows)
	}
	rows, err = parsePmon(pmonOld)
	if err != nil || len(rows) != 1 || rows[0] != (ProcessUtil{0, 4711, 95, true}) {
		t.Fatalf("old pmon %+v, %v", rows, err)
	}
	for _, bad := range []string{"x, y\n", "a, GPU-1, name\n"} {
		if _, err := parseGPUs(bad); err == nil {
			t.Errorf("gpus %q: no error", bad)
		}
	}
	for _, bad := range []string{"1, GPU-1\n", "x, GPU-1, 3\n"} {
		if _, err := parseComputeApps(bad); err == nil {
			t.Errorf("apps %q: no error", bad)
		}
	}
	for _, bad := range []string{"    0  1  C  5\n", "# gpu pid type sm\n 0 1\n", "# gpu pid type sm\n x 1 C 5\n", "# gpu pid type sm\n 0 1 C lots\n"} {
		if _, err := parsePmon(bad); err == nil {
			t.Errorf("pmon %q: no error", bad)
		}
	}
}

// fakeSMI writes a fake nvidia-smi that prints the outputs above.
func fakeSMI(t *testing.T, dir string) string {
	t.Helper()
	for name, content := range map[string]string{"gpus": gpusOut, "apps": appsOut, "pmon": pmonOut} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script := "#!/bin/sh\nd=" + dir + "\ncase \"$1\" in\n" +
		"--query-gpu=index,uuid,name) cat $d/gpus ;;\n" +
		"--query-compute-apps=pid,gpu_uuid,used_memory) cat $d/apps ;;\n" +
		"pmon) cat $d/pmon ;;\n" +
		"*) echo \"bad args: $*\" >&2; exit 2 ;;\nesac\n"
	p := filepath.Join(dir, "nvidia-smi")
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// pidsAfter returns a pids function that returns pids and signals on its
// n-th call, when n-1 samples are done.
func pidsAfter(n int, pids ...int) (func() []int, <-chan struct{}) {
	var calls atomic.Int32
	ch := make(chan struct{})
	return func() []int {
		if int(calls.Add(1)) == n {
			close(ch)
		}
		return pids
	}, ch
}

func wait(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatal("no sample within the time limit")
	}
}

// Not parallel: it sets PATH.
func TestFakeNvidiaSMIInPath(t *testing.T) {
	dir := t.TempDir()
	fakeSMI(t, dir)
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	ctx := context.Background()
	s, err := Detect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if devs := s.Devices(); len(devs) != 2 || devs[1].Name != "NVIDIA A100-SXM4-40GB" {
		t.Fatalf("devices %+v", devs)
	}
	pids, sampled := pidsAfter(2, 12345, 12346, 12347)
	sp := s.Start(ctx, pids, 5*time.Millisecond)
	wait(t, sampled)
	usage, note := sp.Stop()
	want := []Usage{
		// 12345 and 12347 on GPU 0: 1 GiB (the other's memory unknown),
		// 60+50% SM capped at 100.
		{Index: 0, Name: "NVIDIA H100 80GB HBM3", PeakMemoryBytes: 1 << 30, AvgUtilizationPercent: 100},
		// 12346 on GPU 1: 2 GiB, no utilization value.
		{Index: 1, Name: "NVIDIA A100-SXM4-40GB", PeakMemoryBytes: 2 << 30},
	}
	if note != "" || !reflect.DeepEqual(usage, want) {
		t.Fatalf("usage %+v, note %q", usage, note)
	}
	if u2, n2 := sp.Stop(); !reflect.DeepEqual(u2, usage) || n2 != note {
		t.Fatal("second Stop differs")
	}

	// Processes that use no GPU.
	pids, sampled = pidsAfter(2, 1)
	sp = s.Start(ctx, pids, 5*time.Millisecond)
	wait(t, sampled)
	if usage, note := sp.Stop(); len(usage) != 0 || note != "no GPU used" {
		t.Fatalf("no use: %+v, %q", usage, note)
	}
}

// Not parallel: it sets PATH.
func TestNoNvidiaSMI(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Detect(context.Background(), "")
	if !errors.Is(err, ErrNoGPU) || err.Error() != "no GPU: nvidia-smi not found" {
		t.Fatalf("Detect: %v", err)
	}
}

func TestFailingNvidiaSMI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "nvidia-smi")
	script := "#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\"\necho\nexit 9\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Detect(context.Background(), p)
	if !errors.Is(err, ErrNoGPU) || !strings.HasPrefix(err.Error(), "no GPU: nvidia-smi failed: NVIDIA-SMI has failed because it couldn't communicate") {
		t.Fatalf("Detect: %v", err)
	}
	empty := filepath.Join(dir, "empty-smi")
	if err := os.WriteFile(empty, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Detect(context.Background(), empty); !errors.Is(err, ErrNoGPU) || err.Error() != "no GPU: nvidia-smi lists no GPU" {
		t.Fatalf("Detect with no GPU listed: %v", err)
	}

	// A GPU that goes away after Detect: samples fail, the note says so.
	s, err := Detect(context.Background(), fakeSMI(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "apps"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pmon"), []byte("garbage line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pids, sampled := pidsAfter(2, 12345)
	sp := s.Start(context.Background(), pids, 5*time.Millisecond)
	wait(t, sampled)
	if usage, note := sp.Stop(); len(usage) != 0 || !strings.HasPrefix(note, "GPU sampling failed: nvidia-smi pmon: data before a header") {
		t.Fatalf("failing samples: %+v, %q", usage, note)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(gpusOut)
	f.Add(appsOut)
	f.Add(pmonOut)
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseGPUs(s)
		_, _ = parseComputeApps(s)
		_, _ = parsePmon(s)
	})
}
