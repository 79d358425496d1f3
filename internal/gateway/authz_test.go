package gateway_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/blob"
	"github.com/haul-dev/haul/internal/gateway"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/sqlite"
	"github.com/haul-dev/haul/internal/token"
)

// appended records what the gateway hands the runner for AddTasks. It
// stands in for the runner's Appender (the runner itself is exercised end
// to end by the dynamic-DAG e2e tests); the gateway's authorization, which
// this file tests, happens before it is called.
type appended struct{}

func (appended) AddTasks(_ context.Context, _, _ string, _ int32, tasks []store.Task) (int64, error) {
	return int64(len(tasks)), nil
}

// authEnv is a real gateway on a real SQLite store, served over HTTP, with
// the server's real Authenticator over tokens issued into the store.
type authEnv struct {
	st     store.Store
	url    string
	secret token.Secret
	tokens map[string]string // role name -> bearer token
	jobA   string            // a job of team-a, its task "work-a" running attempt 1
	jobB   string            // a job of team-b, its task "work-b" running attempt 1
}

const (
	specA = "name: confidential-a\nnamespace: team-a\ntasks:\n  - key: work-a\n    command: [echo, private-a]\n"
	specB = "name: confidential-b\nnamespace: team-b\ntasks:\n  - key: work-b\n    command: [echo, private-b]\n"
)

func newAuthEnv(t *testing.T, cfg gateway.Config) *authEnv {
	t.Helper()
	return newAuthEnvWith(t, cfg, nil)
}

// newAuthEnvStore is newAuthEnv with the gateway's store wrapped.
func newAuthEnvStore(t *testing.T, wrap func(store.Store) store.Store) *authEnv {
	t.Helper()
	return newAuthEnvWith(t, gateway.Config{}, wrap)
}

func newAuthEnvWith(t *testing.T, cfg gateway.Config, wrap func(store.Store) store.Store) *authEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "haul.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	blobDir := filepath.Join(dir, "blobs")
	if err := os.MkdirAll(blobDir, 0o700); err != nil {
		t.Fatal(err)
	}
	bs, err := blob.Open("file://" + blobDir)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := token.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.Blob, cfg.Appender, cfg.Tokens = st, bs, appended{}, secret
	if wrap != nil {
		cfg.Store = wrap(st)
	}
	cfg.Auth = auth.NewAuthenticator(auth.AuthnConfig{Tokens: st, TaskTokens: token.Identifier{Secret: secret, Store: st}, CacheTTL: -1})
	gw := gateway.New(cfg)
	mux := http.NewServeMux()
	mux.Handle(gateway.Bounded(gw.ReadMaxBytes(), apiv1connect.NewJobServiceHandler)(gw, connect.WithInterceptors(gw.Interceptor())))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	e := &authEnv{st: st, url: srv.URL, secret: secret, tokens: map[string]string{}}
	e.tokens["platform-admin"] = issue(t, st, "root@example.com", nil, true)
	e.tokens["viewer-a"] = issue(t, st, "vera@example.com", map[string]string{"team-a": "viewer"}, false)
	e.tokens["member-a"] = issue(t, st, "mona@example.com", map[string]string{"team-a": "member"}, false)
	e.tokens["admin-a"] = issue(t, st, "ada@example.com", map[string]string{"team-a": "admin"}, false)
	e.tokens["member-b"] = issue(t, st, "bob@example.com", map[string]string{"team-b": "member", "team-c": "admin"}, false)

	root := e.client("platform-admin")
	e.jobA = e.submitRunning(t, root, specA, "work-a")
	e.jobB = e.submitRunning(t, root, specB, "work-b")
	e.tokens["task-a"] = secret.ForAttempt(e.jobA, "work-a", 1)
	return e
}

// issue stores a new token and returns it.
func issue(t *testing.T, st store.Store, subject string, teams map[string]string, platform bool) string {
	t.Helper()
	tok, id, hash, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	err = st.CreateToken(context.Background(), &store.Token{ID: id, Hash: hash, Subject: subject, Kind: string(auth.KindUser),
		Teams: teams, PlatformAdmin: platform, Description: "access matrix test", CreatedBy: "test", CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// submitRunning submits a one-task spec and records its task as running
// its first attempt, as the runner would.
func (e *authEnv) submitRunning(t *testing.T, c apiv1connect.JobServiceClient, spec, key string) string {
	t.Helper()
	ctx := context.Background()
	resp, err := c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: []byte(spec), Filename: "job.yaml"}))
	if err != nil {
		t.Fatalf("submit as platform admin: %v", err)
	}
	id := resp.Msg.JobId
	now := time.Now()
	err = e.st.Apply(ctx, &store.Batch{
		Tasks:    []store.TaskUpdate{{JobID: id, Index: 0, State: store.TaskRunning, Attempts: 1, StartedAt: now}},
		Attempts: []store.Attempt{{JobID: id, TaskIndex: 0, Number: 1, WorkerID: "w-test", State: store.AttemptRunning, StartedAt: now}},
		Jobs:     []store.JobUpdate{{ID: id, State: store.JobRunning, StartedAt: now, Counts: store.TaskCounts{Running: 1}}},
	})
	if err != nil {
		t.Fatalf("mark %s running: %v", key, err)
	}
	return id
}

// bearer adds a token to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if b.token != "" {
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return b.next.RoundTrip(r)
}

// client calls the API as role ("anonymous": without a token).
func (e *authEnv) client(role string) apiv1connect.JobServiceClient {
	return apiv1connect.NewJobServiceClient(&http.Client{Transport: bearer{token: e.tokens[role], next: http.DefaultTransport}}, e.url)
}

// call is one RPC against a job of team "a" or "b"; it returns what the
// answer revealed (for the leak check) and the error.
type call func(ctx context.Context, c apiv1connect.JobServiceClient, e *authEnv, team string) (string, error)

func (e *authEnv) job(team string) string {
	if team == "a" {
		return e.jobA
	}
	return e.jobB
}

func key(team string) string { return "work-" + team }

var calls = map[string]call{
	"SubmitJob": func(ctx context.Context, c apiv1connect.JobServiceClient, e *authEnv, team string) (string, error) {
		spec := specA
		if team == "b" {
			spec = specB
		}
		r, err := c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: []byte(spec)}))
		if err != nil {
			return "", err
		}
		return r.Msg.JobId, nil
	},
	"GetJob": func(ctx context.Context, c apiv1connect.JobServiceClient, e *authEnv, team string) (string, error) {
		r, err := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: e.job(team)}))
		if err != nil {
			return "", err
		}
		return r.Msg.Job.Name, nil
	},
	// ListJobs asks for one team's jobs; allowed, it must list only that
	// team's (checked in the test).
	"ListJobs": func(ctx context.Context, c apiv1connect.JobServiceClient, e *authEnv, team string) (string, error) {
		r, err := c.ListJobs(ctx, connect.NewRequest(&apiv1.ListJobsRequest{Namespace: "team-" + team}))
		if err != nil {
			return "", err
		}
		var names []string
		for _, j := range r.Msg.Jobs {
			if j.Namespace != "team-"+team {
				return "", fmt.Errorf("ListJobs of team-%s returned job %s of %s", team, j.Id, j.Namespace)
			}
			names = append(names, j.Name)
		}
		return strings.Join(names, ","), nil
	},
	"CancelJob": func(ctx context.Context, c apiv1connect.JobServiceClient, e *authEnv, team string) (string, error) {
		r, err := c.CancelJob(ctx, connect.NewRequest(&apiv1.CancelJobRequest{JobId: e.job(team)}))
		if err != nil {
			return "", err
		}
		return r.Msg.Job.Name, nil
	},
	"ListTasks": func(ctx context.Context, c apiv1connect.JobServiceClient, e *authEnv, team string) (string, error) {
		r, err := c.ListTasks(ctx, connect.NewRequest(&apiv1.ListTasksRequest{JobId: e.job(team)}))
		if err != nil {
			return "", err
		}
		return fmt.Sprint(len(r.Msg.Tasks)), nil
	},
	"GetTask": func(ctx context.Context, c apiv1connect.JobServiceClient, e *authEnv, team string) (string, error) {
		r, err := c.GetTask(ctx, connect.NewRequest(&apiv1.GetTaskRequest{JobId: e.job(team), Key: key(team)}))
		if err != nil {
			return "", err
		}
		return r.Msg.Task.Key, nil
	},
	"GetLogs": func(ctx context.Context, c apiv1connect.JobServiceClient, e *authEnv, team string) (string, error) {
		s, err := c.GetLogs(ctx, connect.NewRequest(&apiv1.GetLogsRequest{JobId: e.job(team), Key: key(team)}))
		if err != nil {
			return "", err
		}
		defer s.Close()
		n := 0
		for s.Receive() {
			n++
		}
		return fmt.Sprint(n), s.Err()
	},
	"GetJobGraph": func(ctx context.Context, c apiv1connect.JobServiceClient, e *authEnv, team string) (string, error) {
		r, err := c.GetJobGraph(ctx, connect.NewRequest(&apiv1.GetJobGraphRequest{JobId: e.job(team)}))
		if err != nil {
			return "", err
		}
		var names []string
		for _, g := range r.Msg.Groups {
			names = append(names, g.Name)
		}
		return strings.Join(names, ","), nil
	},
	// The streams: their first message (the job runs on, so they would
	// not end by themselves).
	"WatchJob": func(ctx context.Context, c apiv1connect.JobServiceClient, e *authEnv, team string) (string, error) {
		s, err := c.WatchJob(ctx, connect.NewRequest(&apiv1.WatchJobRequest{JobId: e.job(team), Groups: true}))
		if err != nil {
			return "", err
		}
		defer s.Close()
		if !s.Receive() {
			return "", s.Err()
		}
		if s.Msg().Job == nil || s.Msg().Graph == nil {
			return "", fmt.Errorf("WatchJob's first message %v: want the job and its graph", s.Msg())
		}
		return s.Msg().Job.Name + " " + s.Msg().Graph.Groups[0].Name, nil
	},
	"WatchJobs": func(ctx context.Context, c apiv1connect.JobServiceClient, e *authEnv, team string) (string, error) {
		s, err := c.WatchJobs(ctx, connect.NewRequest(&apiv1.ListJobsRequest{Namespace: "team-" + team}))
		if err != nil {
			return "", err
		}
		defer s.Close()
		if !s.Receive() {
			return "", s.Err()
		}
		var names []string
		for _, j := range s.Msg().Jobs {
			if j.Namespace != "team-"+team {
				return "", fmt.Errorf("WatchJobs of team-%s sent job %s of %s", team, j.Id, j.Namespace)
			}
			names = append(names, j.Name)
		}
		return strings.Join(names, ","), nil
	},
	"CancelTask": func(ctx context.Context, c apiv1connect.JobServiceClient, e *authEnv, team string) (string, error) {
		r, err := c.CancelTask(ctx, connect.NewRequest(&apiv1.CancelTaskRequest{JobId: e.job(team), Key: key(team)}))
		if err != nil {
			return "", err
		}
		return r.Msg.Task.Key, nil
	},
	"AddTasks": func(ctx context.Context, c apiv1connect.JobServiceClient, e *authEnv, team string) (string, error) {
		frag := "tasks:\n  - key: more-" + team + "\n    command: [echo, more]\n"
		r, err := c.AddTasks(ctx, connect.NewRequest(&apiv1.AddTasksRequest{JobId: e.job(team), Spec: []byte(frag)}))
		if err != nil {
			return "", err
		}
		return strings.Join(r.Msg.Keys, ","), nil
	},
	// RetryJob needs an ended job: each call ends a fresh job of the team
	// through the store and retries it. A refusal that hides the job is
	// checked against that job, then reported as for the team's job (the
	// matrix's check of a hidden job).
	"RetryJob": func(ctx context.Context, c apiv1connect.JobServiceClient, e *authEnv, team string) (string, error) {
		id, err := e.endedJob(ctx, team)
		if err != nil {
			return "", err
		}
		r, err := c.RetryJob(ctx, connect.NewRequest(&apiv1.RetryJobRequest{JobId: id}))
		if connect.CodeOf(err) == connect.CodeNotFound {
			if want := fmt.Sprintf("job %s not found", id); !strings.HasSuffix(err.Error(), want) || strings.Contains(err.Error(), "confidential-") {
				return "", fmt.Errorf("retry of a hidden job: %w, want it to end %q", err, want)
			}
			return "", connect.NewError(connect.CodeNotFound, fmt.Errorf("job %s not found", e.job(team)))
		}
		if err != nil {
			return "", err
		}
		if r.Msg.Retried != 1 || r.Msg.Job.State != "pending" || r.Msg.Job.Retries != 1 {
			return "", fmt.Errorf("RetryJob answered %d retried, job %s with %d retries; want 1, pending, 1", r.Msg.Retried, r.Msg.Job.State, r.Msg.Job.Retries)
		}
		return r.Msg.Job.Name, nil
	},
	// RerunJob reads the job and submits its spec again to its team.
	"RerunJob": func(ctx context.Context, c apiv1connect.JobServiceClient, e *authEnv, team string) (string, error) {
		r, err := c.RerunJob(ctx, connect.NewRequest(&apiv1.RerunJobRequest{JobId: e.job(team)}))
		if err != nil {
			return "", err
		}
		return r.Msg.JobId, nil
	},
	// ListWorkers asks for one team's workers of its job; allowed, it
	// must list only that team's (a record is put first, as the runner
	// would).
	"ListWorkers": func(ctx context.Context, c apiv1connect.JobServiceClient, e *authEnv, team string) (string, error) {
		if err := e.putWorker(ctx, team); err != nil {
			return "", err
		}
		r, err := c.ListWorkers(ctx, connect.NewRequest(&apiv1.ListWorkersRequest{Namespace: "team-" + team, JobId: e.job(team)}))
		if err != nil {
			return "", err
		}
		if len(r.Msg.Workers) != 1 || r.Msg.Workers[0].Namespace != "team-"+team {
			return "", fmt.Errorf("ListWorkers of team-%s: %v, want the one worker of its job", team, r.Msg.Workers)
		}
		return r.Msg.Workers[0].Id, nil
	},
	"GetWorker": func(ctx context.Context, c apiv1connect.JobServiceClient, e *authEnv, team string) (string, error) {
		if err := e.putWorker(ctx, team); err != nil {
			return "", err
		}
		r, err := c.GetWorker(ctx, connect.NewRequest(&apiv1.GetWorkerRequest{WorkerId: e.job(team) + "-0-1"}))
		if err != nil {
			return "", err
		}
		return r.Msg.Worker.JobId, nil
	},
}

// endedJob stores a job of the team whose one task failed, ended (as a
// runner would have ended it), and returns its ID.
func (e *authEnv) endedJob(ctx context.Context, team string) (string, error) {
	now := time.Now()
	id := store.NewJobID(now, rand.Reader)
	j := &store.Job{ID: id, Name: "confidential-retry-" + team, Namespace: "team-" + team, CreatedAt: now,
		Tiers: []store.Tier{{Name: "default", CPU: 1, MemoryBytes: 1 << 30}}}
	if err := e.st.CreateJob(ctx, j, []store.Task{{Index: 0, Key: "work-" + team, Argv: []string{"false"}}}); err != nil {
		return "", err
	}
	return id, e.st.Apply(ctx, &store.Batch{
		Tasks: []store.TaskUpdate{{JobID: id, Index: 0, State: store.TaskFailed, Attempts: 1, ExitCode: 1, Reason: "exit", StartedAt: now, FinishedAt: now}},
		Jobs:  []store.JobUpdate{{ID: id, State: store.JobFailed, StartedAt: now, FinishedAt: now, Counts: store.TaskCounts{Failed: 1}}},
	})
}

// putWorker records the worker of the team's job.
func (e *authEnv) putWorker(ctx context.Context, team string) error {
	return e.st.PutWorkers(ctx, []store.WorkerRecord{{ID: e.job(team) + "-0-1", JobID: e.job(team), Cluster: "local",
		Team: "team-" + team, StartedAt: time.Now().Add(-time.Minute), Attempts: 1}})
}

// Outcomes.
const (
	ok     = connect.Code(0)
	unauth = connect.CodeUnauthenticated
	denied = connect.CodePermissionDenied
	hidden = connect.CodeNotFound // the team is not the caller's to see: the job "does not exist"
)

// TestAccessMatrix calls every JobService RPC as every role, on a job of
// team-a and one of team-b, and checks the answer: allowed, or refused
// with the code the roles say, and no refusal tells anything of the job.
func TestAccessMatrix(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, gateway.Config{})
	type row struct {
		role, rpc, team string
		want            connect.Code
	}
	var rows []row
	add := func(role, rpc string, a, b connect.Code) {
		rows = append(rows, row{role, rpc, "a", a}, row{role, rpc, "b", b})
	}
	for rpc := range calls {
		add("anonymous", rpc, unauth, unauth)
	}
	// Reads: a viewer of a team and up; a task token for its own job only.
	for _, rpc := range []string{"GetJob", "ListTasks", "GetTask", "GetLogs", "GetJobGraph", "WatchJob"} {
		add("viewer-a", rpc, ok, hidden)
		add("member-a", rpc, ok, hidden)
		add("admin-a", rpc, ok, hidden)
		add("member-b", rpc, hidden, ok)
		add("platform-admin", rpc, ok, ok)
		add("task-a", rpc, ok, hidden)
	}
	// Listing a team's jobs: asking for a team one cannot see is refused.
	for _, rpc := range []string{"ListJobs", "WatchJobs"} {
		add("viewer-a", rpc, ok, denied)
		add("member-a", rpc, ok, denied)
		add("admin-a", rpc, ok, denied)
		add("member-b", rpc, denied, ok)
		add("platform-admin", rpc, ok, ok)
		add("task-a", rpc, denied, denied)
	}
	// Submitting: a member of the spec's team.
	add("viewer-a", "SubmitJob", denied, denied)
	add("member-a", "SubmitJob", ok, denied)
	add("admin-a", "SubmitJob", ok, denied)
	add("member-b", "SubmitJob", denied, ok)
	add("platform-admin", "SubmitJob", ok, ok)
	add("task-a", "SubmitJob", denied, denied)
	// Cancelling: a member of the job's team; a viewer is told what is missing.
	for _, rpc := range []string{"CancelJob", "CancelTask"} {
		add("viewer-a", rpc, denied, hidden)
		add("member-a", rpc, ok, hidden)
		add("admin-a", rpc, ok, hidden)
		add("member-b", rpc, hidden, ok)
		add("platform-admin", rpc, ok, ok)
		add("task-a", rpc, denied, hidden)
	}
	// Retrying: as cancelling. Rerunning: reading the job, then
	// submitting to its team (a viewer or a task token may read, not
	// submit).
	add("viewer-a", "RetryJob", denied, hidden)
	add("member-a", "RetryJob", ok, hidden)
	add("admin-a", "RetryJob", ok, hidden)
	add("member-b", "RetryJob", hidden, ok)
	add("platform-admin", "RetryJob", ok, ok)
	add("task-a", "RetryJob", hidden, hidden) // a task's token sees its own job only
	add("viewer-a", "RerunJob", denied, hidden)
	add("member-a", "RerunJob", ok, hidden)
	add("admin-a", "RerunJob", ok, hidden)
	add("member-b", "RerunJob", hidden, ok)
	add("platform-admin", "RerunJob", ok, ok)
	add("task-a", "RerunJob", denied, hidden)
	// Adding tasks: a member of the job's team, or a running task of the
	// job with its own token (the task is the token's, never a field).
	add("viewer-a", "AddTasks", denied, hidden)
	add("member-a", "AddTasks", ok, hidden)
	add("admin-a", "AddTasks", ok, hidden)
	add("member-b", "AddTasks", hidden, ok)
	add("platform-admin", "AddTasks", ok, ok)
	add("task-a", "AddTasks", ok, denied)
	// Workers: a worker is read as its job is (a task token reads its own
	// job's); listing a team one cannot see is refused, as for jobs.
	add("viewer-a", "GetWorker", ok, hidden)
	add("member-a", "GetWorker", ok, hidden)
	add("admin-a", "GetWorker", ok, hidden)
	add("member-b", "GetWorker", hidden, ok)
	add("platform-admin", "GetWorker", ok, ok)
	add("task-a", "GetWorker", ok, hidden)
	add("viewer-a", "ListWorkers", ok, denied)
	add("member-a", "ListWorkers", ok, denied)
	add("admin-a", "ListWorkers", ok, denied)
	add("member-b", "ListWorkers", denied, ok)
	add("platform-admin", "ListWorkers", ok, ok)
	add("task-a", "ListWorkers", denied, denied)

	if len(rows) != len(calls)*7*2 {
		t.Fatalf("the matrix has %d cases, want %d (every RPC x 7 roles x 2 teams)", len(rows), len(calls)*7*2)
	}
	for _, r := range rows {
		t.Run(fmt.Sprintf("%s/%s/team-%s", r.rpc, r.role, r.team), func(t *testing.T) {
			t.Parallel()
			got, err := calls[r.rpc](context.Background(), e.client(r.role), e, r.team)
			if r.want == ok {
				if err != nil {
					t.Fatalf("%s as %s on team-%s: %v, want allowed", r.rpc, r.role, r.team, err)
				}
				return
			}
			if connect.CodeOf(err) != r.want {
				t.Fatalf("%s as %s on team-%s: got %v (answer %q), want %s", r.rpc, r.role, r.team, err, got, r.want)
			}
			msg := err.Error()
			for _, secret := range []string{"confidential-", "private-", "w-test"} {
				if strings.Contains(msg, secret) {
					t.Errorf("%s as %s on team-%s: the refusal %q tells %q of the job", r.rpc, r.role, r.team, msg, secret)
				}
			}
			if r.want == hidden {
				// Exactly what a job that does not exist gets.
				if want := fmt.Sprintf("job %s not found", e.job(r.team)); !strings.HasSuffix(msg, want) {
					t.Errorf("%s as %s on team-%s: %q, want it to end %q like a missing job's", r.rpc, r.role, r.team, msg, want)
				}
			}
			// (AddTasks says what it wants in its own words: a task's token of the job.)
			if r.want == denied && r.rpc != "AddTasks" && !strings.Contains(msg, "permission denied: ") {
				t.Errorf("%s as %s on team-%s: %q does not say what is missing", r.rpc, r.role, r.team, msg)
			}
		})
	}
}

// TestListJobsShowsOnlyVisibleTeams: without a team filter, each caller
// lists the jobs of the teams it may see, and every job says who
// submitted it.
func TestListJobsShowsOnlyVisibleTeams(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, gateway.Config{})
	ctx := context.Background()
	for role, want := range map[string]string{
		"viewer-a":       "confidential-a",
		"member-b":       "confidential-b",
		"platform-admin": "confidential-b,confidential-a",
		"task-a":         "",
	} {
		r, err := e.client(role).ListJobs(ctx, connect.NewRequest(&apiv1.ListJobsRequest{}))
		if err != nil {
			t.Fatalf("ListJobs as %s: %v", role, err)
		}
		var names []string
		for _, j := range r.Msg.Jobs {
			names = append(names, j.Name)
			if j.SubmittedBy != "root@example.com" {
				t.Errorf("job %s: submitted_by %q, want root@example.com", j.Id, j.SubmittedBy)
			}
		}
		if got := strings.Join(names, ","); got != want {
			t.Errorf("ListJobs as %s: %q, want %q", role, got, want)
		}
	}
	j, err := e.client("member-a").GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: e.jobA}))
	if err != nil || j.Msg.Job.SubmittedBy != "root@example.com" {
		t.Fatalf("GetJob: %v, submitted_by %q, want root@example.com", err, j.Msg.GetJob().GetSubmittedBy())
	}
}

// TestAuditRecordsMutations: every mutating call is in the audit log with
// who, which token, what, the team, the object, from where and how it
// ended, refusals included.
func TestAuditRecordsMutations(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, gateway.Config{})
	ctx := context.Background()
	if _, err := e.client("viewer-a").CancelJob(ctx, connect.NewRequest(&apiv1.CancelJobRequest{JobId: e.jobA})); connect.CodeOf(err) != denied {
		t.Fatalf("viewer cancels: %v, want permission_denied", err)
	}
	if _, err := e.client("member-b").CancelJob(ctx, connect.NewRequest(&apiv1.CancelJobRequest{JobId: e.jobA})); connect.CodeOf(err) != hidden {
		t.Fatalf("other team cancels: %v, want not_found", err)
	}
	if _, err := e.client("member-a").CancelTask(ctx, connect.NewRequest(&apiv1.CancelTaskRequest{JobId: e.jobA, Key: "work-a"})); err != nil {
		t.Fatalf("member cancels task: %v", err)
	}
	if _, err := e.client("member-a").SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: []byte(specB)})); connect.CodeOf(err) != denied {
		t.Fatalf("member of a submits to b: %v, want permission_denied", err)
	}
	got, err := e.st.ListAudit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	type rec struct{ subject, action, team, object, outcome string }
	var recs []rec
	for _, a := range got {
		if a.Remote == "" || !strings.HasPrefix(a.Remote, "127.0.0.1:") {
			t.Errorf("audit entry %d: remote %q, want the caller's address", a.Seq, a.Remote)
		}
		if a.TokenID == "" || a.At.IsZero() {
			t.Errorf("audit entry %d: token %q at %v, want both", a.Seq, a.TokenID, a.At)
		}
		recs = append(recs, rec{a.Subject, a.Action, a.Team, a.Object, a.Outcome})
	}
	want := []rec{ // newest first
		{"mona@example.com", "SubmitJob", "team-b", "job confidential-b", "denied"},
		{"mona@example.com", "CancelTask", "team-a", e.jobA + "/work-a", "ok"},
		{"bob@example.com", "CancelJob", "team-a", e.jobA, "denied"},
		{"vera@example.com", "CancelJob", "team-a", e.jobA, "denied"},
		{"root@example.com", "SubmitJob", "team-b", e.jobB, "ok"},
		{"root@example.com", "SubmitJob", "team-a", e.jobA, "ok"},
	}
	if fmt.Sprint(recs) != fmt.Sprint(want) {
		t.Errorf("audit log:\n got %v\nwant %v", recs, want)
	}
}

// TestMutationRateLimit: past its burst a caller's mutating calls are
// refused with resource_exhausted saying when to retry, also as a
// Retry-After header; reads and other callers are not affected.
func TestMutationRateLimit(t *testing.T) {
	t.Parallel()
	// One call back per 1000 s: nothing refills during the test.
	e := newAuthEnv(t, gateway.Config{MutationsPerSecond: 0.001, MutationBurst: 3})
	ctx := context.Background()
	c := e.client("member-a")
	for i := range 3 {
		if _, err := c.CancelJob(ctx, connect.NewRequest(&apiv1.CancelJobRequest{JobId: e.jobA})); err != nil {
			t.Fatalf("cancel %d: %v", i+1, err)
		}
	}
	_, err := c.CancelJob(ctx, connect.NewRequest(&apiv1.CancelJobRequest{JobId: e.jobA}))
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted {
		t.Fatalf("fourth cancel: %v, want resource_exhausted", err)
	}
	if !strings.Contains(ce.Message(), "retry in ") || !strings.Contains(ce.Message(), "mona@example.com") {
		t.Errorf("refusal %q: want who and when to retry", ce.Message())
	}
	if ra := ce.Meta().Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q, want whole seconds to wait", ra)
	}
	if _, err := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: e.jobA})); err != nil {
		t.Errorf("a read after the limit: %v", err)
	}
	if _, err := e.client("admin-a").CancelJob(ctx, connect.NewRequest(&apiv1.CancelJobRequest{JobId: e.jobA})); err != nil {
		t.Errorf("another caller: %v", err)
	}
	audit, err := e.st.ListAudit(ctx, store.AuditFilter{Subject: "mona@example.com", Limit: 1})
	if err != nil || len(audit) != 1 || audit[0].Outcome != connect.CodeResourceExhausted.String() {
		t.Errorf("audit of the refused call: %+v, %v", audit, err)
	}
}

// TestBadCredentials: unknown, malformed, revoked and expired tokens, and
// a task token whose attempt ended, are all unauthenticated, and the
// answer says how to get a token; a gateway without an authenticator
// refuses everyone.
func TestBadCredentials(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, gateway.Config{})
	ctx := context.Background()
	revoked := issue(t, e.st, "gone@example.com", map[string]string{"team-a": "admin"}, false)
	id, _, err := auth.ParseToken(revoked)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.RevokeToken(ctx, id, time.Now()); err != nil {
		t.Fatal(err)
	}
	tokExpired, idExpired, hash, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-2 * time.Hour)
	if err := e.st.CreateToken(ctx, &store.Token{ID: idExpired, Hash: hash, Subject: "old@example.com", Kind: "user", Teams: map[string]string{"team-a": "admin"}, CreatedBy: "test", CreatedAt: past, ExpiresAt: past.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	e.tokens["unknown"] = "haul_0123456789ab_" + strings.Repeat("A", 43)
	e.tokens["garbage"] = "let-me-in"
	e.tokens["revoked"] = revoked
	e.tokens["expired"] = tokExpired
	e.tokens["old-attempt"] = e.secret.ForAttempt(e.jobA, "work-a", 2)
	for _, role := range []string{"anonymous", "unknown", "garbage", "revoked", "expired", "old-attempt"} {
		_, err := e.client(role).GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: e.jobA}))
		if connect.CodeOf(err) != unauth || !strings.Contains(err.Error(), "Authorization: Bearer") {
			t.Errorf("GetJob with %s token: %v, want unauthenticated saying how to authenticate", role, err)
		}
	}

	st := e.st
	gw := gateway.New(gateway.Config{Store: st})
	mux := http.NewServeMux()
	mux.Handle(apiv1connect.NewJobServiceHandler(gw, connect.WithInterceptors(gw.Interceptor())))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := apiv1connect.NewJobServiceClient(&http.Client{Transport: bearer{token: e.tokens["platform-admin"], next: http.DefaultTransport}}, srv.URL)
	if _, err := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: e.jobA})); connect.CodeOf(err) != unauth {
		t.Errorf("a gateway without an authenticator: %v, want unauthenticated", err)
	}
	// Without the interceptor no handler finds an identity: still refused.
	mux2 := http.NewServeMux()
	mux2.Handle(apiv1connect.NewJobServiceHandler(gateway.New(gateway.Config{Store: st, Auth: auth.NewAuthenticator(auth.AuthnConfig{Tokens: st})})))
	srv2 := httptest.NewServer(mux2)
	defer srv2.Close()
	c2 := apiv1connect.NewJobServiceClient(&http.Client{Transport: bearer{token: e.tokens["platform-admin"], next: http.DefaultTransport}}, srv2.URL)
	if _, err := c2.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: e.jobA})); connect.CodeOf(err) != unauth {
		t.Errorf("a handler mounted without the interceptor: %v, want unauthenticated", err)
	}
	if _, err := c2.ListJobs(ctx, connect.NewRequest(&apiv1.ListJobsRequest{})); connect.CodeOf(err) != unauth {
		t.Errorf("ListJobs without the interceptor: %v, want unauthenticated", err)
	}
}
