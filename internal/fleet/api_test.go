package fleet

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// setup returns a Fleet with job "a" (one tier) and the time it is at.
func setup(t *testing.T) (*Fleet, time.Time) {
	t.Helper()
	f := New(Config{})
	if err := f.AddJob(Job{ID: "a", Tiers: 1}); err != nil {
		t.Fatal(err)
	}
	return f, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c := New(Config{IdleTimeout: -1, MaxWorkers: -3}).Config()
	if c.IdleTimeout != 3*time.Second || c.WorkerTimeout != 45*time.Second || c.StartTimeout != 2*time.Minute || c.HalfLife != 10*time.Minute || c.MaxWorkers != 0 {
		t.Errorf("defaults: %+v", c)
	}
}

// TestBadInput: what the scripts cannot write (empty IDs), and the
// sentinel errors callers branch on.
func TestBadInput(t *testing.T) {
	t.Parallel()
	f, now := setup(t)
	for name, err := range map[string]error{
		"empty job ID":       f.AddJob(Job{Tiers: 1}),
		"empty adoption ID":  f.Adopt(Adoption{Job: "a"}, now),
		"negative demand":    f.SetDemand("a", 0, Demand{Elapsed: -time.Second}, now),
		"poll of a stranger": f.Polled("w", now),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := f.AddJob(Job{ID: "a", Tiers: 1}); !errors.Is(err, ErrJobExists) {
		t.Errorf("duplicate job: %v", err)
	}
	if err := f.EndJob("b"); !errors.Is(err, ErrUnknownJob) {
		t.Errorf("unknown job: %v", err)
	}
	if err := f.SetRunning("w", 1, now); !errors.Is(err, ErrUnknownWorker) || !strings.Contains(err.Error(), `"w"`) {
		t.Errorf("unknown worker: %v", err)
	}
	if err := f.Adopt(Adoption{ID: "w", Job: "a"}, now); err != nil {
		t.Fatal(err)
	}
	if err := f.Adopt(Adoption{ID: "w", Job: "a"}, now); !errors.Is(err, ErrWorkerExists) {
		t.Errorf("adopted twice: %v", err)
	}
}

// TestNegativeSlots: negative slots start nothing, and say nothing else.
func TestNegativeSlots(t *testing.T) {
	t.Parallel()
	f, now := setup(t)
	if err := f.SetDemand("a", 0, Demand{Waiting: 1, Ready: 1}, now); err != nil {
		t.Fatal(err)
	}
	if ds := f.Step(now, -5); len(ds) != 0 {
		t.Errorf("decisions with negative slots: %v", ds)
	}
	if ds := f.Step(now, 1); len(ds) != 1 || ds[0].Kind != Start || ds[0].ID != "a-0-1" {
		t.Errorf("decisions with a slot: %v", ds)
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	for got, want := range map[string]string{
		Starting.String(): "starting", Live.String(): "live", Idle.String(): "idle", Exiting.String(): "exiting",
		State(9).String(): "State(9)", Start.String(): "start", Lost.String(): "lost", Kind(7).String(): "Kind(7)",
		Decision{Kind: Exit, ID: "w", Why: "job ended"}.String():   "exit w (job ended)",
		Decision{Kind: Start, ID: "w", Job: "a", Tier: 1}.String(): "start a/1 w",
	} {
		if got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
}

// TestEmpty: a Fleet with nothing has nothing to do.
func TestEmpty(t *testing.T) {
	t.Parallel()
	f := New(Config{})
	if w := f.NextWake(); !w.IsZero() {
		t.Errorf("next wake %v", w)
	}
	if ds := f.Step(time.Unix(0, 0), 10); len(ds) != 0 {
		t.Errorf("decisions: %v", ds)
	}
	if w := f.NextWake(); !w.IsZero() {
		t.Errorf("next wake after a step: %v", w)
	}
}
