// Package gpu reports what an attempt's processes used of the machine's
// NVIDIA GPUs: per GPU, the peak memory and the mean SM utilization of the
// attempt's processes, read from nvidia-smi.
//
// nvidia-smi rather than NVML: NVML is a C library, and loading it without
// cgo (github.com/ebitengine/purego) makes the binary dynamically linked,
// while the taskhost must stay static (see docs/design/006-notes-worker.md).
// Where nvidia-smi is missing or fails, Detect says why in one line ("no
// GPU: nvidia-smi not found"), which the taskhost reports as the attempt's
// GPU note.
//
// It imports the standard library only.
package gpu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrNoGPU is wrapped by Detect's error when there is no GPU to measure;
// the error's text ("no GPU: ...") is fit to show to users as is.
var ErrNoGPU = errors.New("no GPU")

// Device is one GPU.
type Device struct {
	Index int
	UUID  string
	Name  string
}

// ProcessMemory is one process's memory on one GPU (nvidia-smi
// --query-compute-apps).
type ProcessMemory struct {
	PID       int
	UUID      string
	UsedBytes int64
}

// ProcessUtil is one process's SM utilization on one GPU over nvidia-smi's
// last sampling window (nvidia-smi pmon).
type ProcessUtil struct {
	GPU int // the GPU's index
	PID int
	// SM is the percentage of the GPU's streaming multiprocessors' time the
	// process used; HasSM is false when nvidia-smi printed "-" (no value).
	SM    float64
	HasSM bool
}

// SMI runs nvidia-smi.
type SMI struct {
	path    string
	devices []Device
	// timeout bounds each nvidia-smi run.
	timeout time.Duration
}

// Detect finds nvidia-smi (path, or "nvidia-smi" in PATH when path is
// empty) and lists the GPUs. Without nvidia-smi, when it fails (no driver,
// no device) or lists no GPU, the error wraps ErrNoGPU and reads "no GPU:
// <why>".
func Detect(ctx context.Context, path string) (*SMI, error) {
	if path == "" {
		p, err := exec.LookPath("nvidia-smi")
		if err != nil {
			return nil, fmt.Errorf("%w: nvidia-smi not found", ErrNoGPU)
		}
		path = p
	}
	s := &SMI{path: path, timeout: 10 * time.Second}
	out, err := s.run(ctx, "--query-gpu=index,uuid,name", "--format=csv,noheader")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoGPU, err)
	}
	devs, err := parseGPUs(out)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoGPU, err)
	}
	if len(devs) == 0 {
		return nil, fmt.Errorf("%w: nvidia-smi lists no GPU", ErrNoGPU)
	}
	s.devices = devs
	return s, nil
}

// Devices returns the GPUs that Detect listed.
func (s *SMI) Devices() []Device { return slices.Clone(s.devices) }

// run runs nvidia-smi; an error carries the first line it printed.
func (s *SMI) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.path, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		return stdout.String(), nil
	}
	if ctx.Err() != nil {
		return "", fmt.Errorf("nvidia-smi %s: %w", args[0], ctx.Err())
	}
	// nvidia-smi prints its complaints on stdout as often as on stderr.
	why := firstLine(stderr.String())
	if why == "" {
		why = firstLine(stdout.String())
	}
	if why == "" {
		why = err.Error()
	}
	return "", fmt.Errorf("nvidia-smi failed: %s", why)
}

func firstLine(s string) string {
	for line := range strings.Lines(s) {
		if l := strings.TrimSpace(line); l != "" {
			return l
		}
	}
	return ""
}

// ComputeApps lists the processes that hold GPU memory.
func (s *SMI) ComputeApps(ctx context.Context) ([]ProcessMemory, error) {
	out, err := s.run(ctx, "--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv,noheader,nounits")
	if err != nil {
		return nil, err
	}
	return parseComputeApps(out)
}

// ProcessUtilization takes one sample of per-process utilization
// (nvidia-smi pmon -c 1 -s u).
func (s *SMI) ProcessUtilization(ctx context.Context) ([]ProcessUtil, error) {
	out, err := s.run(ctx, "pmon", "-c", "1", "-s", "u")
	if err != nil {
		return nil, err
	}
	return parsePmon(out)
}

// csvFields splits one line of nvidia-smi's CSV (", " between fields; it
// quotes nothing).
func csvFields(line string, n int) []string {
	f := strings.SplitN(line, ",", n)
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	return f
}

// parseGPUs parses --query-gpu=index,uuid,name --format=csv,noheader.
func parseGPUs(out string) ([]Device, error) {
	var devs []Device
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := csvFields(line, 3) // a name may contain a comma: it is last
		if len(f) != 3 {
			return nil, fmt.Errorf("nvidia-smi --query-gpu: malformed line %q", line)
		}
		idx, err := strconv.Atoi(f[0])
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi --query-gpu: bad index in %q", line)
		}
		devs = append(devs, Device{Index: idx, UUID: f[1], Name: f[2]})
	}
	return devs, nil
}

// parseComputeApps parses --query-compute-apps=pid,gpu_uuid,used_memory
// --format=csv,noheader,nounits (memory in MiB). A memory of "[N/A]" or
// "[Not Supported]" (MIG, some containers) is read as unknown: the entry
// is kept with UsedBytes -1 so that the GPU still counts as used.
func parseComputeApps(out string) ([]ProcessMemory, error) {
	var apps []ProcessMemory
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "No running") {
			continue
		}
		f := csvFields(line, 3)
		if len(f) != 3 {
			return nil, fmt.Errorf("nvidia-smi --query-compute-apps: malformed line %q", line)
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi --query-compute-apps: bad pid in %q", line)
		}
		used := int64(-1)
		if mib, err := strconv.ParseFloat(strings.TrimSuffix(f[2], " MiB"), 64); err == nil && mib >= 0 {
			used = int64(mib * (1 << 20))
		}
		apps = append(apps, ProcessMemory{PID: pid, UUID: f[1], UsedBytes: used})
	}
	return apps, nil
}

// parsePmon parses nvidia-smi pmon output. The columns vary with the
// driver (newer ones add jpg, ofa, fb, ccpm), so they are found by name in
// the header ("# gpu pid type sm mem ..."); "-" means no value, and a row
// whose pid is "-" is an idle GPU.
func parsePmon(out string) ([]ProcessUtil, error) {
	gpuCol, pidCol, smCol := -1, -1, -1
	var rows []ProcessUtil
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "#"); ok {
			cols := strings.Fields(rest)
			if slices.Contains(cols, "pid") && slices.Contains(cols, "sm") {
				gpuCol, pidCol, smCol = slices.Index(cols, "gpu"), slices.Index(cols, "pid"), slices.Index(cols, "sm")
			}
			continue
		}
		if pidCol < 0 || gpuCol < 0 {
			return nil, fmt.Errorf("nvidia-smi pmon: data before a header with gpu, pid and sm: %q", line)
		}
		f := strings.Fields(line)
		if len(f) <= max(gpuCol, pidCol, smCol) {
			return nil, fmt.Errorf("nvidia-smi pmon: short line %q", line)
		}
		if f[pidCol] == "-" {
			continue
		}
		gpu, err1 := strconv.Atoi(f[gpuCol])
		pid, err2 := strconv.Atoi(f[pidCol])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("nvidia-smi pmon: bad gpu or pid in %q", line)
		}
		r := ProcessUtil{GPU: gpu, PID: pid}
		if v := f[smCol]; v != "-" {
			sm, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return nil, fmt.Errorf("nvidia-smi pmon: bad sm %q in %q", v, line)
			}
			r.SM, r.HasSM = sm, true
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// Usage is what an attempt used of one GPU.
type Usage struct {
	Index int
	Name  string
	// PeakMemoryBytes is the largest sum of the attempt's processes'
	// memory on the GPU (0 when nvidia-smi could not tell).
	PeakMemoryBytes int64
	// AvgUtilizationPercent is the mean over all samples of the attempt's
	// processes' summed SM utilization on the GPU (capped at 100); samples
	// where they did not use it count as 0.
	AvgUtilizationPercent float64
}

// Sampler samples the GPU use of a changing set of processes.
type Sampler struct {
	smi      *SMI
	pids     func() []int
	interval time.Duration
	cancel   context.CancelFunc
	stop     chan struct{} // closed by Stop: take no new sample
	done     chan struct{}
	once     sync.Once

	mu      sync.Mutex
	samples int
	failed  int
	lastErr error
	peak    map[int]int64   // by GPU index
	smSum   map[int]float64 // by GPU index
	used    map[int]bool    // GPUs the processes appeared on
	result  []Usage
	note    string
}

// Start samples, every interval (default 1s; the first sample after 20ms),
// the GPU use of the processes that pids returns (the attempt's process
// tree, which changes as it runs) until Stop. A sample is skipped while
// pids returns none. Each sample runs nvidia-smi twice, which costs tens
// of milliseconds of CPU time.
func (s *SMI) Start(ctx context.Context, pids func() []int, interval time.Duration) *Sampler {
	if interval <= 0 {
		interval = time.Second
	}
	ctx, cancel := context.WithCancel(ctx)
	sp := &Sampler{
		smi: s, pids: pids, interval: interval, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{}),
		peak: map[int]int64{}, smSum: map[int]float64{}, used: map[int]bool{},
	}
	go sp.loop(ctx)
	return sp
}

func (sp *Sampler) loop(ctx context.Context) {
	defer close(sp.done)
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sp.stop:
			return
		case <-t.C:
		}
		if pids := sp.pids(); len(pids) > 0 {
			sp.sample(ctx, pids)
		}
		t.Reset(sp.interval)
	}
}

func (sp *Sampler) sample(ctx context.Context, pids []int) {
	apps, err := sp.smi.ComputeApps(ctx)
	var utils []ProcessUtil
	if err == nil {
		utils, err = sp.smi.ProcessUtilization(ctx)
	}
	if err != nil && ctx.Err() != nil {
		return // stopped in the middle: not a sample (one that completed still counts)
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if err != nil {
		sp.failed++
		sp.lastErr = err
		return
	}
	sp.samples++
	mine := make(map[int]bool, len(pids))
	for _, p := range pids {
		mine[p] = true
	}
	byUUID := map[string]int{}
	for _, d := range sp.smi.devices {
		byUUID[d.UUID] = d.Index
	}
	mem := map[int]int64{}
	for _, a := range apps {
		idx, ok := byUUID[a.UUID]
		if !ok || !mine[a.PID] {
			continue
		}
		sp.used[idx] = true
		mem[idx] += max(a.UsedBytes, 0)
	}
	for idx, m := range mem {
		sp.peak[idx] = max(sp.peak[idx], m)
	}
	sm := map[int]float64{}
	for _, u := range utils {
		if !mine[u.PID] {
			continue
		}
		sp.used[u.GPU] = true
		if u.HasSM {
			sm[u.GPU] += u.SM
		}
	}
	for idx, v := range sm {
		sp.smSum[idx] += min(v, 100)
	}
}

// stopGrace is how long Stop waits for a sample under way.
const stopGrace = 2 * time.Second

// Stop ends sampling and returns the use of each GPU the processes
// appeared on, by index, or none and a note that says why: no sample
// taken, sampling failed, or no GPU used. Calling it again returns the
// same.
func (sp *Sampler) Stop() ([]Usage, string) {
	sp.once.Do(func() {
		// A sample under way finishes (it may be the only one of a short
		// attempt); one that hangs is cut off after stopGrace.
		close(sp.stop)
		select {
		case <-sp.done:
		case <-time.After(stopGrace):
			sp.cancel()
			<-sp.done
		}
		sp.cancel()
		sp.mu.Lock()
		defer sp.mu.Unlock()
		switch {
		case sp.samples == 0 && sp.failed > 0:
			sp.note = fmt.Sprintf("GPU sampling failed: %v", sp.lastErr)
		case sp.samples == 0:
			sp.note = "no GPU sample taken: the attempt ended first"
		case len(sp.used) == 0:
			sp.note = "no GPU used"
		}
		for _, d := range sp.smi.devices {
			if !sp.used[d.Index] {
				continue
			}
			sp.result = append(sp.result, Usage{
				Index:                 d.Index,
				Name:                  d.Name,
				PeakMemoryBytes:       sp.peak[d.Index],
				AvgUtilizationPercent: sp.smSum[d.Index] / float64(sp.samples),
			})
		}
	})
	return slices.Clone(sp.result), sp.note
}
