// Package gateway serves haul's public API (JobService) over Connect: it
// validates and stores submitted jobs, answers status queries from the store,
// asks the runner to cancel through the store, and streams logs from the
// object store. It holds no state of its own, so several gateways can serve
// one deployment. Every call is authenticated (Interceptor) and authorized
// against the team of the job it touches; every mutating call is audited
// and rate-limited per caller (authz.go); with Config.Metrics, every call
// is counted by method and status code. It imports the store, the object
// store, the log reader, the spec compiler, auth and metrics, never the
// runner.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/blob"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/metrics"
	"github.com/haul-dev/haul/internal/spec"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/token"
)

// Config configures a Gateway.
type Config struct {
	Store  store.Store
	Blob   blob.Store
	Logger *slog.Logger
	Clock  func() time.Time
	Limits spec.Limits
	// Notify is called after a job is stored or a cancel requested, so an
	// in-process runner can act at once instead of at its next scan.
	Notify func()
	// Appender adds tasks to running jobs (the runner); nil: AddTasks is
	// refused. Tokens checks the attempt-scoped tokens tasks present
	// (token.Identifier, with Store, proves a task's identity).
	Appender Appender
	Tokens   token.Secret
	// Explainer answers Why from the runners; nil: Why is refused.
	Explainer Explainer
	// Live reads the runners' live copies of running attempts' logs;
	// nil: only archived logs are read.
	Live LiveReader
	// Auth proves who makes each call (see Interceptor); nil refuses
	// every call with unauthenticated: there is no open mode.
	Auth auth.Authenticator
	// Audit records every mutating call; nil: the Store's, if it keeps
	// an audit log (store.AuthStore).
	Audit store.AuthStore
	// MutationsPerSecond and MutationBurst bound each identity's
	// mutating calls (submit, cancel, add tasks): a token bucket per
	// subject (defaults: DefaultMutationsPerSecond, DefaultMutationBurst).
	MutationsPerSecond float64
	MutationBurst      int
	// Metrics, when set, counts and times every call of the handlers
	// Interceptor is installed on (by JobService and AdminService
	// procedure and status code), refused calls included; nil records
	// nothing.
	Metrics *metrics.API
}

// adder returns the task identity that adds tasks to m's job: the call's
// own identity when it is a task's token, else the task token in the
// request's token field (older clients send it there), checked the same
// way. A token of another job is refused, and so is a caller that is not a
// running task: only a running attempt can add to its job.
func (g *Gateway) adder(ctx context.Context, m *apiv1.AddTasksRequest) (*auth.Identity, error) {
	id := auth.FromContext(ctx)
	if (id == nil || id.Kind != auth.KindTask) && m.Token != "" {
		var err error
		id, err = token.Identifier{Secret: g.cfg.Tokens, Store: g.cfg.Store}.Identify(ctx, m.Token)
		if errors.Is(err, auth.ErrUnauthenticated) {
			return nil, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("job %s: the task token: %w", m.JobId, err))
		}
		if err != nil {
			return nil, connect.NewError(connect.CodeUnavailable, err)
		}
	}
	if id == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("job %s: no credential", m.JobId))
	}
	if id.Kind != auth.KindTask {
		// A person or service account: a member of the job's team adds
		// for no task (authorized with the job below).
		if m.Task != "" {
			return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("job %s: only task %q itself (with its HAUL_TOKEN) adds tasks as that task; %s may add tasks to the job without naming one", m.JobId, m.Task, id))
		}
		return id, nil
	}
	if id.Job != m.JobId {
		return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("job %s: the token of %s is valid for its own job %s only", m.JobId, id.Subject, id.Job))
	}
	if m.Task != "" && m.Task != id.Task {
		return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("job %s: the request names task %q but its token is task %q's", m.JobId, m.Task, id.Task))
	}
	return id, nil
}

// Appender adds compiled tasks to a running job on behalf of one of its
// running tasks; *runner.Runner implements it.
type Appender interface {
	AddTasks(ctx context.Context, jobID, adder string, attempt int32, tasks []store.Task) (int64, error)
}

// Gateway implements apiv1connect.JobServiceHandler.
type Gateway struct {
	cfg    Config
	audit  store.AuthStore
	limits *limiters
	watch  watchHub
}

var _ apiv1connect.JobServiceHandler = (*Gateway)(nil)

// New returns a gateway.
func New(cfg Config) *Gateway {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Notify == nil {
		cfg.Notify = func() {}
	}
	if cfg.Limits == (spec.Limits{}) {
		cfg.Limits = spec.DefaultLimits()
	}
	g := &Gateway{cfg: cfg, audit: cfg.Audit, limits: newLimiters(cfg.MutationsPerSecond, cfg.MutationBurst)}
	if g.audit == nil {
		g.audit, _ = cfg.Store.(store.AuthStore)
	}
	return g
}

// SubmitJob validates the spec and stores the job with all its tasks.
func (g *Gateway) SubmitJob(ctx context.Context, req *connect.Request[apiv1.SubmitJobRequest]) (*connect.Response[apiv1.SubmitJobResponse], error) {
	m, err := g.mutate(ctx, "SubmitJob", req.Peer().Addr)
	if err != nil {
		return nil, err
	}
	resp, err := g.submitJob(ctx, m, req)
	return resp, m.end(ctx, err)
}

func (g *Gateway) submitJob(ctx context.Context, m *mutation, req *connect.Request[apiv1.SubmitJobRequest]) (*connect.Response[apiv1.SubmitJobResponse], error) {
	name := req.Msg.Filename
	if name == "" {
		name = "spec"
	}
	js, graph, err := spec.CompileWith(req.Msg.Spec, name, g.cfg.Limits, req.Msg.Params)
	if err != nil {
		m.detail = "spec " + name + " does not compile"
		return nil, specError(err)
	}
	if js.Namespace == "" {
		js.Namespace = DefaultTeam
	}
	m.team, m.object = js.Namespace, "job "+js.Name
	if err := auth.Allow(m.id, auth.SubmitJob, auth.Object{Team: js.Namespace}); err != nil {
		m.denied, m.detail = true, err.Error()
		return nil, connect.NewError(connect.CodePermissionDenied, err)
	}
	// The stored spec text, which reads may show, holds no secret value.
	stored := req.Msg.Spec
	if len(js.SecretEnv) > 0 {
		if stored, err = spec.RedactSecrets(req.Msg.Spec); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s: secret_env: %w", name, err))
		}
	}
	dest, err := g.logDestination(ctx, js.Namespace, js.LogDestination)
	if err != nil {
		m.detail = "log destination refused"
		return nil, err
	}
	now := g.cfg.Clock()
	job := &store.Job{
		LogDestination: dest,
		ID:             store.NewJobID(now, rand.Reader),
		Name:           js.Name,
		Namespace:      js.Namespace,
		Labels:         js.Labels,
		Env:            js.Env,
		MaxWorkers:     js.MaxWorkers,
		Priority:       js.Priority,
		State:          store.JobPending,
		TaskCount:      int64(len(js.Tasks)),
		Counts:         store.TaskCounts{Blocked: int64(len(js.Tasks))},
		CreatedAt:      now,
		Spec:           stored,
		SecretEnv:      js.SecretEnv,
		SubmittedBy:    m.id.Subject,
		Groups:         Groups(js, graph),
		Params:         js.Params,
	}
	if js.Notify != nil {
		job.Notify = &store.JobNotify{Webhook: js.Notify.Webhook, On: js.Notify.On}
	}
	for _, t := range js.Workers {
		tier := store.Tier{Name: t.Name, CPU: t.CPU, MemoryBytes: t.MemoryBytes, GPU: t.GPU, GPUType: t.GPUType, NodeSelector: t.NodeSelector}
		for _, tol := range t.Tolerations {
			tier.Tolerations = append(tier.Tolerations, store.Toleration{Key: tol.Key, Operator: tol.Operator, Value: tol.Value, Effect: tol.Effect})
		}
		job.Tiers = append(job.Tiers, tier)
	}
	if k := js.Kubernetes; k != nil {
		job.Worker = store.WorkerTemplate{Image: k.Image, ServiceAccount: k.ServiceAccount, Env: k.Env}
		for _, v := range k.Volumes {
			job.Worker.Volumes = append(job.Worker.Volumes, json.RawMessage(v))
		}
		for _, v := range k.VolumeMounts {
			job.Worker.VolumeMounts = append(job.Worker.VolumeMounts, json.RawMessage(v))
		}
	}
	tasks := make([]store.Task, len(js.Tasks))
	for i, t := range js.Tasks {
		tasks[i] = store.Task{
			JobID: job.ID, Index: int32(i), Key: t.Key, Argv: t.Command, Env: t.Env, Cwd: t.Cwd,
			After: t.After, Tier: t.Tier, RunTier: t.Tier, Retries: t.Retries, TimeoutMS: t.TimeoutMS, State: store.TaskBlocked,
		}
	}
	// The compiled tasks are copied into tasks: let the collector have
	// them while the store writes (about 100 bytes a task).
	js.Tasks = nil
	if err := g.cfg.Store.CreateJob(ctx, job, tasks); err != nil {
		return nil, storeErrorCode(err, "job", job.Name, connect.CodeInvalidArgument)
	}
	m.object = job.ID
	g.cfg.Logger.Info("job submitted", "job", job.ID, "name", job.Name, "namespace", job.Namespace, "tasks", len(tasks), "by", job.SubmittedBy)
	g.cfg.Notify()
	return connect.NewResponse(&apiv1.SubmitJobResponse{JobId: job.ID, TaskCount: int64(len(tasks))}), nil
}

// GetJob returns one job with its task counts.
func (g *Gateway) GetJob(ctx context.Context, req *connect.Request[apiv1.GetJobRequest]) (*connect.Response[apiv1.GetJobResponse], error) {
	j, err := g.job(ctx, req.Msg.JobId)
	if a := archivedOf(err); a != nil {
		// Retention (archived.go): a retired job answers from its archive
		// row; job authorized the caller on it already.
		return connect.NewResponse(&apiv1.GetJobResponse{Job: ArchivedJobProto(a)}), nil
	}
	if err != nil {
		return nil, err
	}
	if err := g.authorizeJob(ctx, auth.ReadJob, j); err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.GetJobResponse{Job: JobProto(j)}), nil
}

// ListJobs lists jobs newest first, a page at a time: only jobs of the
// teams the caller may see (all, for a platform admin). Asking for a team
// the caller may not see is refused.
func (g *Gateway) ListJobs(ctx context.Context, req *connect.Request[apiv1.ListJobsRequest]) (*connect.Response[apiv1.ListJobsResponse], error) {
	id := auth.FromContext(ctx)
	if id == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("no identity: %s", howToAuthenticate))
	}
	if ns := req.Msg.Namespace; ns != "" && !auth.Visible(id, ns) {
		return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%w: %s may not see the jobs of team %q (a viewer role there is needed)", auth.ErrDenied, id, ns))
	}
	size := pageSize(req.Msg.PageSize, 100, 1000)
	f := store.JobFilter{Namespace: req.Msg.Namespace, Limit: size + 1, Before: req.Msg.PageToken,
		NameGlob: req.Msg.NameGlob, Labels: req.Msg.Labels, SubmittedBy: req.Msg.SubmittedBy, IDPrefix: req.Msg.IdPrefix}
	for _, r := range req.Msg.IdPrefix {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9') {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("job ID prefix %q: job IDs hold only lowercase letters and digits", req.Msg.IdPrefix))
		}
	}
	if req.Msg.Mine {
		if req.Msg.SubmittedBy != "" && req.Msg.SubmittedBy != id.Subject {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("mine and submitted_by %q ask for different submitters (you are %q)", req.Msg.SubmittedBy, id.Subject))
		}
		f.SubmittedBy = id.Subject
	}
	if req.Msg.NameGlob != "" {
		if _, err := path.Match(req.Msg.NameGlob, ""); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("name glob %q: %w", req.Msg.NameGlob, err))
		}
	}
	if t := req.Msg.CreatedAfter; t != nil {
		f.CreatedAfter = t.AsTime()
	}
	if t := req.Msg.CreatedBefore; t != nil {
		f.CreatedBefore = t.AsTime()
	}
	if !id.PlatformAdmin {
		f.Namespaces = []string{}
		for _, team := range id.TeamNames() {
			if auth.Visible(id, team) {
				f.Namespaces = append(f.Namespaces, team)
			}
		}
	}
	for _, s := range req.Msg.States {
		st := store.JobState(s)
		switch st {
		case store.JobPending, store.JobRunning, store.JobSucceeded, store.JobFailed, store.JobCancelled:
		default:
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("unknown job state %q (want pending, running, succeeded, failed or cancelled)", s))
		}
		f.States = append(f.States, st)
	}
	jobs, err := g.cfg.Store.ListJobs(ctx, f)
	if err != nil {
		return nil, storeError(err, "jobs of namespace", req.Msg.Namespace)
	}
	resp := &apiv1.ListJobsResponse{}
	if len(jobs) > size {
		jobs = jobs[:size]
		resp.NextPageToken = jobs[size-1].ID
	}
	for i := range jobs {
		// The store filtered by team already; this check keeps a job
		// of another team out even if a driver did not.
		if auth.Visible(id, teamOf(&jobs[i])) {
			resp.Jobs = append(resp.Jobs, JobProto(&jobs[i]))
		}
	}
	return connect.NewResponse(resp), nil
}

// CancelJob records a cancel request; the runner kills running attempts and
// cancels the rest.
func (g *Gateway) CancelJob(ctx context.Context, req *connect.Request[apiv1.CancelJobRequest]) (*connect.Response[apiv1.CancelJobResponse], error) {
	m, err := g.mutate(ctx, "CancelJob", req.Peer().Addr)
	if err != nil {
		return nil, err
	}
	m.object = req.Msg.JobId
	resp, err := g.cancelJob(ctx, m, req)
	return resp, m.end(ctx, err)
}

func (g *Gateway) cancelJob(ctx context.Context, m *mutation, req *connect.Request[apiv1.CancelJobRequest]) (*connect.Response[apiv1.CancelJobResponse], error) {
	j, err := g.job(ctx, req.Msg.JobId)
	if err != nil {
		return nil, err
	}
	if err := m.authorizeJob(ctx, auth.CancelJob, j); err != nil {
		return nil, err
	}
	if err := g.cfg.Store.RequestCancel(ctx, req.Msg.JobId); err != nil {
		return nil, storeError(err, "job", req.Msg.JobId)
	}
	g.cfg.Notify()
	j, err = g.job(ctx, req.Msg.JobId)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.CancelJobResponse{Job: JobProto(j)}), nil
}

// ListTasks lists a job's tasks in spec order, filtered and paged.
func (g *Gateway) ListTasks(ctx context.Context, req *connect.Request[apiv1.ListTasksRequest]) (*connect.Response[apiv1.ListTasksResponse], error) {
	j, err := g.job(ctx, req.Msg.JobId)
	if err != nil {
		return nil, err
	}
	if err := g.authorizeJob(ctx, auth.ReadJob, j); err != nil {
		return nil, err
	}
	size := pageSize(req.Msg.PageSize, 1000, 10000)
	f, err := taskFilter(j, req.Msg)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	f.Limit = size + 1
	tasks, err := g.cfg.Store.ListTasks(ctx, f)
	if err != nil {
		return nil, storeError(err, "tasks of job", j.ID)
	}
	resp := &apiv1.ListTasksResponse{}
	if len(tasks) > size {
		tasks = tasks[:size]
		resp.NextPageToken = taskPageToken(f.Sort, &tasks[size-1])
	}
	for i := range tasks {
		resp.Tasks = append(resp.Tasks, TaskProto(j, &tasks[i]))
	}
	return connect.NewResponse(resp), nil
}

// GetTask returns one task by key with its attempts.
func (g *Gateway) GetTask(ctx context.Context, req *connect.Request[apiv1.GetTaskRequest]) (*connect.Response[apiv1.GetTaskResponse], error) {
	j, t, err := g.task(ctx, req.Msg.JobId, req.Msg.Key, auth.ReadJob, nil)
	if err != nil {
		return nil, err
	}
	atts, err := g.cfg.Store.ListAttempts(ctx, j.ID, t.Index)
	if err != nil {
		return nil, storeError(err, "attempts of task", fmt.Sprintf("%s in job %s", t.Key, j.ID))
	}
	resp := &apiv1.GetTaskResponse{Task: TaskProto(j, t), JobEnv: j.Env}
	for _, a := range atts {
		resp.Attempts = append(resp.Attempts, AttemptProto(j, &a))
	}
	if j.LogDestination != "" {
		// Where each attempt's log went for the team, or why it did not.
		es, err := g.cfg.Store.ListLogEntries(ctx, store.LogEntryFilter{JobID: j.ID, TaskIndex: t.Index, AfterTask: -1})
		if err != nil {
			return nil, storeError(err, "log entries of task", t.Key)
		}
		for _, e := range es {
			for _, p := range resp.Attempts {
				switch {
				case p.Number != e.Attempt:
				case e.ArchiveError != "":
					p.LogArchive = "failed: " + e.ArchiveError
				case e.Destination != "":
					p.LogArchive = strings.TrimSuffix(e.Destination, "/") + "/" + j.ID + "/index.jsonl"
				}
			}
		}
	}
	return connect.NewResponse(resp), nil
}

func (g *Gateway) job(ctx context.Context, id string) (*store.Job, error) {
	if id == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("job id is required"))
	}
	j, err := g.cfg.Store.GetJob(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		// Retention (archived.go): a job retired to job_archive is
		// answered with where its history is, not as unknown.
		if aerr := g.archivedJob(ctx, id); aerr != nil {
			return nil, aerr
		}
	}
	if err != nil {
		return nil, storeError(err, "job", id)
	}
	return j, nil
}

// task loads a job and one of its tasks, authorizing action on the job
// before it looks for the task (through m for a mutating call), so that a
// caller who may not see the job learns nothing of its tasks.
func (g *Gateway) task(ctx context.Context, jobID, key string, action auth.Action, m *mutation) (*store.Job, *store.Task, error) {
	j, err := g.job(ctx, jobID)
	if err != nil {
		return nil, nil, err
	}
	if m != nil {
		err = m.authorizeJob(ctx, action, j)
	} else {
		err = g.authorizeJob(ctx, action, j)
	}
	if err != nil {
		return nil, nil, err
	}
	if key == "" {
		return nil, nil, connect.NewError(connect.CodeInvalidArgument, errors.New("task key is required"))
	}
	t, err := g.cfg.Store.GetTask(ctx, jobID, key)
	if err != nil {
		return nil, nil, storeError(err, "task", fmt.Sprintf("%s in job %s", key, jobID))
	}
	return j, t, nil
}

func pageSize(asked int32, def, maxSize int) int {
	if asked <= 0 {
		return def
	}
	return min(int(asked), maxSize)
}

// ParseTaskState parses a task state name.
func ParseTaskState(s string) (store.TaskState, error) {
	for _, st := range store.TaskStates {
		if string(st) == s {
			return st, nil
		}
	}
	names := make([]string, len(store.TaskStates))
	for i, st := range store.TaskStates {
		names[i] = string(st)
	}
	return "", fmt.Errorf("unknown task state %q (want one of %s)", s, strings.Join(names, ", "))
}

// JobProto converts a stored job to its API form.
func JobProto(j *store.Job) *apiv1.Job {
	p := &apiv1.Job{
		Id: j.ID, Name: j.Name, Namespace: j.Namespace, Labels: j.Labels, State: string(j.State),
		TaskCount: j.TaskCount, CancelRequested: j.CancelRequested, MaxWorkers: j.MaxWorkers,
		WorkerSeconds: j.WorkerSeconds, EstimatedCostUsd: j.CostUSD,
		Usage: &apiv1.Usage{
			MemoryRequestedByteSeconds: j.Usage.MemoryRequestedByteSeconds, MemoryUsedByteSeconds: j.Usage.MemoryUsedByteSeconds,
			CpuRequestedSeconds: j.Usage.CPURequestedSeconds, CpuUsedSeconds: j.Usage.CPUUsedSeconds,
			PeakRssBytes: j.Usage.PeakRSSBytes, OomAttempts: j.Usage.OOMAttempts,
		},
		SubmittedBy: j.SubmittedBy, SecretEnvNames: spec.SecretNames(j.Spec),
		CreatedAt: ts(j.CreatedAt), StartedAt: ts(j.StartedAt), FinishedAt: ts(j.FinishedAt),
		Counts: countsProto(j.Counts),
		Params: j.Params, Retries: j.Retries, Notification: notificationProto(j.Notify),
	}
	for _, t := range j.Tiers {
		p.Workers = append(p.Workers, &apiv1.Tier{Name: t.Name, Cpu: t.CPU, MemoryBytes: t.MemoryBytes, Gpu: t.GPU})
	}
	return p
}

// TaskProto converts a stored task to its API form.
func TaskProto(j *store.Job, t *store.Task) *apiv1.Task {
	return &apiv1.Task{
		JobId: t.JobID, Index: t.Index, Key: t.Key, State: string(t.State), Command: t.Argv, Env: t.Env,
		Cwd: t.Cwd, After: t.After, Tier: tierName(j, max(t.Tier, t.RunTier)), Retries: t.Retries, TimeoutMs: t.TimeoutMS,
		Attempts: t.Attempts, ExitCode: t.ExitCode, Reason: t.Reason,
		StartedAt: ts(t.StartedAt), FinishedAt: ts(t.FinishedAt),
		SecretEnvNames: spec.SecretNames(j.Spec),
		DurationMs:     t.DurationMS, PeakRssBytes: t.PeakRSSBytes,
	}
}

// AttemptProto converts a stored attempt to its API form.
func AttemptProto(j *store.Job, a *store.Attempt) *apiv1.Attempt {
	p := &apiv1.Attempt{
		Number: a.Number, Tier: tierName(j, a.Tier), WorkerId: a.WorkerID, State: string(a.State),
		ExitCode: a.ExitCode, Signal: SignalName(a.Signal), Reason: a.Reason, Message: a.Message,
		StartedAt: ts(a.StartedAt), FinishedAt: ts(a.FinishedAt),
		Oom: a.OOM(), Enforcement: a.Enforcement,
		CpuUserSeconds: a.Usage.CPUUserSeconds, CpuSystemSeconds: a.Usage.CPUSystemSeconds,
		PeakRssBytes: a.Usage.PeakRSSBytes, AvgRssBytes: a.Usage.AvgRSSBytes, GpuNote: a.Usage.GPUNote,
	}
	for _, g := range a.Usage.GPUs {
		p.Gpus = append(p.Gpus, &apiv1.GPUUsage{Index: g.Index, Name: g.Name, PeakMemoryBytes: g.PeakMemoryBytes, AvgUtilizationPercent: g.AvgUtilizationPercent})
	}
	if a.Tier >= 0 && int(a.Tier) < len(j.Tiers) {
		p.MemoryRequestBytes = j.Tiers[a.Tier].MemoryBytes
		p.CpuRequest = j.Tiers[a.Tier].CPU
	}
	return p
}

func tierName(j *store.Job, i int32) string {
	if int(i) < len(j.Tiers) && i >= 0 {
		return j.Tiers[i].Name
	}
	return strconv.Itoa(int(i))
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// CancelTask records a cancel request for one task; the runner kills it if
// it runs and cancels its dependents.
func (g *Gateway) CancelTask(ctx context.Context, req *connect.Request[apiv1.CancelTaskRequest]) (*connect.Response[apiv1.CancelTaskResponse], error) {
	m, err := g.mutate(ctx, "CancelTask", req.Peer().Addr)
	if err != nil {
		return nil, err
	}
	m.object = req.Msg.JobId + "/" + req.Msg.Key
	resp, err := g.cancelTask(ctx, m, req)
	return resp, m.end(ctx, err)
}

func (g *Gateway) cancelTask(ctx context.Context, m *mutation, req *connect.Request[apiv1.CancelTaskRequest]) (*connect.Response[apiv1.CancelTaskResponse], error) {
	j, t, err := g.task(ctx, req.Msg.JobId, req.Msg.Key, auth.CancelJob, m)
	if err != nil {
		return nil, err
	}
	m.object = j.ID + "/" + t.Key
	if err := g.cfg.Store.RequestTaskCancel(ctx, j.ID, t.Index); err != nil {
		return nil, storeError(err, "task", fmt.Sprintf("%s in job %s", t.Key, j.ID))
	}
	g.cfg.Notify()
	return connect.NewResponse(&apiv1.CancelTaskResponse{Task: TaskProto(j, t)}), nil
}

// AddTasks appends tasks to a running job: the caller is one of the job's
// running tasks, proving it with the attempt-scoped token from its
// environment (HAUL_TOKEN, as its bearer). The adding task and attempt are
// the token's, never a field of the request.
// The fragment is compiled like a submitted spec (the job's tiers, default
// retries and timeout apply); the runner checks dependencies against the
// whole job, stores the tasks and schedules them.
func (g *Gateway) AddTasks(ctx context.Context, req *connect.Request[apiv1.AddTasksRequest]) (*connect.Response[apiv1.AddTasksResponse], error) {
	mu, err := g.mutate(ctx, "AddTasks", req.Peer().Addr)
	if err != nil {
		return nil, err
	}
	mu.object = req.Msg.JobId
	resp, err := g.addTasks(ctx, mu, req)
	return resp, mu.end(ctx, err)
}

func (g *Gateway) addTasks(ctx context.Context, mu *mutation, req *connect.Request[apiv1.AddTasksRequest]) (*connect.Response[apiv1.AddTasksResponse], error) {
	m := req.Msg
	if g.cfg.Appender == nil || len(g.cfg.Tokens) == 0 {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("this server does not accept added tasks"))
	}
	if m.JobId == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("job is required (HAUL_JOB in a task's environment)"))
	}
	adder, err := g.adder(ctx, m)
	if err != nil {
		return nil, err
	}
	j, err := g.cfg.Store.GetJob(ctx, m.JobId)
	if err != nil {
		return nil, storeError(err, "job", m.JobId)
	}
	if err := mu.authorizeJob(ctx, auth.AddTasks, j); err != nil {
		return nil, err
	}
	if j.State.Terminal() {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("job %s has ended (%s): no task can be added", j.ID, j.State))
	}
	retries, timeoutMS, err := spec.BaseOf(j.Spec)
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("job %s: read its stored spec: %w", j.ID, err))
	}
	base := spec.Base{Retries: retries, TimeoutMS: timeoutMS, Env: j.Env, Limits: g.cfg.Limits}
	for _, n := range spec.SecretNames(j.Spec) {
		if base.SecretEnv == nil {
			base.SecretEnv = map[string]string{}
		}
		base.SecretEnv[n] = "" // the names only: reads never get the values
	}
	for _, t := range j.Tiers {
		base.Workers = append(base.Workers, spec.Tier{Name: t.Name, CPU: t.CPU, MemoryBytes: t.MemoryBytes, GPU: t.GPU})
	}
	name := m.Filename
	if name == "" {
		name = "tasks.yaml"
	}
	compiled, err := spec.CompileFragment(m.Spec, name, base)
	if err != nil {
		return nil, specError(err)
	}
	tasks := make([]store.Task, len(compiled))
	keys := make([]string, len(compiled))
	for i, t := range compiled {
		tasks[i] = store.Task{Key: t.Key, Argv: t.Command, Env: t.Env, Cwd: t.Cwd, After: t.After,
			Tier: t.Tier, RunTier: t.Tier, Retries: t.Retries, TimeoutMS: t.TimeoutMS}
		keys[i] = t.Key
	}
	var task string
	var attempt int32
	if adder.Kind == auth.KindTask {
		task, attempt = adder.Task, adder.Attempt
	}
	n, err := g.cfg.Appender.AddTasks(ctx, j.ID, task, attempt, tasks)
	if err != nil {
		var rej interface{ Rejected() bool }
		if errors.As(err, &rej) && rej.Rejected() {
			return nil, connect.NewError(connect.CodeFailedPrecondition, err)
		}
		return nil, storeErrorCode(err, "job", j.ID, connect.CodeInvalidArgument)
	}
	g.cfg.Logger.Info("tasks added", "job", j.ID, "by", adder.Subject, "tasks", len(tasks))
	return connect.NewResponse(&apiv1.AddTasksResponse{Keys: keys, TaskCount: n}), nil
}
