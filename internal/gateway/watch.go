package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/haul-dev/haul/internal/auth"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/store"
)

// Live pages without load: every WatchJob stream of one job on one gateway
// shares one reader (jobWatch), which reads the job row every
// watchInterval and its group counts at most every graphInterval while
// they change, and only while some watcher asked for them. Each stream
// sends the newest snapshot it has not sent; a slow client skips
// snapshots instead of queueing them. 100 open pages of one job cost what
// one does (docs/benchmarks.md measures it).
var (
	watchInterval = 250 * time.Millisecond
	graphInterval = 2 * time.Second
	// listInterval is how often a WatchJobs stream runs its list again.
	listInterval = 2 * time.Second
	// maxWatch ends a stream after this long; the page opens a new one,
	// which checks the caller's credential again (a revoked token stops
	// seeing the job within it).
	maxWatch = 10 * time.Minute
)

type watchHub struct {
	mu   sync.Mutex
	jobs map[string]*jobWatch
}

// jobWatch is the shared reader of one job.
type jobWatch struct {
	id   string
	subs map[*watcher]struct{}

	// Guarded by the hub's mu:
	job      *apiv1.Job
	graph    *apiv1.GetJobGraphResponse
	jobVer   int
	graphVer int
	err      error // the reader stopped: the job is gone
	done     bool  // terminal, and its last state read
}

type watcher struct {
	groups bool
	wake   chan struct{} // capacity 1
}

func (w *watcher) notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// WatchJob streams the job's changes (see the proto), from the shared
// reader of the job.
func (g *Gateway) WatchJob(ctx context.Context, req *connect.Request[apiv1.WatchJobRequest], stream *connect.ServerStream[apiv1.WatchJobResponse]) error {
	j, err := g.job(ctx, req.Msg.JobId)
	if err != nil {
		return err
	}
	if err := g.authorizeJob(ctx, auth.ReadJob, j); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, maxWatch)
	defer cancel()
	w := &watcher{groups: req.Msg.Groups, wake: make(chan struct{}, 1)}
	jw := g.subscribe(j.ID, w)
	defer g.unsubscribe(jw, w)
	sentJob, sentGraph := 0, 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.wake:
		}
		g.watch.mu.Lock()
		msg := &apiv1.WatchJobResponse{}
		if jw.jobVer > sentJob {
			msg.Job, sentJob = jw.job, jw.jobVer
		}
		if w.groups && jw.graphVer > sentGraph {
			msg.Graph, sentGraph = jw.graph, jw.graphVer
		}
		done, werr := jw.done, jw.err
		g.watch.mu.Unlock()
		if msg.Job != nil || msg.Graph != nil {
			if err := stream.Send(msg); err != nil {
				return err
			}
		}
		if werr != nil {
			return werr
		}
		if done {
			// The reader is done only once the terminal state (and the
			// graph after it) were read: both went out above.
			return nil
		}
	}
}

// subscribe adds w to the job's reader, starting the reader if it is the
// first watcher, and wakes w when a snapshot is there already.
func (g *Gateway) subscribe(id string, w *watcher) *jobWatch {
	g.watch.mu.Lock()
	defer g.watch.mu.Unlock()
	if g.watch.jobs == nil {
		g.watch.jobs = map[string]*jobWatch{}
	}
	jw := g.watch.jobs[id]
	if jw == nil {
		jw = &jobWatch{id: id, subs: map[*watcher]struct{}{}}
		g.watch.jobs[id] = jw
		go g.readJob(jw)
	}
	jw.subs[w] = struct{}{}
	if jw.job != nil || jw.err != nil {
		w.notify()
	}
	return jw
}

func (g *Gateway) unsubscribe(jw *jobWatch, w *watcher) {
	g.watch.mu.Lock()
	defer g.watch.mu.Unlock()
	delete(jw.subs, w)
}

// readJob is a job's shared reader: it runs while the job has watchers.
func (g *Gateway) readJob(jw *jobWatch) {
	var lastGraph time.Time
	graphStale := true
	failures := 0
	for {
		g.watch.mu.Lock()
		wantGraph := false
		for w := range jw.subs {
			wantGraph = wantGraph || w.groups
		}
		if len(jw.subs) == 0 || jw.done || jw.err != nil {
			// Nobody watches, or nothing more will change: the next
			// watcher starts a fresh reader.
			if g.watch.jobs[jw.id] == jw {
				delete(g.watch.jobs, jw.id)
			}
			g.watch.mu.Unlock()
			return
		}
		g.watch.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		j, err := g.cfg.Store.GetJob(ctx, jw.id)
		var graph *apiv1.GetJobGraphResponse
		var jp *apiv1.Job
		if err == nil {
			jp = JobProto(j)
			terminal := store.JobState(jp.State).Terminal()
			g.watch.mu.Lock()
			changed := jw.job == nil || !proto.Equal(jw.job, jp)
			g.watch.mu.Unlock()
			graphStale = graphStale || changed
			now := time.Now()
			if wantGraph && graphStale && (terminal || now.Sub(lastGraph) >= graphInterval) {
				graph, err = g.jobGraph(ctx, j)
				if err == nil {
					lastGraph, graphStale = now, false
				}
			}
		}
		cancel()
		g.watch.mu.Lock()
		switch {
		case errors.Is(err, store.ErrNotFound):
			jw.err = connect.NewError(connect.CodeNotFound, err)
		case err != nil:
			failures++
			g.cfg.Logger.Warn("watch job: reading the job failed; retrying", "job", jw.id, "err", err)
		default:
			failures = 0
			if jw.job == nil || !proto.Equal(jw.job, jp) {
				jw.job = jp
				jw.jobVer++
			}
			if graph != nil && (jw.graph == nil || !proto.Equal(jw.graph, graph)) {
				jw.graph = graph
				jw.graphVer++
			}
			// Done once the terminal state is read and, when a watcher
			// wants it, the graph after it.
			jw.done = store.JobState(jp.State).Terminal() && (!wantGraph || !graphStale)
		}
		if (jw.done || jw.err != nil) && g.watch.jobs[jw.id] == jw {
			// Leave the map now, under the lock that set done: a
			// watcher that comes after (the job retried meanwhile) starts
			// a fresh reader instead of getting this one's last state.
			delete(g.watch.jobs, jw.id)
		}
		for w := range jw.subs {
			w.notify()
		}
		g.watch.mu.Unlock()
		wait := watchInterval
		if failures > 0 {
			wait = min(time.Duration(failures)*time.Second, 10*time.Second)
		}
		time.Sleep(wait)
	}
}

// WatchJobs streams the first page of a job list whenever it changes.
func (g *Gateway) WatchJobs(ctx context.Context, req *connect.Request[apiv1.ListJobsRequest], stream *connect.ServerStream[apiv1.ListJobsResponse]) error {
	ctx, cancel := context.WithTimeout(ctx, maxWatch)
	defer cancel()
	var last *apiv1.ListJobsResponse
	for {
		resp, err := g.ListJobs(ctx, connect.NewRequest(req.Msg))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if last == nil || !proto.Equal(last, resp.Msg) {
			if err := stream.Send(resp.Msg); err != nil {
				return err
			}
			last = resp.Msg
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(listInterval):
		}
	}
}
