package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
)

// config is one form of the test.
type config struct {
	name         string
	runnerKills  int
	gatewayKills int
	pgRestarts   int
	tasks        int // `true` tasks of the big job, over all phases
	leaves       int // tasks each step of the dynamic job adds
	leaseTTL     time.Duration
	maxWorkers   int           // per runner
	endTimeout   time.Duration // for the jobs to end after the last fault
	stepTimeout  time.Duration // for a fault's recovery
}

// loadConfig picks the form: short by default (it runs in `make test`),
// full with HAUL_CHAOS=full (`make chaos`).
func loadConfig(t *testing.T) config {
	switch v := os.Getenv("HAUL_CHAOS"); v {
	case "", "short":
		return config{name: "short", runnerKills: 3, gatewayKills: 1, pgRestarts: 1, tasks: 3000, leaves: 20,
			leaseTTL: 4 * time.Second, maxWorkers: 4, endTimeout: 5 * time.Minute, stepTimeout: 2 * time.Minute}
	case "full":
		return config{name: "full", runnerKills: 20, gatewayKills: 20, pgRestarts: 5, tasks: 20000, leaves: 50,
			leaseTTL: 8 * time.Second, maxWorkers: 4, endTimeout: 30 * time.Minute, stepTimeout: 3 * time.Minute}
	default:
		t.Fatalf("HAUL_CHAOS=%q: want short (or unset) or full", v)
		return config{}
	}
}

// seed is HAUL_CHAOS_SEED when set, else a fresh one; the test logs it.
func seed(t *testing.T) uint64 {
	if v := os.Getenv("HAUL_CHAOS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("HAUL_CHAOS_SEED=%q: want an unsigned integer", v)
		}
		return s
	}
	return rand.Uint64()
}

// fault kinds.
const (
	killRunner  = "runner"
	killGateway = "gateway"
	restartDB   = "postgres"
)

// faultRecord is what one fault did and how long the system took to
// recover from it.
type faultRecord struct {
	kind   string
	target string
	pause  time.Duration // how long the component stayed down
	shards int           // shard leases the killed runner held
	// recovery: for a runner, from the kill until each shard it held was
	// held by a live runner (the failover); for PostgreSQL, from its
	// restart until all shards were held by live runners; for a gateway,
	// from the kill until it answered again.
	recovery time.Duration
}

// apiLoad is clients calling GetJob on both jobs in a loop, directly on
// each live gateway and through the proxy, counting what fails and during
// which kind of fault.
type apiLoad struct {
	fault  atomic.Pointer[string] // the kind of the fault in progress; nil when none
	calls  atomic.Int64
	errs   atomic.Int64
	mu     sync.Mutex
	byCode map[string]int
	byKind map[string]int // errors by the fault in progress ("none" outside faults)
	sample []string       // the first few errors while no fault was in progress
}

func (l *apiLoad) setFault(kind string) {
	if kind == "" {
		l.fault.Store(nil)
	} else {
		l.fault.Store(&kind)
	}
}

func (l *apiLoad) run(ctx context.Context, c apiv1connect.JobServiceClient, down *atomic.Bool, jobs []string) {
	for i := 0; ctx.Err() == nil; i++ {
		if down == nil || !down.Load() {
			before := l.fault.Load()
			_, err := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: jobs[i%len(jobs)]}))
			if ctx.Err() != nil {
				return
			}
			l.calls.Add(1)
			if err != nil {
				l.errs.Add(1)
				// An error is put down to the fault in progress when the call
				// began or, failing that, when it ended.
				kind := before
				if kind == nil {
					kind = l.fault.Load()
				}
				l.mu.Lock()
				l.byCode[connect.CodeOf(err).String()]++
				if kind == nil {
					l.byKind["none"]++
					if len(l.sample) < 5 {
						l.sample = append(l.sample, time.Now().Format(time.TimeOnly)+" "+err.Error())
					}
				} else {
					l.byKind[*kind]++
				}
				l.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestChaos runs the topology's chaos test: see the package doc.
func TestChaos(t *testing.T) {
	cfg := loadConfig(t)
	sd := seed(t)
	t.Logf("chaos %s form, seed %d (HAUL_CHAOS_SEED=%d repeats the random choices)", cfg.name, sd, sd)
	rng := rand.New(rand.NewPCG(sd, sd^0x9e3779b97f4a7c15))
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo))) }

	faults := make([]string, 0, cfg.runnerKills+cfg.gatewayKills+cfg.pgRestarts)
	for range cfg.runnerKills {
		faults = append(faults, killRunner)
	}
	for range cfg.gatewayKills {
		faults = append(faults, killGateway)
	}
	for range cfg.pgRestarts {
		faults = append(faults, restartDB)
	}
	rng.Shuffle(len(faults), func(i, j int) { faults[i], faults[j] = faults[j], faults[i] })
	nf := len(faults)
	perPhase := cfg.tasks / (nf + 1)

	h := setup(t, cfg.leaseTTL, cfg.maxWorkers)
	ctx := t.Context()
	api := apiClient(h.proxy.url(), h.token)
	if err := openGate(h.gates, 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	submit := func(spec string) string {
		t.Helper()
		resp, err := api.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: []byte(spec), Filename: "chaos.yaml"}))
		if err != nil {
			t.Fatalf("submit: %v\nspec:\n%s", err, spec)
		}
		return resp.Msg.JobId
	}
	dagID := submit(dagSpec(h.gates, nf, perPhase))
	dynID := submit(dynamicSpec(h.gates, haulBin, nf, cfg.leaves))
	jobs := []string{dagID, dynID}
	t.Logf("jobs: big %s (%d tasks), dynamic %s (%d tasks at the end); %d faults: %s",
		dagID, dagTasks(nf, perPhase), dynID, dynamicTasks(nf, cfg.leaves), nf, strings.Join(faults, " "))

	load := &apiLoad{byCode: map[string]int{}, byKind: map[string]int{}}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var loadWG sync.WaitGroup
	gwDown := make([]atomic.Bool, len(h.gateways))
	for i, g := range h.gateways {
		loadWG.Go(func() { load.run(loadCtx, apiClient(g.url(), h.token), &gwDown[i], jobs) })
	}
	loadWG.Go(func() { load.run(loadCtx, apiClient(h.proxy.url(), h.token), nil, jobs) })
	defer func() { stopLoad(); loadWG.Wait() }()

	var records []faultRecord
	for k, kind := range faults {
		time.Sleep(between(0, 1500*time.Millisecond))
		load.setFault(kind)
		var rec faultRecord
		var err error
		switch kind {
		case killRunner:
			rec, err = h.killRunner(ctx, rng.IntN(len(h.runners)), between(200*time.Millisecond, 3*time.Second), cfg.stepTimeout)
		case killGateway:
			i := rng.IntN(len(h.gateways))
			rec, err = h.killGateway(ctx, i, &gwDown[i], between(200*time.Millisecond, 2*time.Second))
		case restartDB:
			rec, err = h.restartDB(ctx, between(500*time.Millisecond, 3*time.Second), cfg.stepTimeout)
		}
		load.setFault("")
		if err != nil {
			t.Fatalf("fault %d (%s): %v", k+1, kind, err)
		}
		records = append(records, rec)
		t.Logf("fault %d/%d: %s %s down %v, %d shards held; recovered in %v", k+1, nf, rec.kind, rec.target,
			rec.pause.Round(time.Millisecond), rec.shards, rec.recovery.Round(time.Millisecond))
		if d := h.deaths(); len(d) > 0 {
			t.Fatalf("processes died without being killed: %s", strings.Join(d, "; "))
		}
		// The next phase of work starts now, so that the next fault strikes
		// while it is handed out.
		if err := openGate(h.gates, k+1); err != nil {
			t.Fatal(err)
		}
	}
	if err := openGate(h.gates, nf+1); err != nil {
		t.Fatal(err)
	}

	ended := map[string]*apiv1.Job{}
	deadline := time.Now().Add(cfg.endTimeout)
	for len(ended) < len(jobs) {
		for _, id := range jobs {
			if ended[id] != nil {
				continue
			}
			resp, err := api.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
			if err == nil && resp.Msg.Job.State != "running" && resp.Msg.Job.State != "pending" {
				ended[id] = resp.Msg.Job
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs not ended %v after the last fault: %s", cfg.endTimeout, h.jobStates(ctx, api, jobs))
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start)
	stopLoad()
	loadWG.Wait()

	if d := h.deaths(); len(d) > 0 {
		t.Errorf("processes died without being killed: %s", strings.Join(d, "; "))
	}
	want := map[string]int64{dagID: int64(dagTasks(nf, perPhase)), dynID: int64(dynamicTasks(nf, cfg.leaves))}
	reruns, lost, failed := 0, 0, 0
	for _, id := range jobs {
		j := ended[id]
		if j.State != "succeeded" || j.TaskCount != want[id] || j.Counts.GetSucceeded() != want[id] {
			t.Errorf("job %s (%s): %s with %d tasks, counts %v; want succeeded with %d tasks, all succeeded", j.Name, id, j.State, j.TaskCount, j.Counts, want[id])
		}
		h.pgMu.Lock()
		dbURL := h.pg.URL()
		h.pgMu.Unlock()
		r, err := checkAttempts(ctx, dbURL, id)
		if err != nil {
			t.Fatalf("read attempts of %s: %v", id, err)
		}
		if int64(r.tasks) != want[id] {
			t.Errorf("job %s: %d tasks stored, want %d", j.Name, r.tasks, want[id])
		}
		if r.nProblem > 0 {
			t.Errorf("job %s: %d tasks break \"ended, succeeded exactly once\"; the first:\n  %s", j.Name, r.nProblem, strings.Join(r.problems, "\n  "))
		}
		reruns += r.reruns
		lost += r.lost
		failed += r.failed
		t.Logf("job %s: %d tasks, %d attempts (%d run again: %d lost, %d failed)", j.Name, r.tasks, r.attempts, r.reruns, r.lost, r.failed)
	}

	var failovers, pgRecover, gwDownFor []time.Duration
	for _, r := range records {
		switch r.kind {
		case killRunner:
			if r.shards > 0 {
				failovers = append(failovers, r.recovery)
			}
		case restartDB:
			pgRecover = append(pgRecover, r.recovery)
		case killGateway:
			gwDownFor = append(gwDownFor, r.recovery)
		}
	}
	load.mu.Lock()
	codes, kinds, calm := fmt.Sprint(load.byCode), fmt.Sprint(load.byKind), load.byKind["none"]
	sample := strings.Join(load.sample, "; ")
	load.mu.Unlock()
	// Reads go to the store through whichever gateway answers: between
	// faults, with every component back, none may fail.
	if calm > 0 {
		t.Errorf("%d API calls failed while no fault was in progress; the first: %s", calm, sample)
	}
	t.Logf("SUMMARY chaos %s seed=%d: %d runner kills (failover over %d with shards: p50 %v p99 %v max %v; TTL %v), "+
		"%d gateway kills (answering again after p50 %v max %v), %d PostgreSQL restarts (all shards live again p50 %v max %v); "+
		"tasks %d+%d, re-run attempts %d (%d lost, %d failed); API calls %d, errors %d (by fault in progress %s; by code %s); duration %v",
		cfg.name, sd, cfg.runnerKills, len(failovers), pct(failovers, 50), pct(failovers, 99), pct(failovers, 100), cfg.leaseTTL,
		cfg.gatewayKills, pct(gwDownFor, 50), pct(gwDownFor, 100), cfg.pgRestarts, pct(pgRecover, 50), pct(pgRecover, 100),
		want[dagID], want[dynID], reruns, lost, failed, load.calls.Load(), load.errs.Load(), kinds, codes, took.Round(time.Second))
}

// pct returns the p-th percentile (nearest rank) of ds, rounded to the
// millisecond; 0 for none.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(i, 0)].Round(time.Millisecond)
}

// killRunner kills runner i with SIGKILL, starts it again after pause,
// and measures the failover: from the kill until every shard it held is
// held by a live runner.
func (h *harness) killRunner(ctx context.Context, i int, pause, timeout time.Duration) (faultRecord, error) {
	p := h.runners[i]
	rec := faultRecord{kind: killRunner, target: p.name, pause: pause}
	v, err := h.leases(ctx)
	if err != nil {
		return rec, fmt.Errorf("read leases before the kill: %w", err)
	}
	holder, ok := v.holderAt(p.url())
	if !ok {
		return rec, fmt.Errorf("%s holds no live membership lease before the kill", p.name)
	}
	held := v.heldBy(holder)
	rec.shards = len(held)
	p.kill()
	killed := time.Now()
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(pause)
		restarted <- p.start(ctx)
	}()
	at, err := h.waitShards(ctx, held, holder, timeout)
	if err != nil {
		<-restarted
		return rec, fmt.Errorf("failover after killing %s (holder %s): %w", p.name, holder, err)
	}
	rec.recovery = at.Sub(killed)
	if err := <-restarted; err != nil {
		return rec, err
	}
	return rec, nil
}

// killGateway kills gateway i with SIGKILL and starts it again after
// pause; down marks it away for the clients that call it directly.
func (h *harness) killGateway(ctx context.Context, i int, down *atomic.Bool, pause time.Duration) (faultRecord, error) {
	p := h.gateways[i]
	rec := faultRecord{kind: killGateway, target: p.name, pause: pause}
	down.Store(true)
	p.kill()
	killed := time.Now()
	time.Sleep(pause)
	if err := p.start(ctx); err != nil {
		return rec, err
	}
	rec.recovery = time.Since(killed)
	down.Store(false)
	return rec, nil
}

// restartDB restarts PostgreSQL and measures how long after its return
// every shard is held by a live runner again.
func (h *harness) restartDB(ctx context.Context, pause, timeout time.Duration) (faultRecord, error) {
	rec := faultRecord{kind: restartDB, target: "postgres", pause: pause}
	if err := h.restartPostgres(ctx, pause); err != nil {
		return rec, err
	}
	back := time.Now()
	// Leases renewed just before the stop may still look live; wait for a
	// full TTL's worth of renewals by asking for leases renewed after the
	// restart.
	at, err := h.waitShardsRenewedAfter(ctx, back, timeout)
	if err != nil {
		return rec, fmt.Errorf("after restarting PostgreSQL: %w", err)
	}
	rec.recovery = at.Sub(back)
	return rec, nil
}

// waitShardsRenewedAfter waits until every shard lease is held by a live
// runner and was renewed (its expiry moved) after since: the runners
// hold them again, not just leases from before an outage that have yet to
// run out.
func (h *harness) waitShardsRenewedAfter(ctx context.Context, since time.Time, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		v, err := h.leases(ctx)
		if err == nil {
			ok := true
			for _, n := range allShards() {
				// A lease is renewed for a full TTL from its renewal; one whose
				// expiry lies more than a TTL past since was renewed after it.
				if !v.liveHeld(n, "") || !v.shards[n].ExpiresAt.After(since.Add(h.leaseTTL())) {
					ok = false
					break
				}
			}
			if ok {
				return v.at, nil
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("shards not all held by live runners after %v (last store error: %v)", timeout, lastErr)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// jobStates describes the jobs for a failure message.
func (h *harness) jobStates(ctx context.Context, api apiv1connect.JobServiceClient, jobs []string) string {
	var out []string
	for _, id := range jobs {
		resp, err := api.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
		if err != nil {
			out = append(out, id+": "+err.Error())
			continue
		}
		j := resp.Msg.Job
		out = append(out, fmt.Sprintf("%s %s %s %d tasks %v", j.Name, id, j.State, j.TaskCount, j.Counts))
	}
	return strings.Join(out, "; ")
}
