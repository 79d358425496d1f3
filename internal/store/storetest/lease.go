package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// take acquires lease name for holder at now until now+ttl and checks that
// it was taken at epoch want.
func take(t *testing.T, s store.Store, name, holder string, now time.Time, ttl time.Duration, want int64) store.Lease {
	t.Helper()
	l := store.Lease{Name: name, Holder: holder, Address: "http://" + holder, ExpiresAt: now.Add(ttl), Epoch: 99}
	got, ok, err := s.AcquireLease(t.Context(), l, now)
	if err != nil || !ok {
		t.Fatalf("AcquireLease(%s by %s) at %v: %+v %v %v, want it taken", name, holder, now, got, ok, err)
	}
	l.Epoch = want
	checkLease(t, fmt.Sprintf("AcquireLease(%s by %s)", name, holder), got, l)
	return got
}

func checkLease(t *testing.T, what string, got, want store.Lease) {
	t.Helper()
	if got.Name != want.Name || got.Holder != want.Holder || got.Address != want.Address || !got.ExpiresAt.Equal(want.ExpiresAt) || got.Epoch != want.Epoch {
		t.Errorf("%s: %+v, want %+v", what, got, want)
	}
}

func release(t *testing.T, s store.Store, name, holder string) {
	t.Helper()
	if err := s.ReleaseLease(t.Context(), name, holder); err != nil {
		t.Fatalf("ReleaseLease(%s, %s): %v", name, holder, err)
	}
}

func listLeases(t *testing.T, s store.Store, prefix string) []store.Lease {
	t.Helper()
	ls, err := s.ListLeases(t.Context(), prefix)
	if err != nil {
		t.Fatalf("ListLeases(%q): %v", prefix, err)
	}
	return ls
}

// testLeaseEpoch: a lease's epoch starts at 1, stays while its holder
// renews (even after an expiry nobody used), and grows by one whenever the
// lease passes to another holder or is taken after a release, its last
// holder's own taking included.
func testLeaseEpoch(t *testing.T, s store.Store) {
	ctx := t.Context()
	const name = "shard/07"
	ttl := 10 * time.Second
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }

	take(t, s, name, "a", at(0), ttl, 1)
	take(t, s, name, "a", at(5), ttl, 1) // renewed before the expiry
	// Renewed long after the expiry: nobody took it, so the tenure goes on.
	take(t, s, name, "a", at(60), ttl, 1)

	// Refused while held: the answer is the holder's lease and epoch.
	got, ok, err := s.AcquireLease(ctx, store.Lease{Name: name, Holder: "b", Address: "http://b", ExpiresAt: at(100)}, at(65))
	if err != nil || ok {
		t.Fatalf("AcquireLease by b of a's lease: %+v %v %v, want refused", got, ok, err)
	}
	checkLease(t, "refused AcquireLease", got, store.Lease{Name: name, Holder: "a", Address: "http://a", ExpiresAt: at(70), Epoch: 1})

	// Taken over after the expiry, then back: every change of holder is a
	// new epoch, a's return included.
	take(t, s, name, "b", at(70), ttl, 2)
	take(t, s, name, "b", at(75), ttl, 2)
	take(t, s, name, "a", at(90), ttl, 3)

	// A release by someone who does not hold it does nothing.
	release(t, s, name, "b")
	if _, ok, _ := s.AcquireLease(ctx, store.Lease{Name: name, Holder: "b", ExpiresAt: at(200)}, at(91)); ok {
		t.Fatal("b took a's lease after releasing it while not holding it")
	}
	// Released and taken again by its last holder: a new tenure.
	release(t, s, name, "a")
	take(t, s, name, "a", at(92), ttl, 4)
	// Released and taken by another before the old expiry.
	release(t, s, name, "a")
	release(t, s, name, "a") // twice is once
	take(t, s, name, "b", at(93), ttl, 5)

	// Other leases count their own epochs.
	take(t, s, "shard/08", "b", at(93), ttl, 1)
	take(t, s, store.MemberLease("b"), "b", at(93), ttl, 1)

	// Bad leases are refused and change nothing.
	for what, l := range map[string]store.Lease{
		"an empty name":         {Holder: "a", ExpiresAt: at(300)},
		"an empty holder":       {Name: name, ExpiresAt: at(300)},
		"a NUL in the holder":   {Name: name, Holder: "a\x00", ExpiresAt: at(300)},
		"invalid UTF-8 address": {Name: name, Holder: "c", Address: "\xff", ExpiresAt: at(300)},
	} {
		if got, ok, err := s.AcquireLease(ctx, l, at(200)); !errors.Is(err, store.ErrRejected) || ok {
			t.Errorf("AcquireLease of %s: %+v %v %v, want an error wrapping ErrRejected", what, got, ok, err)
		}
	}
	// A release with an empty holder does not touch a held lease.
	release(t, s, name, "")
	take(t, s, name, "b", at(94), ttl, 5)
	if ls := listLeases(t, s, name); len(ls) != 1 || ls[0].Holder != "b" || ls[0].Epoch != 5 {
		t.Errorf("ListLeases(%s) after the refused acquires: %+v, want b's at epoch 5", name, ls)
	}
}

// testFenceEpoch: a fence with an epoch lets a write through only while
// its holder holds the lease at that epoch; a holder that lost the lease
// and took it back is fenced off under its old epoch (Apply and
// AppendTasksFenced alike, changing nothing) and writes under the new one.
// Epoch 0 checks the holder only.
func testFenceEpoch(t *testing.T, s store.Store) {
	ctx := t.Context()
	lease := store.ShardLease(3)
	ttl := 10 * time.Second
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(3))
	fence := func(holder string, epoch int64) store.Fence {
		return store.Fence{Lease: lease, Holder: holder, Epoch: epoch}
	}

	take(t, s, lease, "a", base, ttl, 1)
	apply(t, s, &store.Batch{Fence: fence("a", 1),
		Tasks:    []store.TaskUpdate{{JobID: job.ID, Index: 0, State: store.TaskRunning, Attempts: 1, StartedAt: base}},
		Attempts: []store.Attempt{{JobID: job.ID, TaskIndex: 0, Number: 1, WorkerID: "w1", State: store.AttemptRunning, StartedAt: base}},
		Jobs:     []store.JobUpdate{{ID: job.ID, State: store.JobRunning, Counts: store.TaskCounts{Blocked: 2, Running: 1}, StartedAt: base}},
	})
	if err := s.AppendTasksFenced(ctx, fence("a", 1), job.ID, moreTasks("a1", 3, 1)); err != nil {
		t.Fatalf("AppendTasksFenced at the current epoch: %v", err)
	}

	// b takes the lease over, a takes it back: a holds it, at epoch 3.
	take(t, s, lease, "b", base.Add(11*time.Second), ttl, 2)
	take(t, s, lease, "a", base.Add(22*time.Second), ttl, 3)

	before, beforeTasks := getJob(t, s, job.ID), loadTasks(t, s, job.ID)
	stale := func(f store.Fence) *store.Batch {
		return &store.Batch{Fence: f,
			Tasks:    []store.TaskUpdate{{JobID: job.ID, Index: 0, State: store.TaskSucceeded, Attempts: 1, StartedAt: base, FinishedAt: base.Add(time.Second)}},
			Attempts: []store.Attempt{{JobID: job.ID, TaskIndex: 0, Number: 1, WorkerID: "w1", State: store.AttemptSucceeded, StartedAt: base, FinishedAt: base.Add(time.Second)}},
			Jobs:     []store.JobUpdate{{ID: job.ID, State: store.JobRunning, Counts: store.TaskCounts{Blocked: 3, Succeeded: 1}, StartedAt: base}},
		}
	}
	for _, f := range []store.Fence{fence("a", 1), fence("a", 2), fence("a", 4), fence("b", 2), fence("b", 3)} {
		what := fmt.Sprintf("%s at epoch %d while a holds the lease at epoch 3", f.Holder, f.Epoch)
		err := s.Apply(ctx, stale(f))
		checkFencedBy(t, "Apply by "+what, err, lease, "a")
		if f.Holder == "a" && err != nil && !strings.Contains(err.Error(), fmt.Sprintf("epoch %d", f.Epoch)) {
			t.Errorf("Apply by %s: error %q does not name epoch %d", what, err, f.Epoch)
		}
		checkFencedBy(t, "AppendTasksFenced by "+what, s.AppendTasksFenced(ctx, f, job.ID, moreTasks("stale", 4, 2)), lease, "a")
		checkFencedBy(t, "AppendTasksFenced of no tasks by "+what, s.AppendTasksFenced(ctx, f, job.ID, nil), lease, "a")
	}
	checkUnchanged(t, s, "after the stale writes", before, beforeTasks)
	checkAttempts(t, s, job.ID, 0, []store.Attempt{{JobID: job.ID, TaskIndex: 0, Number: 1, WorkerID: "w1", State: store.AttemptRunning, StartedAt: base}})

	// At the current epoch, and with no epoch (the holder only), a writes.
	apply(t, s, &store.Batch{Fence: fence("a", 3), Tasks: []store.TaskUpdate{{JobID: job.ID, Index: 1, State: store.TaskQueued}}})
	if err := s.AppendTasksFenced(ctx, fence("a", 3), job.ID, moreTasks("a3", 4, 1)); err != nil {
		t.Fatalf("AppendTasksFenced at epoch 3: %v", err)
	}
	apply(t, s, &store.Batch{Fence: fence("a", 0), Tasks: []store.TaskUpdate{{JobID: job.ID, Index: 2, State: store.TaskQueued}}})
	if err := s.AppendTasksFenced(ctx, fence("a", 0), job.ID, moreTasks("a0", 5, 1)); err != nil {
		t.Fatalf("AppendTasksFenced with no epoch: %v", err)
	}
	got := loadTasks(t, s, job.ID)
	if len(got) != 6 || got[1].State != store.TaskQueued || got[2].State != store.TaskQueued || got[0].State != store.TaskRunning {
		t.Fatalf("after a's writes at epoch 3: %d tasks, states %s %s %s; want 6, running queued queued", len(got), got[0].State, got[1].State, got[2].State)
	}

	// Released and taken again by a: epoch 4, and epoch 3 is stale.
	release(t, s, lease, "a")
	checkFencedBy(t, "Apply by a at epoch 3 after releasing", s.Apply(ctx, &store.Batch{Fence: fence("a", 3), Tasks: []store.TaskUpdate{{JobID: job.ID, Index: 1, State: store.TaskRunning}}}), lease, "")
	checkFencedBy(t, "Apply by a with no epoch after releasing", s.Apply(ctx, &store.Batch{Fence: fence("a", 0), Tasks: []store.TaskUpdate{{JobID: job.ID, Index: 1, State: store.TaskRunning}}}), lease, "")
	take(t, s, lease, "a", base.Add(23*time.Second), ttl, 4)
	checkFencedBy(t, "Apply by a at epoch 3 after taking the lease again", s.Apply(ctx, &store.Batch{Fence: fence("a", 3), Tasks: []store.TaskUpdate{{JobID: job.ID, Index: 1, State: store.TaskRunning}}}), lease, "a")
	checkFencedBy(t, "AppendTasksFenced by a at epoch 3 after taking the lease again", s.AppendTasksFenced(ctx, fence("a", 3), job.ID, moreTasks("late", 6, 1)), lease, "a")
	apply(t, s, &store.Batch{Fence: fence("a", 4), Tasks: []store.TaskUpdate{{JobID: job.ID, Index: 1, State: store.TaskRunning}}})
	if got := loadTasks(t, s, job.ID); len(got) != 6 || got[1].State != store.TaskRunning {
		t.Errorf("after the writes around the release: %d tasks, task 1 %s; want 6, running", len(got), got[1].State)
	}
}

// testListLeases: ListLeases lists the held leases under a prefix taken
// literally (LIKE's '%' and '_' and its escape '\' included), in byte
// order of their names, expired ones included and released ones not.
func testListLeases(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Expiring in 2025: long expired by the database's clock too.
	ttl := 10 * time.Second
	names := []string{
		"member/a", "member/B", "member/é", "member/z", "members", "member",
		"shard/00", "shard/01", "shard/10", "shard/05",
		"a%b/1", "a%bc", "axb/1", "a_b/1", `a\b`, "ab",
	}
	for i, n := range names {
		take(t, s, n, fmt.Sprintf("h%d", i), base, ttl, 1)
	}
	// Released, and released then taken by another (epoch 2).
	take(t, s, "member/gone", "gone", base, ttl, 1)
	release(t, s, "member/gone", "gone")
	release(t, s, "shard/05", "h9")
	take(t, s, "shard/05", "h9b", base.Add(time.Second), ttl, 2)

	holder := map[string]string{"shard/05": "h9b"}
	for i, n := range names {
		if _, ok := holder[n]; !ok {
			holder[n] = fmt.Sprintf("h%d", i)
		}
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"member/", []string{"member/B", "member/a", "member/z", "member/é"}},
		{"member", []string{"member", "member/B", "member/a", "member/z", "member/é", "members"}},
		{"shard/", []string{"shard/00", "shard/01", "shard/05", "shard/10"}},
		{"shard/0", []string{"shard/00", "shard/01", "shard/05"}},
		{"a%", []string{"a%b/1", "a%bc"}},
		{"a%b", []string{"a%b/1", "a%bc"}},
		{"a%b/", []string{"a%b/1"}},
		{"a_", []string{"a_b/1"}},
		{"a_b", []string{"a_b/1"}},
		{`a\`, []string{`a\b`}},
		{"%", nil},
		{"_", nil},
		{"a", []string{"a%b/1", "a%bc", `a\b`, "a_b/1", "ab", "axb/1"}},
		{"member/a", []string{"member/a"}},
		{"member/gone", nil},
		{"zzz", nil},
		{"", []string{"a%b/1", "a%bc", `a\b`, "a_b/1", "ab", "axb/1", "member", "member/B", "member/a", "member/z", "member/é", "members", "shard/00", "shard/01", "shard/05", "shard/10"}},
	} {
		ls := listLeases(t, s, tc.prefix)
		var got []string
		for _, l := range ls {
			got = append(got, l.Name)
			epoch := int64(1)
			if l.Name == "shard/05" {
				epoch = 2
			}
			checkLease(t, fmt.Sprintf("ListLeases(%q): lease %s", tc.prefix, l.Name), l,
				store.Lease{Name: l.Name, Holder: holder[l.Name], Address: "http://" + holder[l.Name], ExpiresAt: l.ExpiresAt, Epoch: epoch})
			if l.Name != "shard/05" && !l.ExpiresAt.Equal(base.Add(ttl)) {
				t.Errorf("ListLeases(%q): lease %s expires at %v, want %v", tc.prefix, l.Name, l.ExpiresAt, base.Add(ttl))
			}
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("ListLeases(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
	if ls, err := s.ListLeases(ctx, "member/\xff"); !errors.Is(err, store.ErrRejected) {
		t.Errorf("ListLeases(invalid UTF-8) = %v, %v; want an error wrapping ErrRejected", ls, err)
	}
}

// leaseCall is one lease of an AcquireLeases test: its name (under a
// prefix the test adds), holder and time to live from the call's now.
type leaseCall struct {
	name, holder string
	ttl          time.Duration
}

func (c leaseCall) lease(prefix string, now time.Time) store.Lease {
	return store.Lease{Name: prefix + c.name, Holder: c.holder, Address: "http://" + c.holder, ExpiresAt: now.Add(c.ttl), Epoch: 99}
}

// leaseHistory brings the leases under prefix to the state that
// testAcquireLeases starts from, at base+10s.
func leaseHistory(t *testing.T, s store.Store, prefix string) {
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }
	ttl := 10 * time.Second
	take(t, s, prefix+"renew", "a", at(0), ttl, 1)
	take(t, s, prefix+"renew-late", "a", at(0), 5*time.Second, 1)
	take(t, s, prefix+"other", "b", at(0), time.Hour, 1)
	take(t, s, prefix+"expired", "b", at(0), 5*time.Second, 1)
	take(t, s, prefix+"released", "a", at(0), ttl, 1)
	release(t, s, prefix+"released", "a")
	take(t, s, prefix+"released-b", "b", at(0), ttl, 1)
	take(t, s, prefix+"released-b", "b", at(1), ttl, 1)
	release(t, s, prefix+"released-b", "b")
}

// testAcquireLeases: one AcquireLeases call over new, renewed (before and
// after an unused expiry), held-by-another, expired, released and
// duplicated leases of several holders gives, in the order it was given,
// the leases, epochs and answers that AcquireLease of each in turn gives
// from the same state, and leaves the same leases stored. The leases are
// not given in name order, so that a driver that reorders them must put
// the answers back.
func testAcquireLeases(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := base.Add(10 * time.Second)
	ttl := 10 * time.Second
	calls := []leaseCall{
		{"renew", "a", ttl},
		{"new", "a", ttl},
		{"other", "a", ttl},
		{"dup", "c", ttl},
		{"renew-late", "a", 2 * ttl},
		{"expired", "a", ttl},
		{"released", "a", ttl},
		{"dup", "a", ttl},
		{"released-b", "a", ttl},
		{"member/c", "c", ttl},
	}
	// The answers, with the holder, time to live and epoch of each lease
	// as stored after its acquire.
	want := []struct {
		ok     bool
		holder string
		exp    time.Time
		epoch  int64
	}{
		{true, "a", now.Add(ttl), 1},         // renewed: the tenure goes on
		{true, "a", now.Add(ttl), 1},         // new
		{false, "b", base.Add(time.Hour), 1}, // held by b
		{true, "c", now.Add(ttl), 1},         // new, to c
		{true, "a", now.Add(2 * ttl), 1},     // renewed after an expiry nobody used
		{true, "a", now.Add(ttl), 2},         // b's, expired: taken over
		{true, "a", now.Add(ttl), 2},         // released by a, taken again by a
		{false, "c", now.Add(ttl), 1},        // c took it earlier in the call
		{true, "a", now.Add(ttl), 2},         // released by b, taken by a
		{true, "c", now.Add(ttl), 1},         // a membership lease, new
	}

	// The same history under two prefixes: one acquired lease by lease,
	// the other in one call.
	leaseHistory(t, s, "one/")
	leaseHistory(t, s, "batch/")
	var one []store.Lease
	var oneOK []bool
	for _, c := range calls {
		got, ok, err := s.AcquireLease(ctx, c.lease("one/", now), now)
		if err != nil {
			t.Fatalf("AcquireLease(one/%s by %s): %v", c.name, c.holder, err)
		}
		one, oneOK = append(one, got), append(oneOK, ok)
	}
	ls := make([]store.Lease, len(calls))
	for i, c := range calls {
		ls[i] = c.lease("batch/", now)
	}
	got, ok, err := s.AcquireLeases(ctx, ls, now)
	if err != nil {
		t.Fatalf("AcquireLeases: %v", err)
	}
	if len(got) != len(calls) || len(ok) != len(calls) {
		t.Fatalf("AcquireLeases of %d leases: %d leases and %d answers", len(calls), len(got), len(ok))
	}
	for i, c := range calls {
		w := want[i]
		what := fmt.Sprintf("lease %d (%s by %s)", i, c.name, c.holder)
		checkLease(t, "AcquireLeases: "+what, got[i], store.Lease{Name: "batch/" + c.name, Holder: w.holder, Address: "http://" + w.holder, ExpiresAt: w.exp, Epoch: w.epoch})
		if ok[i] != w.ok {
			t.Errorf("AcquireLeases: %s held = %v, want %v", what, ok[i], w.ok)
		}
		// What AcquireLease gave from the same state, renamed.
		sep := one[i]
		sep.Name = "batch/" + strings.TrimPrefix(sep.Name, "one/")
		checkLease(t, "AcquireLeases against AcquireLease: "+what, got[i], sep)
		if ok[i] != oneOK[i] {
			t.Errorf("AcquireLeases: %s held = %v, AcquireLease said %v", what, ok[i], oneOK[i])
		}
	}
	// Both ways leave the same leases stored.
	stored := listLeases(t, s, "batch/")
	sep := listLeases(t, s, "one/")
	if len(stored) != len(sep) || len(stored) != 9 {
		t.Fatalf("ListLeases after AcquireLeases: %d leases, %d after AcquireLease; want 9 both", len(stored), len(sep))
	}
	for i := range stored {
		l := sep[i]
		l.Name = "batch/" + strings.TrimPrefix(l.Name, "one/")
		checkLease(t, "ListLeases after AcquireLeases against after AcquireLease", stored[i], l)
	}

	// No leases: no answers and no error.
	for _, empty := range [][]store.Lease{nil, {}} {
		if got, ok, err := s.AcquireLeases(ctx, empty, now); got != nil || ok != nil || err != nil {
			t.Errorf("AcquireLeases(%#v) = %v %v %v, want nil results", empty, got, ok, err)
		}
	}
}

// testAcquireLeasesRefused: one bad lease anywhere in an AcquireLeases call
// refuses the whole call with an error wrapping ErrRejected that names
// the bad lease's place (and its name, if it has one), and nothing
// changes, the good leases before it included.
func testAcquireLeasesRefused(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := base.Add(20 * time.Second)
	ttl := 10 * time.Second
	take(t, s, "shard/01", "a", base, ttl, 1)
	take(t, s, "shard/02", "b", base, ttl, 1) // expired at now
	release(t, s, "shard/02", "b")
	before := listLeases(t, s, "")

	good := []store.Lease{
		{Name: "shard/01", Holder: "a", Address: "http://a", ExpiresAt: now.Add(ttl)},
		{Name: "shard/02", Holder: "a", Address: "http://a", ExpiresAt: now.Add(ttl)},
		{Name: "shard/03", Holder: "a", Address: "http://a", ExpiresAt: now.Add(ttl)},
	}
	for _, tc := range []struct {
		what   string
		bad    store.Lease
		at     int
		naming []string
	}{
		{"an empty name", store.Lease{Holder: "a", ExpiresAt: now.Add(ttl)}, 3, []string{"lease 3 of 4", "name is empty"}},
		{"an empty holder", store.Lease{Name: "shard/04", ExpiresAt: now.Add(ttl)}, 0, []string{"lease 0 of 4", `"shard/04"`, "holder is empty"}},
		{"a NUL in the holder", store.Lease{Name: "shard/04", Holder: "a\x00", ExpiresAt: now.Add(ttl)}, 1, []string{"lease 1 of 4", `"shard/04"`, "NUL"}},
		{"invalid UTF-8 in the address", store.Lease{Name: "shard/04", Holder: "a", Address: "\xff", ExpiresAt: now.Add(ttl)}, 3, []string{"lease 3 of 4", `"shard/04"`, "UTF-8"}},
		{"invalid UTF-8 in the name", store.Lease{Name: "shard/\xff", Holder: "a", ExpiresAt: now.Add(ttl)}, 2, []string{"lease 2 of 4", "UTF-8"}},
	} {
		ls := slices.Insert(slices.Clone(good), tc.at, tc.bad)
		got, ok, err := s.AcquireLeases(ctx, ls, now)
		if !errors.Is(err, store.ErrRejected) || got != nil || ok != nil {
			t.Errorf("AcquireLeases with %s: %v %v %v, want nil results and an error wrapping ErrRejected", tc.what, got, ok, err)
			continue
		}
		for _, n := range tc.naming {
			if !strings.Contains(err.Error(), n) {
				t.Errorf("AcquireLeases with %s: error %q does not say %q", tc.what, err, n)
			}
		}
	}
	after := listLeases(t, s, "")
	if len(after) != len(before) {
		t.Fatalf("ListLeases after the refused calls: %+v, want %+v", after, before)
	}
	for i := range after {
		checkLease(t, "ListLeases after the refused calls", after[i], before[i])
	}
	// shard/02 stayed released: a takes it at the next epoch, and
	// shard/03 was never made: a takes it at epoch 1.
	got, ok, err := s.AcquireLeases(ctx, good, now)
	if err != nil || !slices.Equal(ok, []bool{true, true, true}) {
		t.Fatalf("AcquireLeases of the good leases: %+v %v %v, want all taken", got, ok, err)
	}
	for i, epoch := range []int64{1, 2, 1} {
		w := good[i]
		w.Epoch = epoch
		checkLease(t, "AcquireLeases of the good leases", got[i], w)
	}
}

// testAcquireLeasesConcurrent: holders that each acquire the same leases
// in one call, each in its own order, all succeed (no deadlock between
// calls that lock rows in different orders) and agree on who holds each
// lease: the first to take it, at epoch 1.
func testAcquireLeasesConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	const holders, rounds = 4, 20
	names := []string{"shard/00", "shard/01", "shard/02", "shard/03", "shard/04", "shard/05"}
	now := base
	type answer struct {
		holder string
		epoch  int64
	}
	results := make([][]map[string]answer, holders)
	var wg sync.WaitGroup
	errs := make(chan error, holders)
	for h := range holders {
		wg.Go(func() {
			holder := fmt.Sprintf("h%d", h)
			for r := range rounds {
				// Rotated and, for odd holders, reversed: every pair of
				// holders meets the leases in different orders.
				ls := make([]store.Lease, len(names))
				for i := range names {
					n := names[(i+h+r)%len(names)]
					if h%2 == 1 {
						n = names[len(names)-1-(i+h+r)%len(names)]
					}
					ls[i] = store.Lease{Name: n, Holder: holder, ExpiresAt: now.Add(time.Hour)}
				}
				got, ok, err := s.AcquireLeases(ctx, ls, now)
				if err != nil {
					errs <- fmt.Errorf("AcquireLeases by %s, round %d: %w", holder, r, err)
					return
				}
				m := map[string]answer{}
				for i, l := range got {
					if l.Name != ls[i].Name || ok[i] != (l.Holder == holder) {
						errs <- fmt.Errorf("AcquireLeases by %s, round %d: lease %d is %+v held %v, asked for %s", holder, r, i, l, ok[i], ls[i].Name)
						return
					}
					m[l.Name] = answer{l.Holder, l.Epoch}
				}
				results[h] = append(results[h], m)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	final := map[string]answer{}
	for _, l := range listLeases(t, s, "shard/") {
		final[l.Name] = answer{l.Holder, l.Epoch}
	}
	for _, n := range names {
		if a := final[n]; a.holder == "" || a.epoch != 1 {
			t.Errorf("lease %s after the calls: %+v, want held at epoch 1", n, a)
		}
	}
	for h, rs := range results {
		for r, m := range rs {
			for n, a := range m {
				if a != final[n] {
					t.Errorf("h%d, round %d: lease %s answered %+v, but %+v holds it", h, r, n, a, final[n])
				}
			}
		}
	}
}
