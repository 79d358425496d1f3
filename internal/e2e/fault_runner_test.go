package e2e

// Faults between workers, runner and store, made real: a proxy that loses
// one poll reply, a worker that reports absurd figures, a PostgreSQL that
// is stopped and started, and a frozen runner whose lease another one
// takes. Each test reports the figures that docs/operations.md's
// failure-modes table records.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/pgtest"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/postgres"
)

// dropProxy forwards workers' calls to the server and, when armed, loses
// the reply of the next poll that hands out work: the runner has handed
// the attempts out and recorded them, and the worker never hears of them
// (its connection is cut without an answer).
type dropProxy struct {
	url     string
	target  string
	armed   atomic.Bool
	polls   atomic.Int64
	dropped atomic.Int64
}

func startDropProxy(t *testing.T, target string) *dropProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{url: "http://" + ln.Addr().String(), target: target}
	client := &http.Client{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/Poll") {
			p.polls.Add(1)
			var pr taskhostv1.PollResponse
			if resp.StatusCode == http.StatusOK && proto.Unmarshal(out, &pr) == nil && len(pr.Assignments) > 0 && p.armed.CompareAndSwap(true, false) {
				p.dropped.Add(int64(len(pr.Assignments)))
				panic(http.ErrAbortHandler) // the reply is lost: the connection is cut
			}
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(out)
	}), ErrorLog: nil}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return p
}

func jobEnded(j *apiv1.Job) bool { return j.State != "running" && j.State != "pending" }

// One poll reply lost on the way to a worker: the attempts it handed out
// are declared lost at the worker's next poll and run again; the job
// succeeds with every task once, and nobody spins.
func TestFaultLostPollReply(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, dbURL string) {
		addr, data := freePort(t), t.TempDir()
		p := startDropProxy(t, "http://"+addr)
		p.armed.Store(true)
		s := startUp(t, addr, data, dbURL, "--runner-url", p.url)
		const n = 30
		id := submit(t, s, fmt.Sprintf("name: lost-reply\ntasks:\n  - key: \"t-{i}\"\n    foreach: {range: [0, %d]}\n    command: [sh, -c, \"sleep 0.1; echo {i}\"]\n", n))
		start := time.Now()
		j := waitJob(t, s.client(), id, 2*time.Minute, jobEnded)
		took := time.Since(start)
		if j.State != "succeeded" {
			t.Fatalf("job %s (%v), want succeeded", j.State, j.Counts)
		}
		if p.dropped.Load() == 0 {
			t.Fatal("the proxy lost no reply: the fault was not made")
		}
		lost := checkOnce(t, s.client(), id)
		if lost != int(p.dropped.Load()) {
			t.Errorf("%d attempts recorded lost, want the %d the lost reply carried", lost, p.dropped.Load())
		}
		// Without the fix a worker polled about 530 times a second; a
		// held poll per task event is a few per task.
		if polls := p.polls.Load(); polls > 10*n {
			t.Errorf("%d polls for %d tasks: workers spin", polls, n)
		}
		t.Logf("%s: reply with %d assignments lost; job succeeded in %v with %d polls", t.Name(), p.dropped.Load(), took.Round(time.Millisecond), p.polls.Load())
	})
}

// healthz returns the server's health status code and text.
func healthz(url string) (int, string) {
	cl := &http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(url + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// PostgreSQL stopped for 4.4 s (under the lease: the runner keeps its
// state) and for 25 s (past it: the runner drops its state and reloads):
// the API answers unavailable meanwhile, the process stays up, health says
// why, and the jobs end with every task once.
func TestFaultDatabaseOutage(t *testing.T) {
	t.Parallel()
	dir, err := pgtest.MkdirTemp()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pg, err := pgtest.StartServer(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop() })
	s := startUp(t, freePort(t), t.TempDir(), pg.URL())
	c := s.client()
	for _, outage := range []time.Duration{4400 * time.Millisecond, 25 * time.Second} {
		id := submit(t, s, "name: outage\ntasks:\n  - key: \"t-{i}\"\n    foreach: {range: [0, 40]}\n    command: [sh, -c, \"sleep 0.5; echo {i}\"]\n")
		waitJob(t, c, id, time.Minute, func(j *apiv1.Job) bool { return j.Counts.GetSucceeded() >= 4 })
		if err := pg.Stop(); err != nil {
			t.Fatal(err)
		}
		down := time.Now()
		unavailable, unhealthy := false, ""
		for time.Since(down) < outage {
			_, err := c.GetJob(context.Background(), connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
			if connect.CodeOf(err) == connect.CodeUnavailable {
				unavailable = true
			}
			if code, text := healthz(s.url()); code == http.StatusServiceUnavailable {
				unhealthy = text
			}
			time.Sleep(200 * time.Millisecond)
		}
		if pg, err = pgtest.StartServer(t.Context(), dir); err != nil {
			t.Fatal(err)
		}
		back := time.Now()
		select {
		case <-s.exited:
			t.Fatalf("haul up exited during a %v outage: %s", outage, s.log)
		default:
		}
		if !unavailable {
			t.Errorf("%v outage: the API never answered unavailable", outage)
		}
		if unhealthy == "" {
			t.Errorf("%v outage: /healthz never said unhealthy", outage)
		}
		var healthyAfter time.Duration
		for {
			if code, _ := healthz(s.url()); code == http.StatusOK {
				healthyAfter = time.Since(back)
				break
			}
			if time.Since(back) > time.Minute {
				t.Fatalf("%v outage: not healthy a minute after the database came back", outage)
			}
			time.Sleep(50 * time.Millisecond)
		}
		j := waitJob(t, c, id, 3*time.Minute, jobEnded)
		if j.State != "succeeded" {
			t.Fatalf("%v outage: job %s (%v)", outage, j.State, j.Counts)
		}
		lost := checkOnce(t, c, id)
		t.Logf("database down %v: health said %q; healthy %v after it came back; job done %v after; %d attempts lost and retried",
			outage, unhealthy, healthyAfter.Round(time.Millisecond), time.Since(back).Round(time.Millisecond), lost)
	}
}

// A runner frozen (SIGSTOP) past its leases: a second server takes its
// shards and finishes the job; when the first wakes, its writes are fenced
// (the shard leases changed hands and epochs) and it drops the state it
// held without overwriting anything, then rejoins the runner group.
func TestFaultFrozenRunnerIsFenced(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.Start(t)
	a := startUp(t, freePort(t), t.TempDir(), dbURL)
	c := a.client()
	id := submit(t, a, "name: fenced\ntasks:\n  - key: \"t-{i}\"\n    foreach: {range: [0, 40]}\n    command: [sh, -c, \"sleep 0.3; echo {i}\"]\n")
	waitJob(t, c, id, time.Minute, func(j *apiv1.Job) bool { return j.Counts.GetSucceeded() >= 4 && j.Counts.GetRunning() > 0 })
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	b := startUp(t, freePort(t), t.TempDir(), dbURL)
	takeover := time.Since(frozen)
	// Wake a only once b owns the job's shard: a's view of it is stale.
	for deadline := time.Now().Add(time.Minute); !ownsShard(t, dbURL, id, b.url()); {
		if time.Now().After(deadline) {
			t.Fatalf("the second server never took the job's shard: %s", b.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	cb := b.client()
	j := waitJob(t, cb, id, 3*time.Minute, jobEnded)
	if j.State != "succeeded" {
		t.Fatalf("job %s (%v), want succeeded", j.State, j.Counts)
	}
	// The woken runner notices it lost its shards and says so; it stays up.
	var said string
	for deadline := time.Now().Add(time.Minute); ; {
		if l := a.log.String(); strings.Contains(l, "shard dropped") {
			said = l[strings.Index(l, "shard dropped"):]
			said = said[:min(len(said), 160)]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the woken runner never said it dropped its shards: %s", a.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-a.exited:
		t.Fatalf("the fenced server exited: %s", a.log)
	default:
	}
	lost := checkOnce(t, cb, id)
	after := waitJob(t, cb, id, time.Second, jobEnded)
	if after.State != "succeeded" || after.Counts.GetSucceeded() != 40 {
		t.Fatalf("after the fenced runner woke: job %s %v", after.State, after.Counts)
	}
	t.Logf("second server up %v after the freeze; the woken runner said %q; %d attempts lost and retried", takeover.Round(time.Millisecond), said, lost)
}

// ownsShard reports whether the runner at url holds the lease of job id's
// shard in the store at dbURL.
func ownsShard(t *testing.T, dbURL, id, url string) bool {
	t.Helper()
	st, err := postgres.Open(t.Context(), dbURL, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ls, err := st.ListLeases(t.Context(), store.ShardLease(store.ShardOf(id)))
	if err != nil {
		return false
	}
	for _, l := range ls {
		if l.Address == url && l.ExpiresAt.After(time.Now()) {
			return true
		}
	}
	return false
}
