package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/runner"
	"github.com/haul-dev/haul/internal/server"
	"github.com/haul-dev/haul/internal/taskhost"
)

// AdderProgram is argv[0] of a dynamic-scenario adder task under the noop
// executor: the in-process worker reads the fragment file argv[1] and
// adds its tasks through the API itself, as `haul task add -f FILE` would.
const AdderProgram = "haul-bench-add"

// noopBackend is a worker backend whose workers are taskhost.Run
// goroutines in this process, talking the real protocol over loopback HTTP
// to the runner, with an Exec hook that starts no process.
type noopBackend struct {
	capacity int
	gone     func(id, why string)
	client   *http.Client
	exec     func(context.Context, *taskhostv1.Assignment) (int32, error)
	log      *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	stops  map[string]context.CancelFunc
	wg     sync.WaitGroup
}

var _ server.WorkerBackend = (*noopBackend)(nil)

func newNoopBackend(capacity int, gone func(id, why string), client *http.Client, exec func(context.Context, *taskhostv1.Assignment) (int32, error), log *slog.Logger) *noopBackend {
	ctx, cancel := context.WithCancel(context.Background())
	return &noopBackend{capacity: capacity, gone: gone, client: client, exec: exec, log: log,
		ctx: ctx, cancel: cancel, stops: map[string]context.CancelFunc{}}
}

// StartWorker starts one in-process taskhost.
func (b *noopBackend) StartWorker(_ context.Context, s runner.WorkerSpec) error {
	b.mu.Lock()
	if b.ctx.Err() != nil {
		b.mu.Unlock()
		return errors.New("the bench backend is stopped")
	}
	ctx, stop := context.WithCancel(b.ctx)
	b.stops[s.ID] = stop
	b.mu.Unlock()
	cfg := taskhost.Config{
		RunnerURL:  s.RunnerURL,
		WorkerID:   s.ID,
		JobID:      s.JobID,
		Tier:       s.TierIndex,
		BlobURL:    s.BlobURL,
		Secret:     s.Secret,
		Capacity:   b.capacity,
		HTTPClient: b.client,
		Logger:     b.log,
		NvidiaSMI:  "-",
		Exec:       b.exec,
	}
	b.wg.Go(func() {
		err := taskhost.Run(ctx, cfg)
		b.mu.Lock()
		delete(b.stops, s.ID)
		b.mu.Unlock()
		stop()
		why := "exited"
		if err != nil {
			why = "exited: " + err.Error()
		}
		b.gone(s.ID, why)
	})
	return nil
}

// StopWorker stops one worker (its running attempts are dropped).
func (b *noopBackend) StopWorker(_ context.Context, id string) error {
	b.mu.Lock()
	stop := b.stops[id]
	b.mu.Unlock()
	if stop != nil {
		stop()
	}
	return nil
}

// Stop stops every worker and waits for them.
func (b *noopBackend) Stop() {
	b.mu.Lock()
	b.cancel()
	b.mu.Unlock()
	b.wg.Wait()
}

// noopExec is the noop executor's Exec hook: every task succeeds at once,
// except the dynamic scenario's adders, which add the tasks of their
// fragment file through JobService.AddTasks with the assignment's
// HAUL_SERVER (server when unset), HAUL_JOB, HAUL_TASK and HAUL_TOKEN.
func noopExec(client *http.Client, server *string) func(context.Context, *taskhostv1.Assignment) (int32, error) {
	return func(ctx context.Context, a *taskhostv1.Assignment) (int32, error) {
		argv := a.GetArgv()
		if len(argv) == 0 || argv[0] != AdderProgram {
			return 0, nil
		}
		if len(argv) != 2 {
			return 0, fmt.Errorf("%s: want one argument, the fragment file; got %q", AdderProgram, argv[1:])
		}
		if err := addTasks(ctx, client, *server, a.GetEnv(), argv[1]); err != nil {
			return 0, err
		}
		return 0, nil
	}
}

// addTasks adds the tasks of a fragment file to the task's job.
func addTasks(ctx context.Context, client *http.Client, server string, env map[string]string, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("%s: %w", AdderProgram, err)
	}
	if s := env["HAUL_SERVER"]; s != "" {
		server = s
	}
	c := apiv1connect.NewJobServiceClient(client, strings.TrimRight(server, "/"))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req := connect.NewRequest(&apiv1.AddTasksRequest{
		JobId: env["HAUL_JOB"], Spec: data, Filename: file, Token: env["HAUL_TOKEN"], Task: env["HAUL_TASK"],
	})
	// The task's attempt-scoped token proves who adds, as a bearer.
	req.Header().Set("Authorization", "Bearer "+env["HAUL_TOKEN"])
	_, err = c.AddTasks(ctx, req)
	if err != nil {
		return fmt.Errorf("%s: add the tasks of %s to job %s: %w", AdderProgram, file, env["HAUL_JOB"], err)
	}
	return nil
}
