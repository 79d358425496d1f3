package sched

// Retries returns how many failed attempts of a task are retried, as
// configured (0 for an unknown index).
func (j *Job) Retries(task int32) int32 {
	if task < 0 || task >= j.n {
		return 0
	}
	return j.kinds[j.kindOf[task]].retries
}
