package taskhost

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/haul-dev/haul/internal/cgroup"
	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/gpu"
	"github.com/haul-dev/haul/internal/procstat"
)

// How the worker's memory limit is enforced, as in AttemptResult.enforcement
// (besides cgroup.V1.String() and cgroup.V2.String()).
const (
	EnforcementRSSPoll = "rss-poll"
	EnforcementNone    = "none"
)

// limits is what the taskhost knows about its memory limit and GPUs,
// settled once at start.
type limits struct {
	enforcement string
	// cg is this process's cgroup when a memory limit is in force on it;
	// its OOM-kill counter is read around every attempt. cgLimit is that
	// limit; oomCounter says whether the counter can be read.
	cg         *cgroup.Group
	cgLimit    int64
	oomCounter bool
	// rssLimit, when positive, is the limit the samplers enforce.
	rssLimit int64
	// childOOMAdj is written to every attempt's oom_score_adj when the
	// taskhost lowered its own ("" when it did not).
	childOOMAdj string

	gpu     *gpu.SMI
	gpuNote string // why there is no gpu
}

// setupLimits joins the cgroup the backend made (if any), finds the cgroup
// this process is in and decides how the memory limit is enforced:
//
//   - the cgroup's own limit ("cgroup-v1", "cgroup-v2") when there is one
//     no larger than MemoryLimit (or MemoryLimit is 0): the kernel kills,
//     the cgroup's counter tells;
//   - else, with MemoryLimit > 0, "rss-poll": the samplers kill a tree
//     whose summed RSS goes over it (a larger cgroup limit is still
//     watched for kernel OOM kills);
//   - else "none".
//
// It also looks for GPUs, once.
func (h *host) setupLimits(ctx context.Context) error {
	cfg, l := h.cfg, &h.lim
	if err := ensureSubreaper(); err != nil {
		h.log.Warn("not a child subreaper: an attempt's orphaned descendants are found by their environment marker anywhere on the machine", "err", err)
	}
	if len(cfg.Cgroup) > 0 {
		if err := cgroup.Join(cfg.Cgroup, os.Getpid()); err != nil {
			return fmt.Errorf("taskhost: %w", err)
		}
	}
	g, err := cgroup.Self(cfg.CgroupRoot)
	if err != nil {
		h.log.Info("no memory cgroup to read", "err", err)
	} else if lim, err := g.MemoryLimit(); err != nil {
		h.log.Warn("cannot read the cgroup's memory limit", "cgroup", g.Path(), "err", err)
	} else if lim > 0 {
		l.cg, l.cgLimit = g, lim
		if _, err := g.OOMKills(); err != nil {
			h.log.Warn("cannot read the cgroup's OOM-kill counter; kernel OOM kills will show as SIGKILL", "cgroup", g.Path(), "err", err)
		} else {
			l.oomCounter = true
		}
	}
	switch {
	case l.cg != nil && (cfg.MemoryLimit == 0 || l.cgLimit <= cfg.MemoryLimit):
		l.enforcement = l.cg.Version().String()
	case cfg.MemoryLimit > 0:
		l.enforcement, l.rssLimit = EnforcementRSSPoll, cfg.MemoryLimit
	default:
		l.enforcement = EnforcementNone
	}
	if l.cg != nil {
		l.childOOMAdj = protectFromOOM()
	}
	attrs := []any{"enforcement", l.enforcement}
	if l.cg != nil {
		attrs = append(attrs, "cgroup", l.cg.Path(), "cgroup_limit", formatBytes(l.cgLimit))
	}
	if l.rssLimit > 0 {
		attrs = append(attrs, "rss_limit", formatBytes(l.rssLimit))
	}
	if cfg.CPULimit > 0 {
		attrs = append(attrs, "cpu_limit", cfg.CPULimit)
	}

	if cfg.NvidiaSMI == "-" {
		l.gpuNote = "no GPU: GPU accounting is off"
	} else {
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		smi, err := gpu.Detect(dctx, cfg.NvidiaSMI)
		cancel()
		if err != nil {
			l.gpuNote = err.Error()
		} else {
			l.gpu = smi
		}
	}
	if l.gpu != nil {
		attrs = append(attrs, "gpus", len(l.gpu.Devices()))
	} else {
		attrs = append(attrs, "gpus", l.gpuNote)
	}
	h.log.Info("resource limits", attrs...)
	return nil
}

// protectFromOOM makes the taskhost the kernel's last choice when its
// cgroup runs out of memory, so that the attempt, not the worker, is
// killed: it lowers its own oom_score_adj and returns the old value, which
// each attempt gets back right after it starts (children inherit the
// lowered one). Lowering needs CAP_SYS_RESOURCE; without it (a
// Kubernetes container, usually) nothing changes and it returns "".
func protectFromOOM() string {
	const path = "/proc/self/oom_score_adj"
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	orig := strings.TrimSpace(string(b))
	v, err := strconv.Atoi(orig)
	if err != nil || v <= -998 {
		return ""
	}
	// Not -1000, which would make the taskhost unkillable: alone in its
	// group over the limit, it must still be killable.
	if err := os.WriteFile(path, []byte("-998"), 0); err != nil {
		return ""
	}
	return orig
}

// restoreOOMAdj gives a started attempt the taskhost's original
// oom_score_adj (best effort: it may already have exited).
func (h *host) restoreOOMAdj(pid int) {
	if h.lim.childOOMAdj == "" {
		return
	}
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), []byte(h.lim.childOOMAdj), 0)
}

// oomKills reads the cgroup's OOM-kill counter; ok is false without one.
func (h *host) oomKills() (int64, bool) {
	if !h.lim.oomCounter {
		return 0, false
	}
	n, err := h.lim.cg.OOMKills()
	if err != nil {
		h.log.Warn("cannot read the cgroup's OOM-kill counter", "err", err)
		return 0, false
	}
	return n, true
}

// watch is one attempt's measurement: its process tree's sampler, its GPU
// sampler, and the OOM-kill counter at its start.
type watch struct {
	h         *host
	samp      *procstat.Sampler
	gpus      *gpu.Sampler
	oomBefore int64
	counter   bool
	// overRSS is the sampled RSS that broke the rss-poll limit (0: none);
	// written by the sampler's goroutine, read after its Stop.
	overRSS int64
}

// startWatch reads the OOM counter; call it before the attempt starts.
func (h *host) startWatch() *watch {
	w := &watch{h: h}
	w.oomBefore, w.counter = h.oomKills()
	return w
}

// sample starts the samplers for the attempt's process group and the
// orphans that carry its marker.
func (w *watch) sample(ctx context.Context, pgid int, marker string) {
	h := w.h
	opts := procstat.Options{Interval: h.cfg.SampleInterval, Clock: h.cfg.Clock}
	if subreaper.ok {
		opts.Marker, opts.Reaper = marker, os.Getpid()
	}
	if h.lim.rssLimit > 0 {
		opts.MemoryLimit = h.lim.rssLimit
		opts.OnLimit = func(s procstat.Sample) {
			w.overRSS = s.RSSBytes
			h.log.Warn("attempt over the memory limit; killing its process tree",
				"pgid", pgid, "rss", formatBytes(s.RSSBytes), "limit", formatBytes(h.lim.rssLimit))
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			for _, pid := range s.PIDs {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	w.samp = h.procs.Start(pgid, opts)
	if h.lim.gpu != nil {
		w.gpus = h.lim.gpu.Start(ctx, w.samp.PIDs, h.cfg.SampleInterval)
	}
}

// finish stops the samplers (after the attempt's processes are gone),
// decides whether the attempt ran out of memory and fills in its usage.
// res has its exit status set; ps is the main process's state.
func (w *watch) finish(res *taskhostv1.AttemptResult, ps *os.ProcessState) {
	h := w.h
	if w.samp == nil {
		return
	}
	sum := w.samp.Stop()
	u := &taskhostv1.Usage{
		CpuUserSeconds:   sum.CPUUser,
		CpuSystemSeconds: sum.CPUSystem,
		PeakRssBytes:     sum.PeakRSSBytes,
		AvgRssBytes:      sum.AvgRSSBytes,
	}
	if ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			u.CpuUserSeconds = max(u.CpuUserSeconds, seconds(ru.Utime))
			u.CpuSystemSeconds = max(u.CpuSystemSeconds, seconds(ru.Stime))
			u.PeakRssBytes = max(u.PeakRssBytes, ru.Maxrss*1024) // kilobytes on Linux
		}
	}
	if sum.Samples == 0 {
		u.AvgRssBytes = u.PeakRssBytes
	}
	if w.gpus != nil {
		usage, note := w.gpus.Stop()
		u.GpuNote = note
		for _, g := range usage {
			u.Gpus = append(u.Gpus, &taskhostv1.GPUUsage{
				Index:                 int32(g.Index),
				Name:                  g.Name,
				PeakMemoryBytes:       g.PeakMemoryBytes,
				AvgUtilizationPercent: g.AvgUtilizationPercent,
			})
		}
	} else {
		u.GpuNote = h.lim.gpuNote
	}
	res.Usage = u

	if res.Reason != ReasonExit && res.Reason != ReasonSignal {
		return // a timeout or a cancel says more
	}
	killed := res.Signal == int32(syscall.SIGKILL) || (res.Signal == 0 && res.ExitCode == 128+int32(syscall.SIGKILL))
	switch {
	case w.overRSS > 0 && killed:
		res.Reason = ReasonOOM
		res.Message = fmt.Sprintf("out of memory: the process tree's resident memory reached %s, over the worker's %s limit; killed by the taskhost (%s)",
			formatBytes(w.overRSS), formatBytes(h.lim.rssLimit), EnforcementRSSPoll)
	case w.overRSS > 0:
		addMessage(res, fmt.Sprintf("the process tree went over the worker's %s memory limit after the main process ended; what was left was killed", formatBytes(h.lim.rssLimit)))
	case w.counter && killed:
		after, ok := h.oomKills()
		if ok && after > w.oomBefore {
			res.Reason = ReasonOOM
			res.Message = fmt.Sprintf("out of memory: killed by the kernel at the worker's %s limit (%s)",
				formatBytes(h.lim.cgLimit), h.lim.cg.Version())
		}
	}
}

func seconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// formatBytes writes a size for people: "128.0 MiB".
func formatBytes(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, units[i])
}

// parseBytes reads a memory size: a whole number of bytes, optionally with
// a binary (Ki Mi Gi Ti) or decimal (k M G T) suffix, as in "64Mi".
func parseBytes(s string) (int64, error) {
	num, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q: want a whole number of bytes, optionally with a suffix Ki, Mi, Gi, Ti, k, M, G or T", s)
	}
	if v > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q: too large", s)
	}
	return v * mult, nil
}
