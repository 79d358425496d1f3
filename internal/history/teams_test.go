package history_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/blob"
	"github.com/haul-dev/haul/internal/history"
	"github.com/haul-dev/haul/internal/history/historytest"
	"github.com/haul-dev/haul/internal/store"
)

// The fixture's teams: perception has a store of its own (resim on day
// 1, resim2 on day 2), mapping has none (tiles on day 2).
const (
	withDest    = "perception"
	withoutDest = "mapping"
)

// teamsOf returns an Exporter.Teams that gives perception the store b,
// and counts its calls per team.
func teamsOf(b blob.Store, calls map[string]int) func(context.Context, string) (blob.Store, bool, error) {
	return func(_ context.Context, team string) (blob.Store, bool, error) {
		if calls != nil {
			calls[team]++
		}
		if team == withDest {
			return b, true, nil
		}
		return nil, false, nil
	}
}

// rowKeys reads every table under dir and returns, per table, the sorted
// "team|row key" of each row (a row twice shows twice).
func rowKeys(t *testing.T, dir string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	add := func(table, team, key string) { out[table] = append(out[table], team+"|"+key) }
	jobs, _ := readAll[history.JobRow](t, dir, history.TableJobs)
	for _, r := range jobs {
		add(history.TableJobs, r.Team, r.ID)
	}
	tasks, _ := readAll[history.TaskRow](t, dir, history.TableTasks)
	for _, r := range tasks {
		add(history.TableTasks, r.Team, r.JobID+"/"+r.Key)
	}
	atts, _ := readAll[history.AttemptRow](t, dir, history.TableAttempts)
	for _, r := range atts {
		add(history.TableAttempts, r.Team, fmt.Sprintf("%s/%s#%d", r.JobID, r.TaskKey, r.Number))
	}
	ws, _ := readAll[history.WorkerRow](t, dir, history.TableWorkers)
	for _, r := range ws {
		add(history.TableWorkers, r.Team, r.ID)
	}
	ls, _ := readAll[history.LogEntryRow](t, dir, history.TableLogEntries)
	for _, r := range ls {
		add(history.TableLogEntries, r.Team, fmt.Sprintf("%s/%d#%d", r.JobID, r.TaskIndex, r.Attempt))
	}
	for _, k := range out {
		slices.Sort(k)
	}
	return out
}

// checkCopies checks that the platform's files under platDir hold every
// row of the fixture once, and the team's files under teamDir exactly
// perception's rows, once each.
func checkCopies(t *testing.T, f historytest.Fixture, platDir, teamDir string) {
	t.Helper()
	plat, team := rowKeys(t, platDir), rowKeys(t, filepath.Join(teamDir, history.TeamPrefix))
	for _, table := range history.Tables {
		if n := int64(len(plat[table])); n != f.Rows[table] {
			t.Errorf("platform %s: %d rows; want %d", table, n, f.Rows[table])
		}
		if len(slices.Compact(slices.Clone(plat[table]))) != len(plat[table]) {
			t.Errorf("platform %s: a row twice: %v", table, plat[table])
		}
		var want []string
		for _, k := range plat[table] {
			if strings.HasPrefix(k, withDest+"|") {
				want = append(want, k)
			}
		}
		if len(want) == 0 {
			t.Fatalf("platform %s: no rows of %s", table, withDest)
		}
		if !slices.Equal(team[table], want) {
			t.Errorf("team %s: rows %v; want %v", table, team[table], want)
		}
	}
}

func TestTeamCopies(t *testing.T) {
	s := historytest.OpenStore(t)
	f := historytest.Seed(t, s)
	pb, pdir := newBlob(t)
	tb, tdir := newBlob(t)
	calls := map[string]int{}
	e := &history.Exporter{Store: s, Blob: pb, BatchJobs: 2, PageRows: 3, Teams: teamsOf(tb, calls)}
	st, err := e.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Batches != 2 || st.Jobs != 3 || len(st.TeamFailures) != 0 {
		t.Fatalf("stats %+v", st)
	}
	if calls[withDest] != 1 || calls[withoutDest] != 1 {
		t.Errorf("Teams called %v; want once per team", calls)
	}
	checkCopies(t, f, pdir, tdir)

	// Batch 1 is resim (perception, day 1) and tiles (mapping, day 2);
	// batch 2 is resim2 (perception, day 2): perception has nothing of
	// batch 1 on day 2.
	_, files := readAll[history.JobRow](t, filepath.Join(tdir, "history"), history.TableJobs)
	want := []string{"jobs/date=2026-11-02/batch-000000001.parquet", "jobs/date=2026-11-03/batch-000000002.parquet"}
	if !slices.Equal(files, want) {
		t.Errorf("team job files %v; want %v", files, want)
	}
	objs := snapshot(t, tdir)
	if len(objs) != 2*5 || st.TeamFiles != len(objs) {
		t.Errorf("team store holds %d objects, stats say %d files; want 10", len(objs), st.TeamFiles)
	}
	for k := range objs {
		if !strings.HasPrefix(k, "history/") {
			t.Errorf("team object %s outside history/", k)
		}
	}
	var n int64
	for _, table := range history.Tables {
		n += st.TeamRows[table]
	}
	if team := rowKeys(t, filepath.Join(tdir, "history")); int64(len(team[history.TableAttempts])) != st.TeamRows[history.TableAttempts] || n == 0 || st.TeamBytes == 0 {
		t.Errorf("team stats %+v", st)
	}
	// The platform's batches count the platform's rows only.
	list, _ := s.ListExportBatches(t.Context(), 10)
	var total int64
	for _, b := range list {
		total += b.Rows[history.TableAttempts]
	}
	if total != f.Rows[history.TableAttempts] {
		t.Errorf("batches count %d attempts; want %d", total, f.Rows[history.TableAttempts])
	}

	// Again: nothing new anywhere.
	pbefore := snapshot(t, pdir)
	st, err = e.Run(t.Context())
	if err != nil || st.Batches != 0 || st.Files != 0 || st.TeamFiles != 0 || len(st.TeamFailures) != 0 {
		t.Fatalf("second run: %+v, %v; want nothing", st, err)
	}
	if calls[withDest] != 1 {
		t.Errorf("a run with nothing to export asked for perception's store")
	}
	for dir, before := range map[string]map[string]string{pdir: pbefore, tdir: objs} {
		after := snapshot(t, dir)
		if len(after) != len(before) {
			t.Errorf("%s: %d objects, then %d", dir, len(before), len(after))
		}
		for k, v := range before {
			if after[k] != v {
				t.Errorf("%s changed", k)
			}
		}
	}
}

// crashingBlob fails every Put after the first ok ones; with cancel set,
// it ends the run's context first, as if the exporter died there.
type crashingBlob struct {
	blob.Store
	ok     int64
	puts   atomic.Int64
	cancel context.CancelFunc
}

func (c *crashingBlob) Put(ctx context.Context, key string, r io.Reader) error {
	if c.puts.Add(1) > c.ok {
		if c.cancel != nil {
			c.cancel()
			return ctx.Err()
		}
		return errors.New("injected: object store unreachable")
	}
	return c.Store.Put(ctx, key, r)
}

// TestTeamCopyCrash cuts a run short at every upload, of the platform's
// files and of the team's, then runs again: both copies end up with
// exactly their rows.
func TestTeamCopyCrash(t *testing.T) {
	// Batch 1 uploads 10 platform files, then 5 of perception's; batch 2
	// 5 and 5.
	for where, oks := range map[string][]int64{"platform": {0, 4, 9}, "team": {0, 2, 4, 7}} {
		for _, ok := range oks {
			t.Run(fmt.Sprintf("%s-after-%d", where, ok), func(t *testing.T) {
				s := historytest.OpenStore(t)
				f := historytest.Seed(t, s)
				pb, pdir := newBlob(t)
				tb, tdir := newBlob(t)
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				crash := &history.Exporter{Store: s, Blob: pb, BatchJobs: 2, Teams: teamsOf(tb, nil)}
				if where == "platform" {
					crash.Blob = &crashingBlob{Store: pb, ok: ok, cancel: cancel}
				} else {
					crash.Teams = teamsOf(&crashingBlob{Store: tb, ok: ok, cancel: cancel}, nil)
				}
				if _, err := crash.Run(ctx); err == nil {
					t.Fatal("run cut short: no error")
				}
				list, _ := s.ListExportBatches(t.Context(), 10)
				if len(list) == 0 || list[0].State != store.ExportWriting {
					t.Fatalf("batches after the crash: %+v; want the last one writing", list)
				}
				st, err := (&history.Exporter{Store: s, Blob: pb, BatchJobs: 2, Teams: teamsOf(tb, nil)}).Run(t.Context())
				if err != nil || len(st.TeamFailures) != 0 {
					t.Fatalf("rerun: %+v, %v", st, err)
				}
				checkCopies(t, f, pdir, tdir)
			})
		}
	}
}

// TestTeamCopyFails: a team's store that fails (not a crash) does not
// hold the export back: the batches are done, the platform's copy is
// whole, the failures are reported, and the team's store holds no row
// twice and none of another team.
func TestTeamCopyFails(t *testing.T) {
	s := historytest.OpenStore(t)
	f := historytest.Seed(t, s)
	pb, pdir := newBlob(t)
	tb, tdir := newBlob(t)
	e := &history.Exporter{Store: s, Blob: pb, BatchJobs: 2, Teams: teamsOf(&crashingBlob{Store: tb, ok: 3}, nil)}
	st, err := e.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Batches != 2 || st.Jobs != 3 || len(st.TeamFailures) != 2 || st.TeamFiles != 3 {
		t.Fatalf("stats %+v; want 2 batches, 3 team files, then a failure in each batch", st)
	}
	for i, fl := range st.TeamFailures {
		if fl.Batch != int64(i+1) || fl.Team != withDest || !strings.Contains(fl.Error(), "injected") {
			t.Errorf("failure %d: %v", i, fl)
		}
	}
	for _, id := range []string{f.Resim, f.Tiles, f.Resim2} {
		if _, done, _ := s.JobExported(t.Context(), id); !done {
			t.Errorf("job %s not exported", id)
		}
	}
	plat := rowKeys(t, pdir)
	for _, table := range history.Tables {
		if int64(len(plat[table])) != f.Rows[table] {
			t.Errorf("platform %s: %d rows; want %d", table, len(plat[table]), f.Rows[table])
		}
	}
	for table, keys := range rowKeys(t, filepath.Join(tdir, history.TeamPrefix)) {
		if len(slices.Compact(slices.Clone(keys))) != len(keys) {
			t.Errorf("team %s: a row twice", table)
		}
		for _, k := range keys {
			if !strings.HasPrefix(k, withDest+"|") {
				t.Errorf("team %s: row %s", table, k)
			}
		}
	}

	// Teams failing for a team: the same, once per batch of its jobs.
	s2 := historytest.OpenStore(t)
	historytest.Seed(t, s2)
	pb2, _ := newBlob(t)
	calls := 0
	e2 := &history.Exporter{Store: s2, Blob: pb2, BatchJobs: 2, Teams: func(_ context.Context, team string) (blob.Store, bool, error) {
		calls++
		return nil, false, errors.New("injected: no destinations")
	}}
	st, err = e2.Run(t.Context())
	if err != nil || st.Batches != 2 || len(st.TeamFailures) != 3 || st.TeamFiles != 0 || calls != 2 {
		t.Fatalf("run with failing Teams: %+v, %v (%d calls); want 2 batches and failures (batch 1: both teams; 2: perception), 2 calls", st, err, calls)
	}
}

func TestTeamStores(t *testing.T) {
	s := historytest.OpenStore(t)
	ctx := t.Context()
	if err := s.PutLogDestination(ctx, store.LogDestination{Team: "bad", URL: "gs://nope/x", AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "sekrit-do-not-show", UpdatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	teams := history.TeamStores(s)
	if b, ok, err := teams(ctx, withoutDest); b != nil || ok || err != nil {
		t.Errorf("team without a destination: %v, %v, %v; want none", b, ok, err)
	}
	_, ok, err := teams(ctx, "bad")
	if err == nil || ok || strings.Contains(err.Error(), "sekrit") {
		t.Errorf("team with a bad destination: %v, %v", ok, err)
	}
}
