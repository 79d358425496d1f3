package sched

import "fmt"

// State is the scheduling state of a task. The zero value is Blocked.
type State uint8

// The task states, in lifecycle order. Succeeded, Failed, UpstreamFailed and
// Cancelled are terminal: a task in one of them never changes state again.
const (
	Blocked        State = iota // waiting for parents
	Queued                      // ready (or waiting out a retry backoff), not running
	Running                     // an attempt was handed to a worker
	Succeeded                   // an attempt succeeded
	Failed                      // retries (or lost attempts) used up
	UpstreamFailed              // an ancestor failed
	Cancelled                   // the job or the task (or an ancestor) was cancelled
)

// NumStates is the number of task states; Job.Counts is indexed by State.
const NumStates = 7

var stateNames = [NumStates]string{"blocked", "queued", "running", "succeeded", "failed", "upstream_failed", "cancelled"}

// String returns the state's name as stored ("upstream_failed", …).
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Terminal reports whether a task in state s will never change state again.
func (s State) Terminal() bool { return s >= Succeeded && s <= Cancelled }

// ParseState returns the state named name, as written by State.String.
func ParseState(name string) (State, error) {
	for i, n := range stateNames {
		if n == name {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("unknown task state %q", name)
}

// Outcome is how an attempt ended, as reported to Job.Finished.
type Outcome uint8

// The attempt outcomes.
const (
	Success Outcome = iota // exit status 0
	Failure                // non-zero exit, killed by a signal, or could not start
	Timeout                // killed because it ran past the task's timeout
	Lost                   // its worker or runner went away; the attempt's fate is unknown
	Killed                 // killed because the task or job was cancelled
	OOM                    // killed for using more memory than its tier allows
)

var outcomeNames = [...]string{"success", "failure", "timeout", "lost", "killed", "oom"}

// String returns the outcome's name ("success", "failure", "timeout", "lost", "killed", "oom").
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// ParseOutcome returns the outcome named name, as written by Outcome.String.
func ParseOutcome(name string) (Outcome, error) {
	for i, n := range outcomeNames {
		if n == name {
			return Outcome(i), nil
		}
	}
	return 0, fmt.Errorf("unknown attempt outcome %q", name)
}

// Reasons given in Transition.Reason and Kill.Reason.
const (
	ReasonExit      = "exit"      // the attempt failed (Failure)
	ReasonTimeout   = "timeout"   // the attempt ran past its timeout
	ReasonLost      = "lost"      // the attempt was lost
	ReasonUpstream  = "upstream"  // an ancestor failed
	ReasonCancelled = "cancelled" // the job, the task or an ancestor was cancelled
	ReasonInvalid   = "invalid"   // the job's graph or configuration was rejected (see Job.Err)
	ReasonOOM       = "oom"       // the attempt ran out of memory (moved to the next tier, or failed on the last)
)
