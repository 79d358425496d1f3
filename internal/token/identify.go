package token

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/store"
)

// Identifier proves task identities: it checks a task token's signature,
// then asks the store whether the attempt it names still runs, so that a
// token stops working when its attempt ends (succeeded, failed, lost,
// cancelled, or superseded by a later attempt). It implements the
// authenticator's task-token seam (Identify).
type Identifier struct {
	Secret Secret
	Store  store.Store
}

// ErrExpired is wrapped by Identify's error for a well-signed token whose
// attempt is not running any more.
var ErrExpired = errors.New("this task's token expired with its attempt")

// Identify returns the identity tok proves: a task, scoped to its attempt.
// An error wrapping auth.ErrUnauthenticated means it proves none (bad
// signature, an attempt that is not running); another error means the
// store could not tell now.
func (id Identifier) Identify(ctx context.Context, tok string) (*auth.Identity, error) {
	c, err := id.Secret.Verify(tok)
	if err != nil {
		return nil, refused{err}
	}
	if id.Store == nil {
		return nil, errors.New("task token: no store to check the attempt in")
	}
	t, err := id.Store.GetTask(ctx, c.Job, c.Task)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refused{fmt.Errorf("%w (task %q of job %s is gone)", ErrExpired, c.Task, c.Job)}
	}
	if err != nil {
		return nil, fmt.Errorf("task token: look up task %q of job %s: %w", c.Task, c.Job, err)
	}
	if t.State != store.TaskRunning || t.Attempts != c.Attempt {
		return nil, refused{fmt.Errorf("%w (attempt %d of task %q in job %s; the task is %s at attempt %d)",
			ErrExpired, c.Attempt, c.Task, c.Job, t.State, t.Attempts)}
	}
	return &auth.Identity{
		Kind:    auth.KindTask,
		Subject: "task:" + c.Job + "/" + c.Task + "#" + strconv.Itoa(int(c.Attempt)),
		Job:     c.Job,
		Task:    c.Task,
		Attempt: c.Attempt,
		Via:     "task",
	}, nil
}

var _ auth.TaskTokens = Identifier{}

// refused is a token that proves no identity: it is auth.ErrUnauthenticated
// (errors.Is) and reads as its cause alone, so that a message the caller
// prefixes with its code does not say "unauthenticated" twice.
type refused struct{ err error }

func (r refused) Error() string   { return r.err.Error() }
func (r refused) Unwrap() []error { return []error{r.err, auth.ErrUnauthenticated} }
