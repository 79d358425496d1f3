// Package history exports haul's finished jobs to Parquet files in an
// object store, for analytics long after the live store dropped them:
// every job, task, attempt, worker record and log-index entry, one table
// each, Hive-partitioned by the day the job finished:
//
//	{prefix}/{table}/date=YYYY-MM-DD/batch-000000123.parquet
//
// The export is incremental and idempotent. Jobs are exported in batches
// (store.HistoryStore): a claim moves up to BatchJobs finished jobs into a
// new batch, the batch's rows are written, and the batch is marked done.
// File names depend only on the batch and the date, so a batch that is
// written again (its writer crashed after some of its files; the next
// claim hands it out again before any new one) overwrites the same keys
// with the same rows: no row is ever exported twice.
//
// Rows are read a page at a time (PageRows) and streamed into the Parquet
// writers, each to a temporary file that is uploaded whole when the batch
// is written, so that a job of a million tasks is never held in memory.
//
// With Exporter.Teams, a team that has a store of its own (its log
// destination: TeamStores) also gets its own jobs' rows, and only those,
// in the same pass and under the same names below TeamPrefix:
//
//	{destination}/history/{table}/date=YYYY-MM-DD/batch-000000123.parquet
//
// The team's files are uploaded after the platform's and before the batch
// is marked done, so a batch redone after a crash rewrites both. A team
// whose store fails (or cannot be opened) does not hold the export back:
// the batch is still marked done, and the failure is logged and returned
// in Stats.TeamFailures (see Exporter.Teams).
package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/haul-dev/haul/internal/blob"
	"github.com/haul-dev/haul/internal/store"
)

// The tables, as their folder names under the prefix.
const (
	TableJobs       = "jobs"
	TableTasks      = "tasks"
	TableAttempts   = "attempts"
	TableWorkers    = "workers"
	TableLogEntries = "log_entries"
)

// Tables lists the tables in the order they are written.
var Tables = []string{TableJobs, TableTasks, TableAttempts, TableWorkers, TableLogEntries}

// DefaultBatchJobs and DefaultPageRows are the Exporter's defaults.
const (
	DefaultBatchJobs = 100
	DefaultPageRows  = 10_000
)

// rowGroupRows bounds the rows of a Parquet row group, and with it the
// memory a writer buffers before it encodes a group into its file.
const rowGroupRows = 64 * 1024

// Exporter writes the finished jobs of Store that no batch holds yet to
// Blob. Its zero fields take defaults; Store and Blob are required.
type Exporter struct {
	Store store.Store
	Blob  blob.Store
	// Prefix is the key prefix of the tables (no trailing '/'; "" puts
	// them at the store's root).
	Prefix string
	// BatchJobs is the most jobs per batch (default DefaultBatchJobs).
	BatchJobs int
	// MinAge leaves out jobs that finished less than MinAge before Clock:
	// their workers' records and logs may still be arriving.
	MinAge time.Duration
	// PageRows is how many rows are read from the store at a time
	// (default DefaultPageRows).
	PageRows int
	// Clock is the time MinAge counts back from (default time.Now).
	Clock func() time.Time
	// TempDir holds the files being written ("": the system's).
	TempDir string
	// Teams, when set, returns the store of a team that wants a copy of
	// its jobs' history (ok false: it has none; TeamStores looks up the
	// team's log destination). It is called at most once per team in a
	// Run. For every batch, the rows of each such team's jobs (never
	// another team's) are also written to its store, under TeamPrefix,
	// with the platform's file names.
	//
	// A team's copy is best-effort: when Teams fails for a team, or an
	// upload to its store fails, that team's files of the batch are left
	// (whole files of the batch's rows, or none; never a duplicate row),
	// the failure is logged and returned in Stats.TeamFailures, and the
	// batch is still marked done: one team's bucket never holds back the
	// platform's export (or the retention waiting for it). The platform's
	// files hold the same rows. A Run cut short (a crash, ctx ended)
	// before the batch is done rewrites both copies of it next time.
	Teams func(ctx context.Context, team string) (blob.Store, bool, error)
	// Log reports the failures of team copies (nil: slog.Default()).
	Log *slog.Logger
}

// TeamPrefix is the key prefix of the tables in a team's store.
const TeamPrefix = "history"

// TeamFailure is a team's copy of a batch that failed.
type TeamFailure struct {
	Batch int64
	Team  string
	Err   error
}

func (f TeamFailure) Error() string {
	return fmt.Sprintf("batch %d: team %s: %v", f.Batch, f.Team, f.Err)
}

// Stats is what a Run exported.
type Stats struct {
	// Batches and Jobs count the batches written and their jobs.
	Batches int
	Jobs    int64
	// Rows counts the rows written per table; Files and Bytes the files
	// uploaded and their sizes.
	Rows  map[string]int64
	Files int
	Bytes int64
	// TeamRows, TeamFiles and TeamBytes count the same for the copies in
	// teams' stores (all teams together).
	TeamRows  map[string]int64
	TeamFiles int
	TeamBytes int64
	// TeamFailures are the team copies that failed (the batches are done
	// nonetheless; see Exporter.Teams).
	TeamFailures []TeamFailure
}

func (s *Stats) add(b batchResult) {
	s.Batches++
	s.Jobs += int64(len(b.jobs))
	if s.Rows == nil {
		s.Rows = map[string]int64{}
	}
	for t, n := range b.rows {
		s.Rows[t] += n
	}
	s.Files += b.files
	s.Bytes += b.bytes
	for t, n := range b.teamRows {
		if s.TeamRows == nil {
			s.TeamRows = map[string]int64{}
		}
		s.TeamRows[t] += n
	}
	s.TeamFiles += b.teamFiles
	s.TeamBytes += b.teamBytes
	s.TeamFailures = append(s.TeamFailures, b.failures...)
}

// Key returns the object key of a table's file of one batch and day.
func Key(prefix, table string, day time.Time, batch int64) string {
	k := fmt.Sprintf("%s/date=%s/batch-%09d.parquet", table, day.UTC().Format(time.DateOnly), batch)
	if p := strings.TrimSuffix(prefix, "/"); p != "" {
		return p + "/" + k
	}
	return k
}

// JobDay is the partition date of a job: the UTC day it finished (its
// creation day if it has no finish time).
func JobDay(j *store.Job) time.Time {
	t := j.FinishedAt
	if t.IsZero() {
		t = j.CreatedAt
	}
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Run exports batch after batch until no finished job is left unexported:
// first a batch left writing by an earlier run, then new ones. It returns
// what it wrote; on an error, what it wrote before it.
func (e *Exporter) Run(ctx context.Context) (Stats, error) {
	var st Stats
	if e.Store == nil || e.Blob == nil {
		return st, errors.New("history export: no store or no blob store")
	}
	clock := e.Clock
	if clock == nil {
		clock = time.Now
	}
	batchJobs := e.BatchJobs
	if batchJobs <= 0 {
		batchJobs = DefaultBatchJobs
	}
	teams := teamCache{}
	for {
		b, ok, err := e.Store.ClaimExportBatch(ctx, batchJobs, clock().Add(-e.MinAge))
		if err != nil {
			return st, fmt.Errorf("history export: %w", err)
		}
		if !ok {
			return st, nil
		}
		res, err := e.writeBatch(ctx, b, teams)
		if err != nil {
			return st, fmt.Errorf("history export: batch %d: %w", b.ID, err)
		}
		if err := e.Store.FinishExportBatch(ctx, b.ID, res.rows); err != nil {
			return st, fmt.Errorf("history export: %w", err)
		}
		log := e.Log
		if log == nil {
			log = slog.Default()
		}
		for _, f := range res.failures {
			log.Warn("history export: team copy failed; the platform's files hold its rows",
				"batch", f.Batch, "team", f.Team, "err", f.Err)
		}
		st.add(res)
	}
}

// teamCache holds what Exporter.Teams said of each team during a Run.
type teamCache map[string]*teamEntry

type teamEntry struct {
	store blob.Store
	ok    bool
	err   error
}

// team returns the store of a team that has one (nil: none, or Teams
// failed: err).
func (e *Exporter) team(ctx context.Context, c teamCache, team string) (blob.Store, error) {
	if e.Teams == nil || team == "" {
		return nil, nil
	}
	t := c[team]
	if t == nil {
		t = &teamEntry{}
		t.store, t.ok, t.err = e.Teams(ctx, team)
		if t.err != nil && ctx.Err() != nil {
			return nil, ctx.Err() // not the team's failure: not cached
		}
		if t.err == nil && t.ok && t.store == nil {
			t.err = errors.New("no store")
		}
		c[team] = t
	}
	if t.err != nil {
		return nil, t.err
	}
	if !t.ok {
		return nil, nil
	}
	return t.store, nil
}

type batchResult struct {
	jobs  []string
	rows  map[string]int64
	files int
	bytes int64
	// The teams' copies: rows, files and bytes uploaded, and failures.
	teamRows  map[string]int64
	teamFiles int
	teamBytes int64
	failures  []TeamFailure
}

// target is one copy of a batch being written: the platform's, or a
// team's (its rows only).
type target struct {
	team   string // "" for the platform's
	blob   blob.Store
	prefix string
	fs     *fileSet
	w      writers
}

func newTarget(dir string, batch int64, team string, b blob.Store, prefix string) *target {
	fs := &fileSet{dir: dir, batch: batch}
	return &target{team: team, blob: b, prefix: prefix, fs: fs, w: writers{
		jobs:     newSink[JobRow](fs, TableJobs),
		tasks:    newSink[TaskRow](fs, TableTasks),
		attempts: newSink[AttemptRow](fs, TableAttempts),
		workers:  newSink[WorkerRow](fs, TableWorkers),
		logs:     newSink[LogEntryRow](fs, TableLogEntries),
	}}
}

// writeBatch writes every table's files of batch b and uploads them: the
// platform's, then each team's (teams caches Exporter.Teams for the Run).
// An error fails the batch; a team's store failing is one of
// res.failures.
func (e *Exporter) writeBatch(ctx context.Context, b store.ExportBatch, teams teamCache) (res batchResult, err error) {
	if teams == nil {
		teams = teamCache{}
	}
	dir, err := os.MkdirTemp(e.TempDir, "haul-history-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	plat := newTarget(dir, b.ID, "", e.Blob, e.Prefix)
	defer plat.fs.abort()
	byTeam := map[string]*target{}
	failed := map[string]bool{}
	defer func() {
		for _, t := range byTeam {
			t.fs.abort()
		}
	}()
	// route returns the copies a job's rows go to: the platform's, and
	// its team's when it has a store.
	route := func(j *store.Job) ([]*writers, error) {
		out := []*writers{&plat.w}
		team := j.Namespace
		if failed[team] {
			return out, nil
		}
		st, err := e.team(ctx, teams, team)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			failed[team] = true
			res.failures = append(res.failures, TeamFailure{Batch: b.ID, Team: team, Err: err})
			return out, nil
		}
		if st == nil {
			return out, nil
		}
		t := byTeam[team]
		if t == nil {
			// A folder of its own per team (file names are per table
			// and day), named by number: the team is not a file name.
			tdir, err := os.MkdirTemp(dir, "team-")
			if err != nil {
				return nil, err
			}
			t = newTarget(tdir, b.ID, team, st, TeamPrefix)
			byTeam[team] = t
		}
		return append(out, &t.w), nil
	}
	page := e.PageRows
	if page <= 0 {
		page = DefaultPageRows
	}
	for _, id := range b.Jobs {
		if err := e.writeJob(ctx, route, b.ID, id, page); err != nil {
			return res, fmt.Errorf("job %s: %w", id, err)
		}
	}
	res.jobs = b.Jobs
	res.rows = map[string]int64{}
	for _, t := range Tables {
		res.rows[t] = 0
	}
	names := make([]string, 0, len(byTeam))
	for team := range byTeam {
		names = append(names, team)
	}
	sort.Strings(names)
	all := []*target{plat}
	for _, team := range names {
		all = append(all, byTeam[team])
	}
	for _, t := range all {
		for _, f := range t.fs.files {
			if err := f.close(); err != nil {
				return res, fmt.Errorf("%s: %w", f.key(t.prefix), err)
			}
		}
	}
	for _, f := range plat.fs.files {
		n, err := upload(ctx, plat.blob, plat.prefix, f)
		if err != nil {
			return res, err
		}
		res.rows[f.table] += f.rows
		res.files++
		res.bytes += n
	}
	for _, t := range all[1:] {
		for _, f := range t.fs.files {
			n, err := upload(ctx, t.blob, t.prefix, f)
			if ctx.Err() != nil {
				// Cut short, not the team's failure: the batch is not
				// done, and is written again, both copies, next time.
				return res, fmt.Errorf("team %s: %w", t.team, ctx.Err())
			}
			if err != nil {
				res.failures = append(res.failures, TeamFailure{Batch: b.ID, Team: t.team, Err: err})
				break
			}
			if res.teamRows == nil {
				res.teamRows = map[string]int64{}
			}
			res.teamRows[f.table] += f.rows
			res.teamFiles++
			res.teamBytes += n
		}
	}
	return res, nil
}

func upload(ctx context.Context, b blob.Store, prefix string, f *file) (int64, error) {
	key := f.key(prefix)
	r, err := os.Open(f.path)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	fi, err := r.Stat()
	if err != nil {
		return 0, err
	}
	if err := b.Put(ctx, key, r); err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	return fi.Size(), nil
}

type writers struct {
	jobs     *sink[JobRow]
	tasks    *sink[TaskRow]
	attempts *sink[AttemptRow]
	workers  *sink[WorkerRow]
	logs     *sink[LogEntryRow]
}

// put writes a row to one table of every copy in ws.
func put[T any](ws []*writers, table func(*writers) *sink[T], day time.Time, row T) error {
	for _, w := range ws {
		if err := table(w).write(day, row); err != nil {
			return err
		}
	}
	return nil
}

func jobsOf(w *writers) *sink[JobRow]            { return w.jobs }
func tasksOf(w *writers) *sink[TaskRow]          { return w.tasks }
func attemptsOf(w *writers) *sink[AttemptRow]    { return w.attempts }
func workersOf(w *writers) *sink[WorkerRow]      { return w.workers }
func logEntriesOf(w *writers) *sink[LogEntryRow] { return w.logs }

// writeJob streams one job's rows into the batch's files: those of every
// copy that route returns for the job.
func (e *Exporter) writeJob(ctx context.Context, route func(*store.Job) ([]*writers, error), batch int64, id string, page int) error {
	j, err := e.Store.GetJob(ctx, id)
	if err != nil {
		return err
	}
	w, err := route(j)
	if err != nil {
		return err
	}
	day := JobDay(j)
	if err := put(w, jobsOf, day, jobRow(j, batch)); err != nil {
		return err
	}

	// Tasks and attempts in one pass, both in task order: each page of
	// tasks is followed by the attempts of its tasks, which take the
	// task's key from the page.
	ac := attemptCursor{s: e.Store, job: id, page: page, afterTask: -1}
	after := int32(-1)
	for {
		tasks, err := e.Store.ListTasks(ctx, store.TaskFilter{JobID: id, After: after, Limit: page})
		if err != nil {
			return err
		}
		for i := range tasks {
			if err := put(w, tasksOf, day, taskRow(j, &tasks[i])); err != nil {
				return err
			}
		}
		last := int32(1<<31 - 1) // the last page takes every attempt left
		if len(tasks) == page {
			last = tasks[len(tasks)-1].Index
		}
		err = ac.upTo(ctx, last, func(a *store.Attempt) error {
			key := ""
			if i, ok := slices.BinarySearchFunc(tasks, a.TaskIndex, func(t store.Task, idx int32) int { return int(t.Index) - int(idx) }); ok {
				key = tasks[i].Key
			}
			return put(w, attemptsOf, day, attemptRow(j, key, a))
		})
		if err != nil {
			return err
		}
		if len(tasks) < page {
			break
		}
		after = last
	}

	ws, err := e.Store.ListWorkers(ctx, id)
	if err != nil {
		return err
	}
	for i := range ws {
		if err := put(w, workersOf, day, workerRow(j, &ws[i])); err != nil {
			return err
		}
	}

	f := store.LogEntryFilter{JobID: id, TaskIndex: -1, AfterTask: -1, Limit: page}
	for {
		es, err := e.Store.ListLogEntries(ctx, f)
		if err != nil {
			return err
		}
		for i := range es {
			if err := put(w, logEntriesOf, day, logEntryRow(j, &es[i])); err != nil {
				return err
			}
		}
		if len(es) < f.Limit {
			return nil
		}
		f.AfterTask, f.AfterAttempt = es[len(es)-1].TaskIndex, es[len(es)-1].Attempt
	}
}

// attemptCursor pages through a job's attempts in (task, number) order,
// holding at most one page.
type attemptCursor struct {
	s                       store.Store
	job                     string
	page                    int
	afterTask, afterAttempt int32
	pending                 []store.Attempt
	done                    bool
}

// upTo calls fn for every attempt not yet seen of the tasks up to index
// last.
func (c *attemptCursor) upTo(ctx context.Context, last int32, fn func(*store.Attempt) error) error {
	for {
		for len(c.pending) > 0 {
			a := &c.pending[0]
			if a.TaskIndex > last {
				return nil
			}
			if err := fn(a); err != nil {
				return err
			}
			c.pending = c.pending[1:]
		}
		if c.done {
			return nil
		}
		as, err := c.s.ListJobAttempts(ctx, c.job, c.afterTask, c.afterAttempt, c.page)
		if err != nil {
			return err
		}
		if len(as) < c.page {
			c.done = true
		}
		if len(as) > 0 {
			c.afterTask, c.afterAttempt = as[len(as)-1].TaskIndex, as[len(as)-1].Number
		}
		c.pending = as
	}
}

// fileSet is a batch's files being written, one per table and day.
type fileSet struct {
	dir   string
	batch int64
	files []*file
}

// abort closes whatever is still open (after an error).
func (fs *fileSet) abort() {
	for _, f := range fs.files {
		if f.f != nil {
			f.f.Close()
		}
	}
}

// file is one Parquet file being written to a temporary file.
type file struct {
	table string
	day   time.Time
	batch int64
	path  string
	f     *os.File
	rows  int64
	// close flushes the writer's buffered rows and the file footer, and
	// closes the file.
	close func() error
}

func (f *file) key(prefix string) string { return Key(prefix, f.table, f.day, f.batch) }

// sink writes the rows of one table, buffering a few before handing them
// to the file of their day.
type sink[T any] struct {
	fs     *fileSet
	table  string
	byDay  map[time.Time]*dayWriter[T]
	schema *parquet.Schema
}

type dayWriter[T any] struct {
	file *file
	w    *parquet.GenericWriter[T]
	buf  []T
}

const sinkBuffer = 1024

func newSink[T any](fs *fileSet, table string) *sink[T] {
	return &sink[T]{fs: fs, table: table, byDay: map[time.Time]*dayWriter[T]{}, schema: parquet.SchemaOf(new(T))}
}

func (s *sink[T]) write(day time.Time, row T) error {
	dw := s.byDay[day]
	if dw == nil {
		p := path.Join(s.fs.dir, fmt.Sprintf("%s-%s.parquet", s.table, day.Format(time.DateOnly)))
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		dw = &dayWriter[T]{
			file: &file{table: s.table, day: day, batch: s.fs.batch, path: p, f: f},
			w: parquet.NewGenericWriter[T](f, s.schema, parquet.Compression(&parquet.Zstd),
				parquet.MaxRowsPerRowGroup(rowGroupRows), parquet.CreatedBy("haul", "history", "")),
		}
		dw.file.close = func() error {
			if err := dw.flush(); err != nil {
				return err
			}
			if err := dw.w.Close(); err != nil {
				return err
			}
			err := dw.file.f.Close()
			dw.file.f = nil
			return err
		}
		s.byDay[day] = dw
		s.fs.files = append(s.fs.files, dw.file)
	}
	dw.buf = append(dw.buf, row)
	dw.file.rows++
	if len(dw.buf) >= sinkBuffer {
		return dw.flush()
	}
	return nil
}

func (dw *dayWriter[T]) flush() error {
	if len(dw.buf) == 0 {
		return nil
	}
	_, err := dw.w.Write(dw.buf)
	clear(dw.buf)
	dw.buf = dw.buf[:0]
	return err
}
