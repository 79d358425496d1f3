package storesql

import (
	"encoding/json"
	"fmt"

	"github.com/haul-dev/haul/internal/store"
)

// StartTier is the run tier CreateJob stores for a new task: the task's
// RunTier, or its Tier when that is greater (a caller may leave RunTier 0:
// a task starts on its first tier).
func StartTier(t *store.Task) int32 {
	return max(t.RunTier, t.Tier)
}

// StartState is the state CreateJob stores for a new task: queued when it
// has no parents (nothing in after), blocked otherwise. A root task is
// ready the moment its job is submitted, and storing it so means that
// loading the job writes nothing for it: a million-task wide job used to
// be written twice, once blocked at submit and once queued at load.
func StartState(t *store.Task) store.TaskState {
	if len(t.After) == 0 {
		return store.TaskQueued
	}
	return store.TaskBlocked
}

// StartCounts are the job's counts CreateJob stores with its tasks.
func StartCounts(tasks []store.Task) store.TaskCounts {
	var c store.TaskCounts
	for i := range tasks {
		if len(tasks[i].After) == 0 {
			c.Queued++
		} else {
			c.Blocked++
		}
	}
	return c
}

// An attempt's GPU figures are one JSON column, a list of GPUUsage objects
// (their json tags name the keys). No GPUs, nil or empty, is written as
// "[]" and reads back as nil: the column does not keep nil and empty apart.

// EncodeGPUs encodes an attempt's GPU figures for its gpus column.
func EncodeGPUs(gpus []store.GPUUsage) ([]byte, error) {
	if len(gpus) == 0 {
		return []byte("[]"), nil
	}
	b, err := json.Marshal(gpus)
	if err != nil {
		return nil, fmt.Errorf("encode gpus: %w", err)
	}
	return b, nil
}

// DecodeGPUs is the inverse of EncodeGPUs; it also takes "" and "null"
// as no GPUs.
func DecodeGPUs(b []byte) ([]store.GPUUsage, error) {
	switch string(b) {
	case "", "[]", "null":
		return nil, nil
	}
	var l []store.GPUUsage
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("decode gpus: %w", err)
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}

// FinishAttempt fills in a scanned attempt's decoded columns: its state,
// times and GPU figures.
func FinishAttempt(a *store.Attempt, state string, started, finished *int64, gpus []byte) error {
	a.State = store.AttemptState(state)
	a.StartedAt, a.FinishedAt = FromNanos(started), FromNanos(finished)
	var err error
	if a.Usage.GPUs, err = DecodeGPUs(gpus); err != nil {
		return fmt.Errorf("attempt %d of task %d: %w", a.Number, a.TaskIndex, err)
	}
	return nil
}
