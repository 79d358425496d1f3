package logarchive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/blob"
	"github.com/haul-dev/haul/internal/logs"
	"github.com/haul-dev/haul/internal/s3test"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/sqlite"
)

func TestWithin(t *testing.T) {
	t.Parallel()
	team := "s3://ml-logs/haul?region=eu-west-1"
	for _, c := range []struct {
		job string
		ok  bool
	}{
		{"s3://ml-logs/haul", true},
		{"s3://ml-logs/haul/", true},
		{"s3://ml-logs/haul/nightly/", true},
		{"s3://ml-logs/haul/nightly?region=eu-west-1", true},
		{"s3://ml-logs/haulx/", false},
		{"s3://ml-logs/", false},
		{"s3://other/haul/", false},
		{"s3://ml-logs/haul/?region=us-east-1", false},
		{"s3://ml-logs/haul/?endpoint=http://evil:9000", false},
	} {
		if err := Within(team, c.job); (err == nil) != c.ok {
			t.Errorf("Within(%s, %s) = %v, want ok %v", team, c.job, err, c.ok)
		}
	}
}

// fixture is a finished job with three attempts' logs in the platform's
// store: two in one pack, one in an object of its own.
type fixture struct {
	st       *sqlite.Store
	platform blob.Store
	job      *store.Job
	logs     map[[2]int32]string // stdout by task, attempt
}

func setup(t *testing.T, dest string) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "haul.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	platform, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1_800_000_000, 0).UTC()
	j := &store.Job{ID: store.NewJobID(at, strings.NewReader(strings.Repeat("x", 64))), Name: "j", Namespace: "ml", LogDestination: dest,
		Tiers: []store.Tier{{Name: "default", CPU: 1, MemoryBytes: 1 << 30}}, CreatedAt: at, Spec: []byte("x")}
	tasks := []store.Task{{Index: 0, Key: "prep", Argv: []string{"true"}, State: store.TaskBlocked}, {Index: 1, Key: "sim-1", Argv: []string{"true"}, State: store.TaskBlocked}}
	if err := st.CreateJob(ctx, j, tasks); err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(ctx, &store.Batch{Jobs: []store.JobUpdate{{ID: j.ID, State: store.JobSucceeded, StartedAt: at, FinishedAt: at.Add(time.Minute)}}}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, platform: platform, job: j, logs: map[[2]int32]string{}}
	var pack bytes.Buffer
	var entries []store.LogEntry
	put := func(task, attempt int32, out string, key string, buf *bytes.Buffer) {
		var frames []byte
		frames, _ = logs.AppendFrame(frames, logs.Stdout, 1, []byte(out))
		frames, _ = logs.AppendFrame(frames, logs.Stderr, 2, []byte("err "+out))
		off := int64(buf.Len())
		info, err := logs.WriteEntry(buf, func() (io.Reader, error) { return bytes.NewReader(frames), nil })
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, store.LogEntry{JobID: j.ID, TaskIndex: task, Attempt: attempt, Object: key, Offset: off, Length: info.Length,
			StdoutBytes: info.StdoutBytes, StderrBytes: info.StderrBytes})
		f.logs[[2]int32{task, attempt}] = out
	}
	packKey := "logs/" + j.ID + "/packs/w1-000001"
	put(0, 1, "prep says hi\n", packKey, &pack)
	put(1, 1, "first try\n", packKey, &pack)
	var own bytes.Buffer
	put(1, 2, strings.Repeat("big\n", 1000), "logs/"+j.ID+"/1/2/log", &own)
	for k, b := range map[string][]byte{packKey: pack.Bytes(), "logs/" + j.ID + "/1/2/log": own.Bytes()} {
		if err := platform.Put(ctx, k, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PutLogEntries(ctx, entries); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestArchiveToTeamBucket copies a job's logs to its team's bucket on a
// real S3 server, with the team's credentials: the packs and the own
// object land under the destination's prefix, the index names every
// attempt, and a plain ranged read of an index line's stdout range is the
// attempt's stdout. Copying again writes the same keys.
func TestArchiveToTeamBucket(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t, "ml-logs")
	dest := strings.Replace(bucket, "s3://ml-logs", "s3://ml-logs/haul/nightly", 1)
	f := setup(t, dest)
	ctx := context.Background()
	if err := f.st.PutLogDestination(ctx, store.LogDestination{Team: "ml", URL: strings.Replace(bucket, "s3://ml-logs", "s3://ml-logs/haul", 1),
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, UpdatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	clock := f.job.CreatedAt.Add(time.Hour)
	a := New(Config{Store: f.st, Blob: f.platform, Clock: func() time.Time { return clock }})
	n, err := a.Once(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Once: %d, %v", n, err)
	}
	la, err := f.st.GetLogArchive(ctx, f.job.ID)
	if err != nil || la.State != store.ArchiveDone || la.Objects != 3 {
		t.Fatalf("archive state: %+v, %v", la, err)
	}
	// Read the destination as the team's own tools would.
	o := srv.Options("ml-logs")
	teamStore, err := OpenS3(ctx, store.LogDestination{AccessKeyID: o.AccessKeyID, SecretAccessKey: o.SecretAccessKey}, dest)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := teamStore.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{f.job.ID + "/1/2/log", f.job.ID + "/index.jsonl", f.job.ID + "/packs/w1-000001"}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("destination holds %v, want %v", keys, want)
	}
	r, err := teamStore.Get(ctx, f.job.ID+"/index.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sc := bufio.NewScanner(r)
	lines := 0
	for sc.Scan() {
		var l IndexLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		lines++
		rr, err := teamStore.GetRange(ctx, l.Object, l.StdoutOffset, l.StdoutBytes)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rr)
		rr.Close()
		if got := string(b); got != f.logs[[2]int32{l.TaskIndex, l.Attempt}] {
			t.Fatalf("%s attempt %d: stdout range reads %q", l.Task, l.Attempt, got)
		}
		re, _ := teamStore.GetRange(ctx, l.Object, l.StderrOffset, l.StderrBytes)
		b, _ = io.ReadAll(re)
		re.Close()
		if string(b) != "err "+f.logs[[2]int32{l.TaskIndex, l.Attempt}] {
			t.Fatalf("%s attempt %d: stderr range reads %q", l.Task, l.Attempt, b)
		}
		if (l.TaskIndex == 0) != (l.Task == "prep") {
			t.Fatalf("index line names task %q for index %d", l.Task, l.TaskIndex)
		}
	}
	if lines != 3 {
		t.Fatalf("index has %d lines, want 3", lines)
	}
	es, err := f.st.ListLogEntries(ctx, store.LogEntryFilter{JobID: f.job.ID, TaskIndex: -1, AfterTask: -1})
	if err != nil || len(es) != 3 || es[0].Destination != dest {
		t.Fatalf("entries after the copy: %+v, %v", es, err)
	}
	// Done: nothing more to copy.
	if n, err := a.Once(ctx); err != nil || n != 0 {
		t.Fatalf("second Once: %d, %v", n, err)
	}
}

// TestArchiveFailureVisible: wrong team credentials; the copy is retried
// with backoff, then given up, and every attempt says why, without the
// secret.
func TestArchiveFailureVisible(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t, "ml-logs")
	f := setup(t, bucket)
	ctx := context.Background()
	const secret = "not-the-secret-1234"
	if err := f.st.PutLogDestination(ctx, store.LogDestination{Team: "ml", URL: bucket, AccessKeyID: srv.AccessKey, SecretAccessKey: secret, UpdatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	clock := f.job.CreatedAt.Add(time.Hour)
	a := New(Config{Store: f.st, Blob: f.platform, MaxTries: 3, Clock: func() time.Time { return clock }})
	for try := 1; try <= 3; try++ {
		if _, err := a.Once(ctx); err != nil {
			t.Fatal(err)
		}
		la, err := f.st.GetLogArchive(ctx, f.job.ID)
		if err != nil || la.Tries != int64(try) || la.Error == "" || strings.Contains(la.Error, secret) {
			t.Fatalf("try %d: %+v, %v", try, la, err)
		}
		if try < 3 {
			if la.State != store.ArchivePending || !la.NextAt.After(clock) {
				t.Fatalf("try %d: %+v, want pending with a backoff", try, la)
			}
			if n, _ := a.Once(ctx); n != 0 {
				t.Fatalf("tried again during the backoff")
			}
			clock = la.NextAt
		} else if la.State != store.ArchiveFailed {
			t.Fatalf("after %d tries: %+v, want failed", try, la)
		}
	}
	es, err := f.st.ListLogEntries(ctx, store.LogEntryFilter{JobID: f.job.ID, TaskIndex: -1, AfterTask: -1})
	if err != nil || len(es) != 3 {
		t.Fatal(es, err)
	}
	for _, e := range es {
		if e.ArchiveError == "" || strings.Contains(e.ArchiveError, secret) || e.Destination != "" {
			t.Fatalf("entry %d/%d: archive error %q, destination %q", e.TaskIndex, e.Attempt, e.ArchiveError, e.Destination)
		}
	}
}
