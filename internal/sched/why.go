package sched

import "time"

// BackoffUntil returns when a queued task's retry backoff ends, and
// whether it waits one.
func (j *Job) BackoffUntil(task int32) (time.Time, bool) {
	if task < 0 || task >= j.n || j.state[task] != uint8(Queued)|flagBackoff {
		return time.Time{}, false
	}
	var at int64
	for _, e := range j.backoff {
		if e.task == task && e.at > at {
			at = e.at
		}
	}
	if at == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, at).UTC(), true
}

// InBackoff returns how many tasks of a tier wait out a retry backoff,
// and when the first of them ends.
func (j *Job) InBackoff(tier int32) (n int, first time.Time) {
	var at int64
	seen := map[int32]bool{}
	for _, e := range j.backoff {
		t := e.task
		if seen[t] || j.state[t] != uint8(Queued)|flagBackoff || int32(j.tier[t]) != tier {
			continue
		}
		seen[t] = true
		n++
		if at == 0 || e.at < at {
			at = e.at
		}
	}
	if at != 0 {
		first = time.Unix(0, at).UTC()
	}
	return n, first
}
