package outcome

import (
	"strings"
	"testing"

	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/sched"
	"github.com/haul-dev/haul/internal/store"
)

// schedOutcomes returns every outcome the scheduling core names: those
// whose name parses back, from 0 up. A new one is covered without a change
// here.
func schedOutcomes(t *testing.T) []sched.Outcome {
	t.Helper()
	var all []sched.Outcome
	for i := range 256 {
		o := sched.Outcome(i)
		if p, err := sched.ParseOutcome(o.String()); err != nil || p != o {
			break
		}
		all = append(all, o)
	}
	if len(all) < 6 {
		t.Fatalf("found %d scheduling outcomes (%v), want at least the six of today", len(all), all)
	}
	return all
}

// protoOutcomes returns every value of the protocol's enum.
func protoOutcomes(t *testing.T) []taskhostv1.AttemptOutcome {
	t.Helper()
	var all []taskhostv1.AttemptOutcome
	for n := range taskhostv1.AttemptOutcome_name {
		all = append(all, taskhostv1.AttemptOutcome(n))
	}
	if len(all) < 6 {
		t.Fatalf("found %d protocol outcomes, want at least the six of today", len(all))
	}
	return all
}

var validStates = []store.AttemptState{store.AttemptSucceeded, store.AttemptFailed, store.AttemptLost, store.AttemptCancelled}

func TestEveryProtocolOutcomeMapsAndRoundTrips(t *testing.T) {
	t.Parallel()
	for _, po := range protoOutcomes(t) {
		so, err := FromProto(po)
		if po == taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_UNSPECIFIED {
			if err == nil {
				t.Errorf("FromProto(%v) = %v, want an error (the caller reads the reason)", po, so)
			}
			continue
		}
		if err != nil {
			t.Errorf("FromProto(%v): %v: every value but UNSPECIFIED must map", po, err)
			continue
		}
		if back := ToProto(so); back != po {
			t.Errorf("ToProto(FromProto(%v)) = %v", po, back)
		}
		// A result labelled with it reads back the same, whatever its reason says.
		res := &taskhostv1.AttemptResult{Outcome: po, Reason: "something else", ExitCode: 3}
		if got := FromResult(res); got != so {
			t.Errorf("FromResult(outcome %v) = %v, want %v", po, got, so)
		}
	}
}

func TestEverySchedOutcomeMaps(t *testing.T) {
	t.Parallel()
	protoSeen := map[taskhostv1.AttemptOutcome]sched.Outcome{}
	for _, o := range schedOutcomes(t) {
		if _, ok := toProto[o]; !ok {
			t.Errorf("%v has no protocol value (map it, or to UNSPECIFIED if no worker reports it)", o)
		}
		if _, ok := storeState[o]; !ok {
			t.Errorf("%v has no store state", o)
		}
		if _, ok := reasons[o]; !ok {
			t.Errorf("%v has no reason", o)
		}
		po := ToProto(o)
		if po == taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_UNSPECIFIED {
			if o != sched.Lost {
				t.Errorf("ToProto(%v) = UNSPECIFIED; only Lost, which no worker reports, may have no value", o)
			}
		} else {
			if prev, dup := protoSeen[po]; dup {
				t.Errorf("%v and %v both map to %v", prev, o, po)
			}
			protoSeen[po] = o
			if back, err := FromProto(po); err != nil || back != o {
				t.Errorf("FromProto(ToProto(%v)) = %v, %v", o, back, err)
			}
		}
		st := StoreState(o)
		valid := false
		for _, v := range validStates {
			valid = valid || st == v
		}
		if !valid {
			t.Errorf("StoreState(%v) = %q, not a final attempt state", o, st)
		}
		// The reason written for an outcome reads back as that outcome
		// (a failure's exit status must not be 0).
		if o != sched.Lost {
			if got := FromReason(Reason(o), 1, 0); got != o && !(o == sched.Success && got == sched.Failure) {
				t.Errorf("FromReason(Reason(%v)=%q) = %v", o, Reason(o), got)
			}
		}
		// The store tells an OOM kill only by its reason.
		if (Reason(o) == store.ReasonOOM) != (o == sched.OOM) {
			t.Errorf("Reason(%v) = %q: only OOM may have reason %q", o, Reason(o), store.ReasonOOM)
		}
	}
	if got := FromReason(Reason(sched.Success), 0, 0); got != sched.Success {
		t.Errorf("FromReason(Reason(Success), 0, 0) = %v", got)
	}
}

func TestTable(t *testing.T) {
	t.Parallel()
	want := []struct {
		o      sched.Outcome
		state  store.AttemptState
		reason string
	}{
		{sched.Success, store.AttemptSucceeded, ""},
		{sched.Failure, store.AttemptFailed, "exit"},
		{sched.Timeout, store.AttemptFailed, "timeout"},
		{sched.Killed, store.AttemptCancelled, "cancelled"},
		{sched.OOM, store.AttemptFailed, "oom"},
		{sched.Lost, store.AttemptLost, "lost"},
	}
	for _, w := range want {
		if got := StoreState(w.o); got != w.state {
			t.Errorf("StoreState(%v) = %q, want %q", w.o, got, w.state)
		}
		if got := Reason(w.o); got != w.reason {
			t.Errorf("Reason(%v) = %q, want %q", w.o, got, w.reason)
		}
	}
	// An outcome the core does not name is a failure, as sched counts it.
	if got := StoreState(sched.Outcome(200)); got != store.AttemptFailed {
		t.Errorf("StoreState(200) = %q", got)
	}
	if got := Reason(sched.Outcome(200)); got != "outcome(200)" {
		t.Errorf("Reason(200) = %q", got)
	}
	if got := ToProto(sched.Outcome(200)); got != taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_UNSPECIFIED {
		t.Errorf("ToProto(200) = %v", got)
	}
}

func TestUnknownProtocolNumberIsAFailureNamingIt(t *testing.T) {
	t.Parallel()
	res := &taskhostv1.AttemptResult{Outcome: taskhostv1.AttemptOutcome(97), Reason: "exit", ExitCode: 0}
	if got := FromResult(res); got != sched.Failure {
		t.Errorf("FromResult(outcome 97) = %v, want failure", got)
	}
	if got := ResultReason(res); !strings.Contains(got, "97") {
		t.Errorf("ResultReason(outcome 97) = %q, want it to name 97", got)
	}
	if _, err := FromProto(taskhostv1.AttemptOutcome(97)); err == nil || !strings.Contains(err.Error(), "97") {
		t.Errorf("FromProto(97) error = %v, want one naming 97", err)
	}
}

// TestLegacyResults: a taskhost that sends no outcome is read as the
// runner read it before the field existed.
func TestLegacyResults(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		reason       string
		exit, signal int32
		want         sched.Outcome
		wantReason   string
	}{
		{"exit", 0, 0, sched.Success, ""},
		{"", 0, 0, sched.Success, ""},
		{"", 0, 9, sched.Failure, "exit"},
		{"", 2, 0, sched.Failure, "exit"},
		{"exit", 1, 0, sched.Failure, "exit"},
		{"signal", 137, 9, sched.Failure, "signal"},
		{"start_error", 127, 0, sched.Failure, "start_error"},
		{"timeout", 0, 0, sched.Timeout, "timeout"},
		{"timeout", 143, 15, sched.Timeout, "timeout"},
		{"cancelled", -1, 0, sched.Killed, "cancelled"},
		{"oom", 137, 9, sched.OOM, "oom"},
		// A worker cannot declare its attempt lost (a free retry): a
		// failure, stored as such.
		{"lost", 0, 0, sched.Failure, "exit"},
		{"mystery", 0, 0, sched.Failure, "mystery"},
	} {
		res := &taskhostv1.AttemptResult{Reason: c.reason, ExitCode: c.exit, Signal: c.signal}
		if got := FromResult(res); got != c.want {
			t.Errorf("FromResult(%q, exit %d, signal %d) = %v, want %v", c.reason, c.exit, c.signal, got, c.want)
		}
		if got := ResultReason(res); got != c.wantReason {
			t.Errorf("ResultReason(%q, exit %d, signal %d) = %q, want %q", c.reason, c.exit, c.signal, got, c.wantReason)
		}
		// What the taskhost labels such a result reads back the same.
		labelled := &taskhostv1.AttemptResult{Reason: c.reason, ExitCode: c.exit, Signal: c.signal, Outcome: Label(res)}
		if got := FromResult(labelled); got != c.want {
			t.Errorf("labelled %v: FromResult = %v, want %v", labelled.Outcome, got, c.want)
		}
		if got := ResultReason(labelled); got != c.wantReason {
			t.Errorf("labelled %v: ResultReason = %q, want %q", labelled.Outcome, got, c.wantReason)
		}
	}
}

// TestOutcomeWinsOverReason: with the outcome set, a reason that belongs
// to another outcome cannot make the stored reason lie (the store tells an
// OOM kill by its reason alone).
func TestOutcomeWinsOverReason(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		po         taskhostv1.AttemptOutcome
		reason     string
		wantReason string
	}{
		{taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_FAILED, "oom", "exit"},
		{taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_FAILED, "lost", "exit"},
		{taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_FAILED, "signal", "signal"},
		{taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_SUCCEEDED, "exit", ""},
		{taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_OOM, "exit", "oom"},
		{taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_TIMED_OUT, "", "timeout"},
		{taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_CANCELLED, "oom", "cancelled"},
	} {
		res := &taskhostv1.AttemptResult{Outcome: c.po, Reason: c.reason, ExitCode: 137}
		if got := ResultReason(res); got != c.wantReason {
			t.Errorf("ResultReason(%v, %q) = %q, want %q", c.po, c.reason, got, c.wantReason)
		}
	}
}

func FuzzFromResult(f *testing.F) {
	f.Add(int32(0), "exit", int32(0), int32(0))
	f.Add(int32(5), "oom", int32(137), int32(9))
	f.Add(int32(-3), "", int32(-1), int32(200))
	f.Fuzz(func(t *testing.T, po int32, reason string, exit, signal int32) {
		res := &taskhostv1.AttemptResult{Outcome: taskhostv1.AttemptOutcome(po), Reason: reason, ExitCode: exit, Signal: signal}
		o, r := FromResult(res), ResultReason(res)
		if _, err := sched.ParseOutcome(o.String()); err != nil {
			t.Fatalf("FromResult gave an outcome the core does not name: %v", o)
		}
		if o == sched.Lost {
			t.Fatalf("a worker's result read as lost: %+v", res)
		}
		if (r == store.ReasonOOM) != (o == sched.OOM) {
			t.Fatalf("outcome %v with reason %q", o, r)
		}
		if (r == "") != (o == sched.Success) {
			t.Fatalf("outcome %v with reason %q", o, r)
		}
	})
}
