package storetest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// hashOf is a token's stored hash: the hex SHA-256 of its secret.
func hashOf(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// newToken returns a token with every field set.
func newToken(id string) *store.Token {
	return &store.Token{
		ID:            id,
		Hash:          hashOf("secret-of-" + id),
		Subject:       "alice@example.com",
		Kind:          "user",
		Teams:         map[string]string{"perception": "admin", "planning": "viewer"},
		PlatformAdmin: false,
		Description:   "laptop 日本 🚀 \"quoted\"",
		CreatedBy:     "root",
		CreatedAt:     base,
		ExpiresAt:     base.Add(90 * 24 * time.Hour),
	}
}

func normToken(t store.Token) store.Token {
	t.CreatedAt, t.ExpiresAt, t.RevokedAt = norm(t.CreatedAt), norm(t.ExpiresAt), norm(t.RevokedAt)
	return t
}

func checkToken(t *testing.T, got *store.Token, want store.Token) {
	t.Helper()
	if want = normToken(want); !reflect.DeepEqual(*got, want) {
		t.Errorf("token %s:\n got %#v\nwant %#v", want.ID, *got, want)
	}
}

func getToken(t *testing.T, s store.Store, id string) *store.Token {
	t.Helper()
	tok, err := s.GetToken(t.Context(), id)
	if err != nil {
		t.Fatalf("GetToken(%s): %v", id, err)
	}
	return tok
}

func tokenIDs(ts []store.Token) []string {
	ids := make([]string, len(ts))
	for i, t := range ts {
		ids[i] = t.ID
	}
	return ids
}

func testTokenRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	full := newToken("tok-1")
	if err := s.CreateToken(ctx, full); err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	checkToken(t, getToken(t, s, "tok-1"), *full)

	// Nil and empty teams come back as they went in; zero times stay zero;
	// a token created revoked keeps its time.
	for _, tok := range []*store.Token{
		{ID: "tok-nil", Hash: hashOf("a"), Subject: "ci-nightly", Kind: "service-account", PlatformAdmin: true},
		{ID: "tok-empty", Hash: hashOf("b"), Subject: "bob", Kind: "user", Teams: map[string]string{}, CreatedAt: base,
			RevokedAt: base.Add(time.Minute)},
	} {
		if err := s.CreateToken(ctx, tok); err != nil {
			t.Fatalf("CreateToken(%s): %v", tok.ID, err)
		}
		checkToken(t, getToken(t, s, tok.ID), *tok)
	}

	_, err := s.GetToken(ctx, "no-such-token")
	checkNotFound(t, "GetToken(unknown)", err, "no-such-token")
	_, err = s.GetToken(ctx, "tok-")
	checkNotFound(t, "GetToken(prefix of an ID)", err, "tok-")
	for _, id := range []string{"", "bad \xff", "nul\x00"} {
		_, err = s.GetToken(ctx, id)
		checkNotFound(t, fmt.Sprintf("GetToken(%q)", id), err, "")
	}

	dup := newToken("tok-1")
	dup.Subject = "mallory"
	err = s.CreateToken(ctx, dup)
	if !errors.Is(err, store.ErrRejected) || !strings.Contains(err.Error(), "tok-1") || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("CreateToken(duplicate ID) = %v, want an error wrapping ErrRejected saying tok-1 already exists", err)
	}
	checkToken(t, getToken(t, s, "tok-1"), *full)
}

// testTokenNoSecret checks that a token is kept by its hash only: the
// type has no field for a secret, a hash that is not a SHA-256 in hex (a
// secret passed by mistake) is refused without being quoted, and what the
// store returns never holds the secret.
func testTokenNoSecret(t *testing.T, s store.Store) {
	ctx := t.Context()
	want := []string{"ID", "Hash", "Subject", "Kind", "Teams", "PlatformAdmin", "Description", "CreatedBy", "CreatedAt", "ExpiresAt", "RevokedAt"}
	var fields []string
	for f := range reflect.TypeFor[store.Token]().Fields() {
		fields = append(fields, f.Name)
	}
	if !slices.Equal(fields, want) {
		t.Errorf("store.Token has fields %v, want %v: a new field must not hold a secret; update this test once sure", fields, want)
	}

	const secret = "haul_tok-2_9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08XYZ"
	for _, hash := range []string{
		secret,
		secret[len(secret)-64:],         // 64 characters, but not all hexadecimal
		strings.ToUpper(hashOf(secret)), // hexadecimal, but upper case
		hashOf(secret)[:63],             // too short
		hashOf(secret) + "0",            // too long
		"",
	} {
		tok := newToken("tok-2")
		tok.Hash = hash
		err := s.CreateToken(ctx, tok)
		if !errors.Is(err, store.ErrRejected) || !strings.Contains(err.Error(), "hash") {
			t.Errorf("CreateToken(hash %d characters) = %v, want an error wrapping ErrRejected naming the hash", len(hash), err)
		} else if hash != "" && strings.Contains(err.Error(), hash) {
			t.Errorf("CreateToken(bad hash): the error %q quotes the hash", err)
		}
	}
	if _, err := s.GetToken(ctx, "tok-2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetToken after refused creates: %v, want ErrNotFound", err)
	}

	tok := newToken("tok-2")
	tok.Hash = hashOf(secret)
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	got := getToken(t, s, "tok-2")
	listed, err := s.ListTokens(ctx, store.TokenFilter{IncludeRevoked: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []any{*got, listed} {
		if text := fmt.Sprintf("%#v", v); strings.Contains(text, secret) || strings.Contains(text, "9f86d081884c7d659a2f") {
			t.Errorf("the store returned the token's secret: %s", text)
		}
	}
	if got.Hash != hashOf(secret) {
		t.Errorf("stored hash %s, want %s", got.Hash, hashOf(secret))
	}
}

func testTokenRefused(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, tc := range []struct {
		name  string
		edit  func(*store.Token)
		names []string
	}{
		{"empty ID", func(tok *store.Token) { tok.ID = "" }, []string{"ID"}},
		{"invalid UTF-8 ID", func(tok *store.Token) { tok.ID = "tok-\xff" }, []string{"ID", "UTF-8"}},
		{"NUL in ID", func(tok *store.Token) { tok.ID = "tok\x00" }, []string{"ID", "NUL"}},
		{"empty subject", func(tok *store.Token) { tok.Subject = "" }, []string{"subject", "tok-r"}},
		{"NUL in subject", func(tok *store.Token) { tok.Subject = "al\x00ice" }, []string{"subject", "NUL"}},
		{"empty kind", func(tok *store.Token) { tok.Kind = "" }, []string{"kind"}},
		{"invalid UTF-8 description", func(tok *store.Token) { tok.Description = "\xc3\x28" }, []string{"description", "UTF-8"}},
		{"NUL in created_by", func(tok *store.Token) { tok.CreatedBy = "\x00" }, []string{"created_by"}},
		{"unknown role", func(tok *store.Token) { tok.Teams["perception"] = "owner" }, []string{"perception", "owner", "viewer"}},
		{"empty team", func(tok *store.Token) { tok.Teams[""] = "member" }, []string{"team"}},
		{"NUL in a team", func(tok *store.Token) { tok.Teams["a\x00"] = "member" }, []string{"teams", "NUL"}},
		{"expiry out of range", func(tok *store.Token) { tok.ExpiresAt = time.Date(2500, 1, 1, 0, 0, 0, 0, time.UTC) }, []string{"expires_at"}},
		{"creation out of range", func(tok *store.Token) { tok.CreatedAt = time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC) }, []string{"created_at"}},
	} {
		tok := newToken("tok-r")
		tc.edit(tok)
		err := s.CreateToken(ctx, tok)
		if !errors.Is(err, store.ErrRejected) {
			t.Errorf("%s: CreateToken = %v, want an error wrapping ErrRejected", tc.name, err)
			continue
		}
		for _, w := range tc.names {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %q", tc.name, err, w)
			}
		}
	}
	if err := s.CreateToken(ctx, nil); !errors.Is(err, store.ErrRejected) {
		t.Errorf("CreateToken(nil) = %v, want an error wrapping ErrRejected", err)
	}
	got, err := s.ListTokens(ctx, store.TokenFilter{IncludeRevoked: true})
	if err != nil || len(got) != 0 {
		t.Errorf("after refused creates: ListTokens = %v, %v, want none", tokenIDs(got), err)
	}
	if _, err := s.ListTokens(ctx, store.TokenFilter{Team: "a\x00"}); !errors.Is(err, store.ErrRejected) || !strings.Contains(err.Error(), "team") {
		t.Errorf("ListTokens(team with NUL) = %v, want an error wrapping ErrRejected naming the team", err)
	}
	if _, err := s.ListTokens(ctx, store.TokenFilter{Subject: "\xff"}); !errors.Is(err, store.ErrRejected) || !strings.Contains(err.Error(), "subject") {
		t.Errorf("ListTokens(invalid UTF-8 subject) = %v, want an error wrapping ErrRejected naming the subject", err)
	}
}

func testListTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	// tok-0 (oldest) .. tok-6: alternating subjects, various teams; tok-2
	// and tok-5 revoked.
	teams := []map[string]string{
		{"perception": "member"},
		{"planning": "admin"},
		{"perception": "viewer", "planning": "member"},
		nil,
		{"perception-2": "member"}, // a team whose name has another's as a prefix
		{"perception": "admin"},
		{},
	}
	for i, tm := range teams {
		tok := newToken(fmt.Sprintf("tok-%d", i))
		tok.Subject = []string{"alice", "bob"}[i%2]
		tok.Teams = tm
		tok.CreatedAt = base.Add(time.Duration(i) * time.Minute)
		if err := s.CreateToken(ctx, tok); err != nil {
			t.Fatalf("CreateToken(%s): %v", tok.ID, err)
		}
	}
	for _, id := range []string{"tok-2", "tok-5"} {
		if err := s.RevokeToken(ctx, id, base.Add(time.Hour)); err != nil {
			t.Fatalf("RevokeToken(%s): %v", id, err)
		}
	}
	ids := func(is ...int) []string {
		var out []string
		for _, i := range is {
			out = append(out, fmt.Sprintf("tok-%d", i))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    store.TokenFilter
		want []string
	}{
		{"live", store.TokenFilter{}, ids(6, 4, 3, 1, 0)},
		{"all", store.TokenFilter{IncludeRevoked: true}, ids(6, 5, 4, 3, 2, 1, 0)},
		{"team", store.TokenFilter{Team: "perception"}, ids(0)},
		{"team with revoked", store.TokenFilter{Team: "perception", IncludeRevoked: true}, ids(5, 2, 0)},
		{"other team", store.TokenFilter{Team: "planning", IncludeRevoked: true}, ids(2, 1)},
		{"unknown team", store.TokenFilter{Team: "nobody", IncludeRevoked: true}, nil},
		{"subject", store.TokenFilter{Subject: "bob"}, ids(3, 1)},
		{"subject with revoked", store.TokenFilter{Subject: "bob", IncludeRevoked: true}, ids(5, 3, 1)},
		{"subject and team", store.TokenFilter{Subject: "alice", Team: "perception", IncludeRevoked: true}, ids(2, 0)},
		{"unknown subject", store.TokenFilter{Subject: "carol", IncludeRevoked: true}, nil},
		{"limit", store.TokenFilter{Limit: 2, IncludeRevoked: true}, ids(6, 5)},
		{"before", store.TokenFilter{Before: "tok-5", Limit: 2}, ids(4, 3)},
		{"before the oldest", store.TokenFilter{Before: "tok-0", IncludeRevoked: true}, nil},
	} {
		got, err := s.ListTokens(ctx, tc.f)
		if err != nil {
			t.Errorf("%s: ListTokens(%+v): %v", tc.name, tc.f, err)
			continue
		}
		if !slices.Equal(tokenIDs(got), tc.want) {
			t.Errorf("%s: ListTokens(%+v) = %v, want %v", tc.name, tc.f, tokenIDs(got), tc.want)
		}
	}
	// Paging through everything, three at a time.
	var all []string
	f := store.TokenFilter{Limit: 3, IncludeRevoked: true}
	for range 10 {
		page, err := s.ListTokens(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, tokenIDs(page)...)
		f.Before = page[len(page)-1].ID
	}
	if want := ids(6, 5, 4, 3, 2, 1, 0); !slices.Equal(all, want) {
		t.Errorf("paged ListTokens = %v, want %v", all, want)
	}
	// Listed tokens are whole.
	got, err := s.ListTokens(ctx, store.TokenFilter{Subject: "alice", Team: "planning", IncludeRevoked: true})
	if err != nil || len(got) != 1 {
		t.Fatalf("ListTokens(alice in planning) = %v, %v", tokenIDs(got), err)
	}
	checkToken(t, &got[0], *getToken(t, s, "tok-2"))
	if got[0].RevokedAt.IsZero() {
		t.Errorf("listed revoked token has no revocation time")
	}
}

func testListTokensDefaultLimit(t *testing.T, s store.Store) {
	for i := range 101 {
		if err := s.CreateToken(t.Context(), newToken(fmt.Sprintf("tok-%03d", i))); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ListTokens(t.Context(), store.TokenFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 || got[0].ID != "tok-100" || got[99].ID != "tok-001" {
		t.Errorf("ListTokens with no limit: %d tokens, want the 100 newest", len(got))
	}
}

func testRevokeToken(t *testing.T, s store.Store) {
	ctx := t.Context()
	tok := newToken("tok-1")
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if got := getToken(t, s, "tok-1"); !got.RevokedAt.IsZero() {
		t.Fatalf("a new token is revoked at %s", got.RevokedAt)
	}
	first := base.Add(time.Hour + time.Nanosecond)
	if err := s.RevokeToken(ctx, "tok-1", first); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	want := *tok
	want.RevokedAt = first
	checkToken(t, getToken(t, s, "tok-1"), want)
	// Twice keeps the first time, earlier or later.
	for _, again := range []time.Time{first.Add(time.Hour), first.Add(-time.Minute)} {
		if err := s.RevokeToken(ctx, "tok-1", again); err != nil {
			t.Fatalf("RevokeToken again: %v", err)
		}
		checkToken(t, getToken(t, s, "tok-1"), want)
	}
	if got, err := s.ListTokens(ctx, store.TokenFilter{}); err != nil || len(got) != 0 {
		t.Errorf("ListTokens after revoking the only token = %v, %v, want none", tokenIDs(got), err)
	}

	checkNotFound(t, "RevokeToken(unknown)", s.RevokeToken(ctx, "no-such-token", first), "no-such-token")
	checkNotFound(t, "RevokeToken(\"\")", s.RevokeToken(ctx, "", first), "")
	checkNotFound(t, "RevokeToken(NUL)", s.RevokeToken(ctx, "a\x00", first), "")

	if err := s.CreateToken(ctx, newToken("tok-2")); err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{{}, time.Date(2400, 1, 1, 0, 0, 0, 0, time.UTC)} {
		err := s.RevokeToken(ctx, "tok-2", at)
		if !errors.Is(err, store.ErrRejected) || !strings.Contains(err.Error(), "tok-2") {
			t.Errorf("RevokeToken(tok-2, %s) = %v, want an error wrapping ErrRejected naming the token", at, err)
		}
	}
	if got := getToken(t, s, "tok-2"); !got.RevokedAt.IsZero() {
		t.Errorf("a refused revocation revoked tok-2 at %s", got.RevokedAt)
	}
}

func auditEntry(i int, subject, team string) store.AuditEntry {
	return store.AuditEntry{
		At:      base.Add(time.Duration(i)*time.Second + time.Duration(i)),
		Subject: subject,
		TokenID: fmt.Sprintf("tok-%d", i%3),
		Action:  []string{"SubmitJob", "CancelJob", "CreateToken"}[i%3],
		Team:    team,
		Object:  fmt.Sprintf("job-%d/key 日本", i),
		Remote:  "[::1]:5432",
		Outcome: []string{"ok", "denied", "invalid_argument"}[i%3],
		Detail:  fmt.Sprintf("entry %d \"quoted\"", i),
	}
}

func listAudit(t *testing.T, s store.Store, f store.AuditFilter) []store.AuditEntry {
	t.Helper()
	got, err := s.ListAudit(t.Context(), f)
	if err != nil {
		t.Fatalf("ListAudit(%+v): %v", f, err)
	}
	return got
}

func testAudit(t *testing.T, s store.Store) {
	ctx := t.Context()
	if got := listAudit(t, s, store.AuditFilter{}); len(got) != 0 {
		t.Fatalf("a new store has %d audit entries", len(got))
	}
	if err := s.AppendAudit(ctx, nil); err != nil {
		t.Fatalf("AppendAudit(nil): %v", err)
	}
	// Entries 0..5 in two calls: subjects alice, bob alternate; teams a, b, c.
	var want []store.AuditEntry
	for i := range 6 {
		want = append(want, auditEntry(i, []string{"alice", "bob"}[i%2], []string{"a", "b", "c"}[i%3]))
	}
	want[5].Team, want[5].TokenID, want[5].Detail = "", "", "" // a platform call by an OIDC identity
	for _, part := range [][]store.AuditEntry{want[:4], want[4:]} {
		in := slices.Clone(part)
		in[0].Seq = 999 // ignored: the store assigns it
		if err := s.AppendAudit(ctx, in); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	got := listAudit(t, s, store.AuditFilter{})
	if len(got) != len(want) {
		t.Fatalf("ListAudit = %d entries, want %d", len(got), len(want))
	}
	// Newest first, Seq increasing in the order of appending.
	for i := range got {
		g, w := got[i], want[len(want)-1-i]
		if i > 0 && g.Seq >= got[i-1].Seq {
			t.Errorf("entry %d: seq %d after %d, want decreasing (newest first)", i, g.Seq, got[i-1].Seq)
		}
		if g.Seq <= 0 {
			t.Errorf("entry %d: seq %d, want positive", i, g.Seq)
		}
		w.Seq, w.At = g.Seq, norm(w.At)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("entry %d:\n got %#v\nwant %#v", i, g, w)
		}
	}
	seq := func(is ...int) []int64 { // seqs of want[i], as listed
		var out []int64
		for _, i := range is {
			out = append(out, got[len(got)-1-i].Seq)
		}
		return out
	}
	seqs := func(es []store.AuditEntry) []int64 {
		var out []int64
		for _, e := range es {
			out = append(out, e.Seq)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    store.AuditFilter
		want []int64
	}{
		{"subject", store.AuditFilter{Subject: "bob"}, seq(5, 3, 1)},
		{"team", store.AuditFilter{Team: "a"}, seq(3, 0)},
		{"subject and team", store.AuditFilter{Subject: "alice", Team: "c"}, seq(2)},
		{"unknown subject", store.AuditFilter{Subject: "carol"}, nil},
		{"limit", store.AuditFilter{Limit: 2}, seq(5, 4)},
		{"before", store.AuditFilter{Before: seq(4)[0], Limit: 2}, seq(3, 2)},
		{"before and subject", store.AuditFilter{Before: seq(3)[0], Subject: "bob"}, seq(1)},
		{"before the oldest", store.AuditFilter{Before: seq(0)[0]}, nil},
	} {
		if g := seqs(listAudit(t, s, tc.f)); !slices.Equal(g, tc.want) {
			t.Errorf("%s: ListAudit(%+v) = seqs %v, want %v", tc.name, tc.f, g, tc.want)
		}
	}
	// Paging through everything, four at a time.
	var all []int64
	f := store.AuditFilter{Limit: 4}
	for range 10 {
		page := listAudit(t, s, f)
		if len(page) == 0 {
			break
		}
		all = append(all, seqs(page)...)
		f.Before = page[len(page)-1].Seq
	}
	if w := seq(5, 4, 3, 2, 1, 0); !slices.Equal(all, w) {
		t.Errorf("paged ListAudit = %v, want %v", all, w)
	}
}

func testAuditLarge(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 1234 // more than one INSERT of the sqlite driver
	entries := make([]store.AuditEntry, n)
	for i := range entries {
		entries[i] = auditEntry(i, fmt.Sprintf("user-%d", i), "team")
	}
	if err := s.AppendAudit(ctx, entries); err != nil {
		t.Fatalf("AppendAudit(%d entries): %v", n, err)
	}
	var all []store.AuditEntry
	f := store.AuditFilter{Limit: 500}
	for range 10 {
		page := listAudit(t, s, f)
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		f.Before = page[len(page)-1].Seq
	}
	if len(all) != n {
		t.Fatalf("listed %d entries, want %d", len(all), n)
	}
	for i, e := range all {
		if w := fmt.Sprintf("user-%d", n-1-i); e.Subject != w {
			t.Fatalf("entry %d listed: subject %q, want %q (newest first, in the order appended)", i, e.Subject, w)
		}
	}
	if got := listAudit(t, s, store.AuditFilter{}); len(got) != 100 {
		t.Errorf("ListAudit with no limit: %d entries, want the default of 100", len(got))
	}
}

func testAuditRefused(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, tc := range []struct {
		name  string
		edit  func(*store.AuditEntry)
		names []string
	}{
		{"zero time", func(e *store.AuditEntry) { e.At = time.Time{} }, []string{"at"}},
		{"time out of range", func(e *store.AuditEntry) { e.At = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) }, []string{"at"}},
		{"empty action", func(e *store.AuditEntry) { e.Action = "" }, []string{"action"}},
		{"invalid UTF-8 subject", func(e *store.AuditEntry) { e.Subject = "al\xffice" }, []string{"subject", "UTF-8"}},
		{"NUL in detail", func(e *store.AuditEntry) { e.Detail = "a\x00b" }, []string{"detail", "NUL"}},
		{"NUL in object", func(e *store.AuditEntry) { e.Object = "\x00" }, []string{"object"}},
		{"invalid UTF-8 remote", func(e *store.AuditEntry) { e.Remote = "\xfe" }, []string{"remote"}},
		{"NUL in outcome", func(e *store.AuditEntry) { e.Outcome = "ok\x00" }, []string{"outcome"}},
		{"NUL in team", func(e *store.AuditEntry) { e.Team = "t\x00" }, []string{"team"}},
		{"NUL in token ID", func(e *store.AuditEntry) { e.TokenID = "t\x00" }, []string{"token_id"}},
	} {
		// The bad entry is second of three: nothing of the call is stored.
		entries := []store.AuditEntry{auditEntry(0, "alice", "a"), auditEntry(1, "alice", "a"), auditEntry(2, "alice", "a")}
		tc.edit(&entries[1])
		err := s.AppendAudit(ctx, entries)
		if !errors.Is(err, store.ErrRejected) {
			t.Errorf("%s: AppendAudit = %v, want an error wrapping ErrRejected", tc.name, err)
			continue
		}
		for _, w := range append(tc.names, "entry 1") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %q", tc.name, err, w)
			}
		}
	}
	if got := listAudit(t, s, store.AuditFilter{}); len(got) != 0 {
		t.Errorf("after refused appends: %d audit entries, want none", len(got))
	}
	for _, f := range []store.AuditFilter{{Subject: "\xff"}, {Team: "\x00"}, {Before: -1}} {
		if _, err := s.ListAudit(ctx, f); !errors.Is(err, store.ErrRejected) {
			t.Errorf("ListAudit(%+v) = %v, want an error wrapping ErrRejected", f, err)
		}
	}
}

func testSubmittedBy(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Six jobs a minute apart; namespaces a, b, c; submitters alice, bob,
	// and "" (a job stored before haul recorded it).
	var ids []string
	for i := range 6 {
		created := base.Add(time.Duration(i) * time.Minute)
		job := newJob(newID(created, uint64(i)))
		job.CreatedAt = created
		job.Namespace = []string{"a", "b", "c"}[i%3]
		job.SubmittedBy = []string{"alice@example.com", "task:j/k#1", ""}[i%3]
		if i == 4 {
			job.SubmittedBy = "alice@example.com"
		}
		create(t, s, job, newTasks(1))
		checkJob(t, getJob(t, s, job.ID), storedJob(job, 1))
		ids = append(ids, job.ID)
	}
	rev := func(is ...int) []string {
		var out []string
		for _, i := range is {
			out = append(out, ids[i])
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    store.JobFilter
		want []string
	}{
		{"nil namespaces: all", store.JobFilter{}, rev(5, 4, 3, 2, 1, 0)},
		{"empty namespaces: none", store.JobFilter{Namespaces: []string{}}, nil},
		{"namespaces", store.JobFilter{Namespaces: []string{"a", "c"}}, rev(5, 3, 2, 0)},
		{"one namespace", store.JobFilter{Namespaces: []string{"b"}}, rev(4, 1)},
		{"unknown namespaces", store.JobFilter{Namespaces: []string{"x", "y"}}, nil},
		{"namespace within namespaces", store.JobFilter{Namespace: "a", Namespaces: []string{"a", "b"}}, rev(3, 0)},
		{"namespace outside namespaces", store.JobFilter{Namespace: "c", Namespaces: []string{"a", "b"}}, nil},
		{"namespace, empty namespaces", store.JobFilter{Namespace: "a", Namespaces: []string{}}, nil},
		{"submitter", store.JobFilter{SubmittedBy: "alice@example.com"}, rev(4, 3, 0)},
		{"task submitter", store.JobFilter{SubmittedBy: "task:j/k#1"}, rev(1)},
		{"unknown submitter", store.JobFilter{SubmittedBy: "carol"}, nil},
		{"submitter and namespaces", store.JobFilter{SubmittedBy: "alice@example.com", Namespaces: []string{"b", "c"}}, rev(4)},
		{"namespaces, paged", store.JobFilter{Namespaces: []string{"a", "c"}, Before: ids[3], Limit: 1}, rev(2)},
	} {
		got, err := s.ListJobs(ctx, tc.f)
		if err != nil {
			t.Errorf("%s: ListJobs(%+v): %v", tc.name, tc.f, err)
			continue
		}
		if !slices.Equal(jobIDs(got), tc.want) {
			t.Errorf("%s: ListJobs(%+v) = %v, want %v", tc.name, tc.f, jobIDs(got), tc.want)
		}
		for i := range got {
			if want := getJob(t, s, got[i].ID).SubmittedBy; got[i].SubmittedBy != want {
				t.Errorf("%s: listed job %s submitted by %q, GetJob says %q", tc.name, got[i].ID, got[i].SubmittedBy, want)
			}
		}
	}
	active, err := s.ListActiveJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 6 || active[0].SubmittedBy != "alice@example.com" || active[1].SubmittedBy != "task:j/k#1" || active[2].SubmittedBy != "" {
		t.Errorf("ListActiveJobs: submitters %v", func() (out []string) {
			for _, j := range active {
				out = append(out, j.SubmittedBy)
			}
			return
		}())
	}

	for _, f := range []store.JobFilter{{Namespaces: []string{"a", "b\x00"}}, {SubmittedBy: "\xff"}} {
		if _, err := s.ListJobs(ctx, f); !errors.Is(err, store.ErrRejected) {
			t.Errorf("ListJobs(%+v) = %v, want an error wrapping ErrRejected", f, err)
		}
	}
	job := newJob("bad-submitter")
	job.SubmittedBy = "al\x00ice"
	if err := s.CreateJob(ctx, job, nil); !errors.Is(err, store.ErrRejected) || !strings.Contains(err.Error(), "submitted_by") {
		t.Errorf("CreateJob(NUL in submitted_by) = %v, want an error wrapping ErrRejected naming submitted_by", err)
	}
}

// testSecretEnv checks that a job's secret env reaches ListActiveJobs (the
// runner) and no other read.
func testSecretEnv(t *testing.T, s store.Store) {
	ctx := t.Context()
	const secret = "hunter2-S3CR3T-value"
	secretEnv := map[string]string{"API_KEY": secret, "DB_PASSWORD": "pw " + secret, "EMPTY": ""}
	with := newJob(newID(base, 1))
	with.SecretEnv = secretEnv
	create(t, s, with, newTasks(2))
	empty := newJob(newID(base.Add(time.Second), 2))
	empty.SecretEnv = map[string]string{}
	create(t, s, empty, nil)
	none := newJob(newID(base.Add(2*time.Second), 3))
	create(t, s, none, nil)

	leaks := func(what string, v any) {
		t.Helper()
		if text := fmt.Sprintf("%#v", v); strings.Contains(text, secret) {
			t.Errorf("%s returned a secret value: %s", what, text)
		}
	}
	for _, j := range []*store.Job{with, empty, none} {
		got := getJob(t, s, j.ID)
		if got.SecretEnv != nil {
			t.Errorf("GetJob(%s).SecretEnv = %v, want nil", j.ID, got.SecretEnv)
		}
		want := storedJob(j, len(loadTasks(t, s, j.ID)))
		want.SecretEnv = nil
		checkJob(t, got, want)
		leaks("GetJob", got)
	}
	listed, err := s.ListJobs(ctx, store.JobFilter{})
	if err != nil || len(listed) != 3 {
		t.Fatalf("ListJobs = %v, %v", jobIDs(listed), err)
	}
	for _, j := range listed {
		if j.SecretEnv != nil {
			t.Errorf("ListJobs: job %s SecretEnv = %v, want nil", j.ID, j.SecretEnv)
		}
	}
	leaks("ListJobs", listed)
	tasks := loadTasks(t, s, with.ID)
	leaks("LoadTasks", tasks)
	task, err := s.GetTask(ctx, with.ID, "t-0")
	if err != nil {
		t.Fatal(err)
	}
	leaks("GetTask", task)

	active, err := s.ListActiveJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 3 {
		t.Fatalf("ListActiveJobs = %v", jobIDs(active))
	}
	for i, want := range []map[string]string{secretEnv, {}, nil} {
		if !reflect.DeepEqual(active[i].SecretEnv, want) {
			t.Errorf("ListActiveJobs: job %s SecretEnv = %#v, want %#v", active[i].ID, active[i].SecretEnv, want)
		}
	}
	// Every other field as GetJob has it.
	for i := range active {
		j := active[i]
		j.SecretEnv = nil
		checkJob(t, &j, *getJob(t, s, j.ID))
	}

	// A refused secret is named by its key, never quoted.
	bad := newJob("bad-secret")
	bad.SecretEnv = map[string]string{"TOKEN": secret + "\x00"}
	err = s.CreateJob(ctx, bad, nil)
	if !errors.Is(err, store.ErrRejected) || !strings.Contains(err.Error(), "TOKEN") {
		t.Errorf("CreateJob(NUL in a secret) = %v, want an error wrapping ErrRejected naming the key", err)
	} else if strings.Contains(err.Error(), secret) {
		t.Errorf("CreateJob(NUL in a secret): the error %q quotes the secret", err)
	}
	bad.SecretEnv = map[string]string{"TOKEN": "\xff" + secret}
	if err := s.CreateJob(ctx, bad, nil); !errors.Is(err, store.ErrRejected) || strings.Contains(err.Error(), secret) {
		t.Errorf("CreateJob(invalid UTF-8 secret) = %v, want an error wrapping ErrRejected that does not quote it", err)
	}

	// An ended job is no longer active: its secrets are read no more.
	apply(t, s, &store.Batch{Jobs: []store.JobUpdate{{ID: with.ID, State: store.JobSucceeded, StartedAt: base, FinishedAt: base}}})
	active, err = s.ListActiveJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaks("ListActiveJobs after the job ended", active)
}
