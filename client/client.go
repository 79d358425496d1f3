// Package client is a Go client of haul's API for programs that submit
// jobs and follow them: a thin layer over the Connect clients generated
// from proto/haul/api/v1 (JobService and AdminService), which it also
// exposes for every other call.
//
// The API's messages are re-exported here as type aliases (client.Job is
// the generated apiv1.Job), so programs outside the haul module, which
// cannot import its internal packages, use this package alone:
//
//	c := client.New("http://127.0.0.1:7070", client.WithToken(token))
//	id, err := c.Submit(ctx, specYAML, nil)
//	job, err := c.Wait(ctx, id)
//
// Errors are connect errors: connect.CodeOf(err) is connect.CodeNotFound
// for an unknown job, and so on.
package client

import (
	"context"
	"errors"
	"io"
	"iter"
	"net/http"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/haul-dev/haul/internal/bearer"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
)

// DefaultServer is the address `haul up` listens on by default.
const DefaultServer = "http://127.0.0.1:7070"

// Client calls one haul server. Its methods are safe for concurrent use.
type Client struct {
	// Jobs and Admin are the generated clients, for the calls this
	// package does not wrap.
	Jobs  JobServiceClient
	Admin AdminServiceClient

	server string
}

// Option configures New.
type Option func(*options)

type options struct {
	token    string
	tokenSet bool
	http     *http.Client
	connect  []connect.ClientOption
}

// WithToken sends token as the bearer of every call (an API token from
// `haul token create`, or a task's HAUL_TOKEN).
func WithToken(token string) Option {
	return func(o *options) { o.token, o.tokenSet = token, true }
}

// WithHTTPClient sends the calls through h (its transport for TLS,
// proxies, timeouts). The default is http.DefaultClient.
func WithHTTPClient(h *http.Client) Option {
	return func(o *options) { o.http = h }
}

// WithClientOptions passes options to the generated Connect clients, such
// as connect.WithGRPC() to speak gRPC rather than the Connect protocol.
func WithClientOptions(opts ...connect.ClientOption) Option {
	return func(o *options) { o.connect = append(o.connect, opts...) }
}

// New returns a client of the server at server, a URL such as
// "https://haul.example.com". An empty server means $HAUL_SERVER, else
// DefaultServer; then, unless WithToken is given, the token is
// $HAUL_API_TOKEN.
func New(server string, opts ...Option) *Client {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if server == "" {
		server = os.Getenv("HAUL_SERVER")
		if server == "" {
			server = DefaultServer
		}
		if !o.tokenSet {
			o.token = os.Getenv("HAUL_API_TOKEN")
		}
	}
	server = strings.TrimRight(server, "/")
	h := o.http
	if h == nil {
		h = http.DefaultClient
	}
	var hc connect.HTTPClient = h
	if o.token != "" {
		hc = bearer.Client(h, o.token)
	}
	return &Client{
		Jobs:   apiv1connect.NewJobServiceClient(hc, server, o.connect...),
		Admin:  apiv1connect.NewAdminServiceClient(hc, server, o.connect...),
		server: server,
	}
}

// Server returns the server's URL.
func (c *Client) Server() string { return c.server }

// Submit submits a job spec (YAML or JSON, as in docs/job-spec.md; any
// `foreach: {lines: FILE}` resolved into values) with parameters
// overriding the spec's params, and returns the job's ID.
func (c *Client) Submit(ctx context.Context, spec []byte, params map[string]string) (string, error) {
	resp, err := c.Jobs.SubmitJob(ctx, connect.NewRequest(&SubmitJobRequest{Spec: spec, Params: params}))
	if err != nil {
		return "", err
	}
	return resp.Msg.GetJobId(), nil
}

// Job returns a job.
func (c *Client) Job(ctx context.Context, id string) (*Job, error) {
	resp, err := c.Jobs.GetJob(ctx, connect.NewRequest(&GetJobRequest{JobId: id}))
	if err != nil {
		return nil, err
	}
	return resp.Msg.GetJob(), nil
}

// ListJobs lists the jobs that match req, page after page (req.PageToken is
// advanced; nil lists every job the caller may see).
func (c *Client) ListJobs(ctx context.Context, req *ListJobsRequest) iter.Seq2[*Job, error] {
	return func(yield func(*Job, error) bool) {
		r := &ListJobsRequest{}
		if req != nil {
			r = clone(req)
		}
		for {
			resp, err := c.Jobs.ListJobs(ctx, connect.NewRequest(r))
			if err != nil {
				yield(nil, err)
				return
			}
			for _, j := range resp.Msg.GetJobs() {
				if !yield(j, nil) {
					return
				}
			}
			if resp.Msg.GetNextPageToken() == "" {
				return
			}
			r.PageToken = resp.Msg.GetNextPageToken()
		}
	}
}

// ListTasks lists a job's tasks that match req (req.JobId is set to
// jobID), page after page.
func (c *Client) ListTasks(ctx context.Context, jobID string, req *ListTasksRequest) iter.Seq2[*Task, error] {
	return func(yield func(*Task, error) bool) {
		r := &ListTasksRequest{}
		if req != nil {
			r = clone(req)
		}
		r.JobId = jobID
		for {
			resp, err := c.Jobs.ListTasks(ctx, connect.NewRequest(r))
			if err != nil {
				yield(nil, err)
				return
			}
			for _, t := range resp.Msg.GetTasks() {
				if !yield(t, nil) {
					return
				}
			}
			if resp.Msg.GetNextPageToken() == "" {
				return
			}
			r.PageToken = resp.Msg.GetNextPageToken()
		}
	}
}

// Task returns a task with its attempts.
func (c *Client) Task(ctx context.Context, jobID, key string) (*GetTaskResponse, error) {
	resp, err := c.Jobs.GetTask(ctx, connect.NewRequest(&GetTaskRequest{JobId: jobID, Key: key}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// Watch calls fn with the job at once and then each time its state or
// counts change (WatchJob), until the job has ended (nil), ctx is done,
// the stream fails, or fn returns an error (returned as is).
func (c *Client) Watch(ctx context.Context, id string, fn func(*Job) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Jobs.WatchJob(ctx, connect.NewRequest(&WatchJobRequest{JobId: id}))
	if err != nil {
		return err
	}
	defer stream.Close()
	for stream.Receive() {
		if err := fn(stream.Msg().GetJob()); err != nil {
			return err
		}
	}
	return stream.Err()
}

// Terminal reports whether a job state is final: succeeded, failed or
// cancelled.
func Terminal(state string) bool {
	return state == "succeeded" || state == "failed" || state == "cancelled"
}

// Wait waits for the job to end and returns it. A watch that ends early
// (a gateway restarting) is started again; ctx bounds the wait.
func (c *Client) Wait(ctx context.Context, id string) (*Job, error) {
	for {
		var last *Job
		err := c.Watch(ctx, id, func(j *Job) error { last = j; return nil })
		if last != nil && Terminal(last.GetState()) {
			return last, nil
		}
		if err != nil {
			code := connect.CodeOf(err)
			if ctx.Err() != nil || (code != connect.CodeUnavailable && code != connect.CodeUnknown) {
				return last, err
			}
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// Logs writes an attempt's output (attempt 0: the latest), both streams in
// arrival order, to w; with follow it keeps writing until the attempt
// ends. LogsStream separates stdout from stderr.
func (c *Client) Logs(ctx context.Context, id, key string, follow bool, w io.Writer) error {
	return c.LogsStream(ctx, &GetLogsRequest{JobId: id, Key: key, Follow: follow}, func(ch *LogChunk) error {
		_, err := w.Write(ch.GetData())
		return err
	})
}

// LogsStream calls fn with each chunk of the output GetLogs streams for
// req, until the stream ends, fails or fn returns an error.
func (c *Client) LogsStream(ctx context.Context, req *GetLogsRequest, fn func(*LogChunk) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Jobs.GetLogs(ctx, connect.NewRequest(req))
	if err != nil {
		return err
	}
	defer stream.Close()
	for stream.Receive() {
		for _, ch := range stream.Msg().GetChunks() {
			if err := fn(ch); err != nil {
				return err
			}
		}
	}
	return stream.Err()
}

// Retry runs an ended job's tasks again in the same job (RetryJob): those
// whose key matches keyGlob (empty: all) in one of states (none: failed,
// upstream_failed and cancelled), and their dependents that had not
// succeeded.
func (c *Client) Retry(ctx context.Context, id, keyGlob string, states ...string) (*RetryJobResponse, error) {
	resp, err := c.Jobs.RetryJob(ctx, connect.NewRequest(&RetryJobRequest{JobId: id, KeyGlob: keyGlob, States: states}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// Rerun submits a new job from a job's stored spec, with params
// overriding its parameters, and returns the new job's ID.
func (c *Client) Rerun(ctx context.Context, id string, params map[string]string) (string, error) {
	resp, err := c.Jobs.RerunJob(ctx, connect.NewRequest(&RerunJobRequest{JobId: id, Params: params}))
	if err != nil {
		return "", err
	}
	return resp.Msg.GetJobId(), nil
}

// Cancel asks for every unfinished task of the job to be cancelled and
// returns the job.
func (c *Client) Cancel(ctx context.Context, id string) (*Job, error) {
	resp, err := c.Jobs.CancelJob(ctx, connect.NewRequest(&CancelJobRequest{JobId: id}))
	if err != nil {
		return nil, err
	}
	return resp.Msg.GetJob(), nil
}

// AddTasks appends tasks to a running job: fragment holds `tasks:`
// entries as in a job spec (YAML or JSON).
func (c *Client) AddTasks(ctx context.Context, id string, fragment []byte) (*AddTasksResponse, error) {
	resp, err := c.Jobs.AddTasks(ctx, connect.NewRequest(&AddTasksRequest{JobId: id, Spec: fragment}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// WhoAmI returns the caller's identity.
func (c *Client) WhoAmI(ctx context.Context) (*WhoAmIResponse, error) {
	resp, err := c.Jobs.WhoAmI(ctx, connect.NewRequest(&WhoAmIRequest{}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// IsNotFound reports whether err is the API's not_found.
func IsNotFound(err error) bool {
	var ce *connect.Error
	return errors.As(err, &ce) && ce.Code() == connect.CodeNotFound
}

func clone[M proto.Message](m M) M { return proto.Clone(m).(M) }
