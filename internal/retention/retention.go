// Package retention drops finished jobs from the live tables once the
// history export holds them: a Retainer retires, every Interval, the jobs
// that ended more than Age ago and whose export batch is done
// (store.RetentionStore.RetireJobs). What stays of each is its row in
// job_archive, which names History, the place its rows can be queried
// from. It imports only the store.
package retention

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// Defaults of a Retainer's zero fields.
const (
	DefaultInterval = time.Minute
	DefaultLimit    = 100
)

// Retainer retires finished, exported jobs older than Age.
type Retainer struct {
	Store store.Store
	// Age is how long after it finished a job stays live; it must be > 0
	// (a Retainer with Age <= 0 retires nothing: jobs are kept forever).
	Age time.Duration
	// Interval is the time between passes (<= 0: DefaultInterval).
	Interval time.Duration
	// Limit is the most jobs one call of RetireJobs takes (<= 0:
	// DefaultLimit); a pass calls it until fewer come back.
	Limit int
	// History is where the history export lives (its prefix URL), stored
	// in each archive row for readers to be told where the job went.
	History string
	Logger  *slog.Logger
	// Clock is the time now (nil: time.Now).
	Clock func() time.Time
}

// Run calls Once every Interval until ctx ends, logging failures (a pass
// that fails is retried at the next tick; retirement resumes where it
// stopped). It returns ctx's error.
func (r *Retainer) Run(ctx context.Context) error {
	interval := r.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := r.Once(ctx); err != nil && ctx.Err() == nil {
			r.logger().WarnContext(ctx, "retention pass failed; retrying at the next", "error", err, "interval", interval)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Once retires every job that is due now: terminal, exported, finished
// more than Age ago, Limit jobs per store call until a call returns fewer.
// It returns how many jobs it retired, and the first error (after which
// it stops; the jobs it had retired stay retired).
func (r *Retainer) Once(ctx context.Context) (int, error) {
	if r.Age <= 0 {
		return 0, nil
	}
	if r.Store == nil {
		return 0, errors.New("retention: no store")
	}
	limit := r.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	clock := r.Clock
	if clock == nil {
		clock = time.Now
	}
	cutoff := clock().Add(-r.Age)
	log := r.logger()
	total := 0
	for {
		start := time.Now()
		var rows int64
		pctx := store.WithRetireProgress(ctx, func(_, _ string, n int64) { rows += n })
		ids, err := r.Store.RetireJobs(pctx, cutoff, limit, r.History)
		total += len(ids)
		if len(ids) > 0 {
			log.InfoContext(ctx, "retired finished jobs", "jobs", len(ids), "rows", rows, "finished_before", cutoff,
				"history", r.History, "took", time.Since(start).Round(time.Millisecond), "first", ids[0])
		}
		if err != nil {
			return total, err
		}
		if len(ids) < limit {
			return total, nil
		}
	}
}

func (r *Retainer) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}
