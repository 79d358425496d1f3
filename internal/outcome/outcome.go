// Package outcome is the one mapping between the three vocabularies for how
// an attempt ended: the taskhost protocol's AttemptOutcome (what a worker
// reports), the scheduling core's sched.Outcome (what decides retries,
// tiers and cancellation) and the store's attempt state and reason (what
// is recorded and shown). The taskhost uses it to label its results, the
// runner to read them; nothing else should translate between the three.
//
// It imports only the generated taskhost protocol, internal/sched and
// internal/store (their pure types, no driver), so that the static
// taskhost binary may link it.
package outcome

import (
	"fmt"

	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/sched"
	"github.com/haul-dev/haul/internal/store"
)

// The reasons a taskhost writes in AttemptResult.reason. Outcomes other
// than Failure have one reason each (Reason); a failure is told apart by
// ReasonExit, ReasonSignal or ReasonStartError.
const (
	ReasonExit       = sched.ReasonExit // exited on its own (any status)
	ReasonSignal     = "signal"         // killed by a signal the taskhost did not send
	ReasonTimeout    = sched.ReasonTimeout
	ReasonCancelled  = sched.ReasonCancelled
	ReasonStartError = "start_error" // the command could not start
	ReasonOOM        = store.ReasonOOM
	ReasonLost       = sched.ReasonLost
)

// fromProto maps every AttemptOutcome but UNSPECIFIED; the test checks
// that no enum value is missing.
var fromProto = map[taskhostv1.AttemptOutcome]sched.Outcome{
	taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_SUCCEEDED: sched.Success,
	taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_FAILED:    sched.Failure,
	taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_TIMED_OUT: sched.Timeout,
	taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_CANCELLED: sched.Killed,
	taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_OOM:       sched.OOM,
}

// The mappings from each sched.Outcome; the test checks that every
// outcome the core names is in each. Lost has no protocol value: a worker
// cannot report an attempt lost (that would be a retry that costs
// nothing), only the runner decides it.
var (
	toProto = map[sched.Outcome]taskhostv1.AttemptOutcome{
		sched.Success: taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_SUCCEEDED,
		sched.Failure: taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_FAILED,
		sched.Timeout: taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_TIMED_OUT,
		sched.Killed:  taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_CANCELLED,
		sched.OOM:     taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_OOM,
		sched.Lost:    taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_UNSPECIFIED,
	}
	storeState = map[sched.Outcome]store.AttemptState{
		sched.Success: store.AttemptSucceeded,
		sched.Failure: store.AttemptFailed,
		sched.Timeout: store.AttemptFailed,
		sched.Killed:  store.AttemptCancelled,
		sched.OOM:     store.AttemptFailed,
		sched.Lost:    store.AttemptLost,
	}
	reasons = map[sched.Outcome]string{
		sched.Success: "",
		sched.Failure: ReasonExit,
		sched.Timeout: ReasonTimeout,
		sched.Killed:  ReasonCancelled,
		sched.OOM:     ReasonOOM,
		sched.Lost:    ReasonLost,
	}
)

// FromProto returns the scheduling outcome of a reported AttemptOutcome.
// It fails for UNSPECIFIED (the caller falls back to the reason: see
// FromResult) and for a number this build does not know.
func FromProto(o taskhostv1.AttemptOutcome) (sched.Outcome, error) {
	if so, ok := fromProto[o]; ok {
		return so, nil
	}
	if o == taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_UNSPECIFIED {
		return sched.Failure, fmt.Errorf("attempt outcome not set")
	}
	return sched.Failure, fmt.Errorf("unknown attempt outcome %d", int32(o))
}

// ToProto returns the protocol's value for o: UNSPECIFIED for Lost (which
// no worker reports) and for a value the core does not name.
func ToProto(o sched.Outcome) taskhostv1.AttemptOutcome {
	return toProto[o] // the zero value is UNSPECIFIED
}

// StoreState returns the stored state of an attempt that ended with o:
// timeouts and OOM kills are failed attempts (their reason tells them
// apart), a cancelled one is cancelled, a lost one lost. An outcome the
// core does not name is a failure, as sched.Job.Finished counts it.
func StoreState(o sched.Outcome) store.AttemptState {
	if s, ok := storeState[o]; ok {
		return s
	}
	return store.AttemptFailed
}

// Reason returns the stored reason of an attempt that ended with o when
// nothing more specific is known: "" for a success, "exit" for a failure,
// else the outcome's own reason (timeout, cancelled, oom, lost). An
// outcome the core does not name gets its number ("outcome(7)").
func Reason(o sched.Outcome) string {
	if r, ok := reasons[o]; ok {
		return r
	}
	return o.String()
}

// FromResult returns the scheduling outcome of a result a worker reported:
// its AttemptOutcome when set; from its reason, exit code and signal when
// not (a taskhost older than the field); Failure for an outcome number this
// build does not know (ResultReason names it).
func FromResult(res *taskhostv1.AttemptResult) sched.Outcome {
	o, _ := classify(res)
	return o
}

// ResultReason returns the reason to store for a reported result: "" for
// a success; for a failure, the worker's own reason ("signal",
// "start_error", …) unless it is empty or belongs to another outcome
// (then "exit"), so that a stored "oom" or "lost" always means what it
// says; else the outcome's reason. A result whose outcome number this
// build does not know is a failure whose reason names the number.
func ResultReason(res *taskhostv1.AttemptResult) string {
	_, r := classify(res)
	return r
}

func classify(res *taskhostv1.AttemptResult) (sched.Outcome, string) {
	var o sched.Outcome
	switch po := res.GetOutcome(); {
	case po == taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_UNSPECIFIED:
		o = FromReason(res.GetReason(), res.GetExitCode(), res.GetSignal())
	default:
		so, err := FromProto(po)
		if err != nil {
			return sched.Failure, fmt.Sprintf("unknown outcome %d", int32(po))
		}
		o = so
	}
	if o != sched.Failure {
		return o, Reason(o)
	}
	switch r := res.GetReason(); r {
	case "", ReasonTimeout, ReasonCancelled, ReasonOOM, ReasonLost:
		return o, ReasonExit
	default:
		return o, r
	}
}

// FromReason derives the outcome from a result's reason, exit code and
// signal, as the runner did before AttemptOutcome existed: timeout,
// cancelled and oom name theirs; "exit" with status 0, or no reason with
// status 0 and no signal, is a success; anything else (a non-zero status,
// a signal, start_error, a reason it does not know, even "lost") is a
// failure. The taskhost labels its own results with it (through ToProto),
// so that the two can never disagree.
func FromReason(reason string, exitCode, signal int32) sched.Outcome {
	switch {
	case reason == ReasonTimeout:
		return sched.Timeout
	case reason == ReasonCancelled:
		return sched.Killed
	case reason == ReasonOOM:
		return sched.OOM
	case reason == ReasonExit && exitCode == 0, reason == "" && exitCode == 0 && signal == 0:
		return sched.Success
	}
	return sched.Failure
}

// Label returns the AttemptOutcome a taskhost sends with a result whose
// reason, exit code and signal it has set.
func Label(res *taskhostv1.AttemptResult) taskhostv1.AttemptOutcome {
	return ToProto(FromReason(res.GetReason(), res.GetExitCode(), res.GetSignal()))
}
