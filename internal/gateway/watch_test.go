package gateway_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/store"
)

// countingStore counts the job reads and group-count reads the gateway
// makes.
type countingStore struct {
	store.Store
	getJob, rangeStats atomic.Int64
}

func (c *countingStore) GetJob(ctx context.Context, id string) (*store.Job, error) {
	c.getJob.Add(1)
	return c.Store.GetJob(ctx, id)
}

func (c *countingStore) TaskRangeStats(ctx context.Context, id string, r []store.IndexRange) ([]store.RangeStats, error) {
	c.rangeStats.Add(1)
	return c.Store.TaskRangeStats(ctx, id, r)
}

// Many watchers of one job share one reader: 50 streams open for 3 s read
// the job about as often as one does (one read each to authorize, then one
// every 250 ms in all), and the group counts once while nothing changes.
// Every stream sees a change the store makes, and the last state of a job
// that ends.
func TestWatchJobShared(t *testing.T) {
	t.Parallel()
	cs := &countingStore{}
	e := newAuthEnvStore(t, func(st store.Store) store.Store { cs.Store = st; return cs })
	c := e.client("platform-admin")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const watchers = 50
	type seen struct {
		mu     sync.Mutex
		states []string
		graphs int
	}
	seens := make([]*seen, watchers)
	var opened, ended sync.WaitGroup
	for i := range watchers {
		seens[i] = &seen{}
		opened.Add(1)
		ended.Add(1)
		go func() {
			defer ended.Done()
			s, err := c.WatchJob(ctx, connect.NewRequest(&apiv1.WatchJobRequest{JobId: e.jobA, Groups: true}))
			if err != nil {
				t.Error(err)
				opened.Done()
				return
			}
			first := true
			for s.Receive() {
				seens[i].mu.Lock()
				if j := s.Msg().Job; j != nil {
					seens[i].states = append(seens[i].states, j.State)
				}
				if s.Msg().Graph != nil {
					seens[i].graphs++
				}
				seens[i].mu.Unlock()
				if first {
					opened.Done()
					first = false
				}
			}
			if first {
				opened.Done()
			}
		}()
	}
	opened.Wait()
	before, statsBefore := cs.getJob.Load(), cs.rangeStats.Load()
	time.Sleep(3 * time.Second)
	reads, stats := cs.getJob.Load()-before, cs.rangeStats.Load()-statsBefore
	// 3 s at one read per 250 ms is 12; allow for scheduling.
	if reads > 20 {
		t.Errorf("%d job reads in 3 s with %d watchers; want one shared reader (about 12)", reads, watchers)
	}
	if stats > 1 {
		t.Errorf("%d group-count reads in 3 s of an unchanged job; want none after the first", stats)
	}
	// The job ends: every watcher gets the last state and its stream ends.
	now := time.Now()
	if err := e.st.Apply(context.Background(), &store.Batch{
		Tasks: []store.TaskUpdate{{JobID: e.jobA, Index: 0, State: store.TaskSucceeded, Attempts: 1, StartedAt: now.Add(-time.Second), FinishedAt: now}},
		Jobs:  []store.JobUpdate{{ID: e.jobA, State: store.JobSucceeded, Counts: store.TaskCounts{Succeeded: 1}, FinishedAt: now}},
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { ended.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the streams did not end after the job did")
	}
	// The job runs again (a retry) at once: a new watcher follows the new
	// run, not the ended reader's last state.
	if err := e.st.Apply(context.Background(), &store.Batch{
		Jobs: []store.JobUpdate{{ID: e.jobA, State: store.JobRunning, Counts: store.TaskCounts{Queued: 1}, StartedAt: now}},
	}); err != nil {
		t.Fatal(err)
	}
	s, err := c.WatchJob(ctx, connect.NewRequest(&apiv1.WatchJobRequest{JobId: e.jobA}))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Receive() || s.Msg().Job.GetState() != "running" {
		t.Errorf("a watch opened right after the job ran again: %v %v, want it running", s.Msg(), s.Err())
	}
	s.Close()
	for i, s := range seens {
		if n := len(s.states); n == 0 || s.states[n-1] != "succeeded" {
			t.Errorf("watcher %d saw states %v, want the last to be succeeded", i, s.states)
		}
		if s.graphs < 2 {
			t.Errorf("watcher %d got %d graphs, want the first and the one after the end", i, s.graphs)
		}
	}
}
