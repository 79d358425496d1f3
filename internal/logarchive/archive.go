// Package logarchive copies ended jobs' logs to their teams' own buckets.
//
// A team's admin names a destination (an s3:// URL) and the credentials to
// write there (`haul team logs set`); a job may name a destination within
// it (`logs: {destination: …}` in its spec), else it gets the team's. When
// a job has ended (and Delay has passed, so its workers' last packs are
// in), the Archiver copies every object holding the job's logs from the
// platform's object store to the destination, then writes the job's index,
// in this layout under the destination's prefix:
//
//	JOB/packs/WORKER-NNNNNN      packs: several attempts' logs each
//	JOB/TASK/ATTEMPT/log         a log too big for a pack
//	JOB/TASK/ATTEMPT/live        what the runner held of a lost attempt
//	JOB/index.jsonl              one line per attempt, see IndexLine
//
// Each attempt's log is a byte range of one object: its stdout bytes, then
// its stderr bytes, then a timeline (package logs documents it), so a
// plain ranged GET of [stdout_offset, stdout_offset+stdout_bytes) is the
// attempt's stdout as the task wrote it. `haul logs export` writes plain
// per-attempt files for those who want them.
//
// Copies are retried with backoff (MaxTries times); a job whose copy
// failed says so on each of its attempts (the log entry's archive error),
// and the error never shows the credentials. One archiver works at a time
// (it holds the store lease "log-archiver"); copying the same job twice
// writes the same keys, never more.
package logarchive

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/haul-dev/haul/internal/blob"
	"github.com/haul-dev/haul/internal/blob/s3"
	"github.com/haul-dev/haul/internal/store"
)

// Defaults of Config.
const (
	DefaultDelay    = 3 * time.Minute
	DefaultInterval = 5 * time.Second
	DefaultMaxTries = 8
	leaseName       = "log-archiver"
	leaseTTL        = 30 * time.Second
)

// Config sets up an Archiver.
type Config struct {
	Store store.Store
	// Blob is the platform's object store, where workers archive logs.
	Blob blob.Store
	// Open opens a destination with its team's credentials (default: the
	// S3 driver with the team's static credentials).
	Open func(ctx context.Context, d store.LogDestination, url string) (blob.Store, error)
	// Delay is how long after a job ends its copy starts (default 3m:
	// past the runner's LivePackGrace, so the workers' last packs and the
	// runner's copies of logs whose workers died are in by then).
	Delay time.Duration
	// Interval is how often the archiver looks for jobs (default 5s).
	Interval time.Duration
	// MaxTries bounds the tries of one job's copy (default 8), with
	// backoff from 10s doubling to 10m.
	MaxTries int
	// Holder names this archiver in its lease.
	Holder string
	Logger *slog.Logger
	Clock  func() time.Time
}

// Archiver copies ended jobs' logs to their destinations.
type Archiver struct{ cfg Config }

// New returns an Archiver.
func New(cfg Config) *Archiver {
	cfg.Delay = cmp.Or(cfg.Delay, DefaultDelay)
	cfg.Interval = cmp.Or(cfg.Interval, DefaultInterval)
	cfg.MaxTries = cmp.Or(cfg.MaxTries, DefaultMaxTries)
	cfg.Holder = cmp.Or(cfg.Holder, fmt.Sprintf("archiver-%d", os.Getpid()))
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Open == nil {
		cfg.Open = OpenS3
	}
	return &Archiver{cfg: cfg}
}

// OpenS3 opens an s3:// destination with a team's static credentials
// (none configured: the standard AWS chain of this process).
func OpenS3(ctx context.Context, d store.LogDestination, url string) (blob.Store, error) {
	o, err := s3.ParseURL(url)
	if err != nil {
		return nil, err
	}
	o.AccessKeyID, o.SecretAccessKey, o.SessionToken = d.AccessKeyID, d.SecretAccessKey, d.SessionToken
	return s3.New(ctx, o)
}

// Within reports why a job's destination is not within its team's, or
// nil: the same bucket and endpoint, and a prefix at or under the team's.
func Within(team, job string) error {
	t, err := s3.ParseURL(team)
	if err != nil {
		return fmt.Errorf("the team's destination: %w", err)
	}
	j, err := s3.ParseURL(job)
	if err != nil {
		return err
	}
	tp, jp := strings.Trim(t.Prefix, "/"), strings.Trim(j.Prefix, "/")
	switch {
	case t.Bucket != j.Bucket || t.Endpoint != j.Endpoint || t.PathStyle != j.PathStyle || (j.Region != "" && j.Region != t.Region):
		return fmt.Errorf("%s is not in the team's bucket %s", job, t.String())
	case tp != "" && jp != tp && !strings.HasPrefix(jp, tp+"/"):
		return fmt.Errorf("%s is not under the team's prefix %q of bucket %s", job, tp, t.Bucket)
	}
	return nil
}

// Run copies jobs' logs until ctx ends, while it holds the archiver lease.
func (a *Archiver) Run(ctx context.Context) {
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		now := a.cfg.Clock()
		_, held, err := a.cfg.Store.AcquireLease(ctx, store.Lease{Name: leaseName, Holder: a.cfg.Holder, ExpiresAt: now.Add(leaseTTL)}, now)
		switch {
		case err != nil && ctx.Err() == nil:
			a.cfg.Logger.Warn("log archiver: cannot take its lease", "err", err)
		case held:
			if _, err := a.Once(ctx); err != nil && ctx.Err() == nil {
				a.cfg.Logger.Warn("log archiver", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Once copies the logs of the jobs due now; it returns how many it copied.
func (a *Archiver) Once(ctx context.Context) (int, error) {
	now := a.cfg.Clock()
	due, err := a.cfg.Store.JobsToArchive(ctx, now.Add(-a.cfg.Delay), now, 20)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, la := range due {
		objects, err := a.archive(ctx, la)
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		la.UpdatedAt = a.cfg.Clock().UTC()
		if err == nil {
			la.State, la.Error, la.Objects, la.NextAt = store.ArchiveDone, "", objects, time.Time{}
			n++
			a.cfg.Logger.Info("job's logs copied to its destination", "job", la.JobID, "destination", la.Destination, "objects", objects)
		} else {
			la.Tries++
			la.Error = cut(err.Error(), 2000)
			la.State, la.NextAt = store.ArchivePending, la.UpdatedAt.Add(backoff(la.Tries))
			var final *permanent
			if la.Tries >= int64(a.cfg.MaxTries) || errors.As(err, &final) {
				la.State, la.NextAt = store.ArchiveFailed, time.Time{}
				if err := a.markEntries(ctx, la.JobID, "", la.Error); err != nil {
					a.cfg.Logger.Warn("log archiver: cannot record the failure on the attempts", "job", la.JobID, "err", err)
				}
			}
			a.cfg.Logger.Warn("copying a job's logs failed", "job", la.JobID, "destination", la.Destination, "tries", la.Tries, "state", la.State, "err", err)
		}
		if err := a.cfg.Store.PutLogArchive(ctx, la); err != nil {
			return n, err
		}
	}
	return n, nil
}

// permanent marks a failure that trying again cannot mend.
type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }

func backoff(tries int64) time.Duration {
	d := 10 * time.Second
	for range min(tries-1, 6) {
		d *= 2
	}
	return min(d, 10*time.Minute)
}

// IndexLine is one line of a job's index.jsonl: where one attempt's log
// is in the destination. Offsets are into Object; the stdout part starts
// at StdoutOffset, the stderr part at StderrOffset, and the timeline takes
// the rest of [Offset, Offset+Length).
type IndexLine struct {
	Job          string    `json:"job"`
	Task         string    `json:"task"`
	TaskIndex    int32     `json:"task_index"`
	Attempt      int32     `json:"attempt"`
	Object       string    `json:"object"`
	Offset       int64     `json:"offset"`
	Length       int64     `json:"length"`
	StdoutOffset int64     `json:"stdout_offset"`
	StdoutBytes  int64     `json:"stdout_bytes"`
	StderrOffset int64     `json:"stderr_offset"`
	StderrBytes  int64     `json:"stderr_bytes"`
	FirstAt      time.Time `json:"first_at,omitzero"`
	LastAt       time.Time `json:"last_at,omitzero"`
	Truncated    bool      `json:"truncated,omitempty"`
	Note         string    `json:"note,omitempty"`
}

// DestKey is the key in the destination of an object of the platform's
// store ("logs/JOB/…" → "JOB/…").
func DestKey(object string) string { return strings.TrimPrefix(object, "logs/") }

// archive copies one job's logs and writes its index; it returns the
// objects copied.
func (a *Archiver) archive(ctx context.Context, la store.LogArchive) (int64, error) {
	d, err := a.cfg.Store.GetLogDestination(ctx, la.Namespace)
	if errors.Is(err, store.ErrNotFound) {
		return 0, &permanent{fmt.Errorf("team %q has no log destination (an admin sets one with haul team logs set)", la.Namespace)}
	}
	if err != nil {
		return 0, err
	}
	if err := Within(d.URL, la.Destination); err != nil {
		return 0, &permanent{fmt.Errorf("job destination: %w", err)}
	}
	dst, err := a.cfg.Open(ctx, *d, la.Destination)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", la.Destination, err)
	}
	idx, err := os.CreateTemp("", "haul-index-*.jsonl")
	if err != nil {
		return 0, err
	}
	defer os.Remove(idx.Name())
	defer idx.Close()
	bw := bufio.NewWriter(idx)
	enc := json.NewEncoder(bw)
	tasks := &taskKeys{s: a.cfg.Store, job: la.JobID, after: -1}
	copied := map[string]bool{}
	var objects int64
	f := store.LogEntryFilter{JobID: la.JobID, TaskIndex: -1, AfterTask: -1, Limit: 1000}
	for {
		page, err := a.cfg.Store.ListLogEntries(ctx, f)
		if err != nil {
			return objects, err
		}
		for i, e := range page {
			if !copied[e.Object] {
				if err := copyObject(ctx, a.cfg.Blob, dst, e.Object); err != nil {
					return objects, err
				}
				copied[e.Object] = true
				objects++
			}
			key, err := tasks.key(ctx, e.TaskIndex)
			if err != nil {
				return objects, err
			}
			if err := enc.Encode(IndexLine{
				Job: la.JobID, Task: key, TaskIndex: e.TaskIndex, Attempt: e.Attempt, Object: DestKey(e.Object),
				Offset: e.Offset, Length: e.Length, StdoutOffset: e.Offset, StdoutBytes: e.StdoutBytes,
				StderrOffset: e.Offset + e.StdoutBytes, StderrBytes: e.StderrBytes, FirstAt: e.FirstAt, LastAt: e.LastAt,
				Truncated: e.Truncated, Note: e.Note,
			}); err != nil {
				return objects, err
			}
			page[i].Destination, page[i].ArchiveError = la.Destination, ""
		}
		if len(page) < f.Limit {
			break
		}
		last := page[len(page)-1]
		f.AfterTask, f.AfterAttempt = last.TaskIndex, last.Attempt
	}
	if err := bw.Flush(); err != nil {
		return objects, err
	}
	if _, err := idx.Seek(0, 0); err != nil {
		return objects, err
	}
	if err := dst.Put(ctx, la.JobID+"/index.jsonl", idx); err != nil {
		return objects, fmt.Errorf("write the index: %w", err)
	}
	return objects + 1, a.markEntries(ctx, la.JobID, la.Destination, "")
}

// markEntries records on every log entry of the job where its log went,
// or why it could not.
func (a *Archiver) markEntries(ctx context.Context, job, dest, why string) error {
	f := store.LogEntryFilter{JobID: job, TaskIndex: -1, AfterTask: -1, Limit: 1000}
	for {
		page, err := a.cfg.Store.ListLogEntries(ctx, f)
		if err != nil {
			return err
		}
		for i := range page {
			page[i].Destination, page[i].ArchiveError = dest, why
		}
		if err := a.cfg.Store.PutLogEntries(ctx, page); err != nil {
			return err
		}
		if len(page) < f.Limit {
			return nil
		}
		last := page[len(page)-1]
		f.AfterTask, f.AfterAttempt = last.TaskIndex, last.Attempt
	}
}

// copyObject copies one object from the platform's store to dst, under
// its destination key.
func copyObject(ctx context.Context, src, dst blob.Store, key string) error {
	r, err := src.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	defer r.Close()
	if err := dst.Put(ctx, DestKey(key), r); err != nil {
		return fmt.Errorf("copy %s: %w", key, err)
	}
	return nil
}

// taskKeys maps task indexes to keys, reading the job's tasks a page at a
// time in index order (the entries come in that order too).
type taskKeys struct {
	s     store.Store
	job   string
	after int32
	page  []store.Task
}

func (t *taskKeys) key(ctx context.Context, index int32) (string, error) {
	for {
		for len(t.page) > 0 && t.page[0].Index < index {
			t.page = t.page[1:]
		}
		if len(t.page) > 0 && t.page[0].Index == index {
			return t.page[0].Key, nil
		}
		if len(t.page) > 0 || t.after >= index {
			return fmt.Sprintf("#%d", index), nil // not a task of the job: say so, do not stop
		}
		page, err := t.s.ListTasks(ctx, store.TaskFilter{JobID: t.job, After: max(t.after, index-1), Limit: 1000})
		if err != nil {
			return "", err
		}
		if len(page) == 0 {
			t.after = index
			continue
		}
		t.page = page
		t.after = page[len(page)-1].Index
	}
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
