package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/gen/haul/taskhost/v1/taskhostv1connect"
	"github.com/haul-dev/haul/internal/pgtest"
)

// boundsBomb returns a gzip stream of prefix, n MiB of fill, then suffix,
// built from concatenated gzip members (about 1 KiB on the wire per MiB),
// as an attacker would build it.
func boundsBomb(t testing.TB, prefix []byte, fill byte, mib int, suffix []byte) []byte {
	t.Helper()
	member := func(data []byte) []byte {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(data)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	out := member(prefix)
	m := member(bytes.Repeat([]byte{fill}, 1<<20))
	for range mib {
		out = append(out, m...)
	}
	return append(out, member(suffix)...)
}

// boundsPost sends one request and returns the status and body.
func boundsPost(t *testing.T, url, contentType string, headers map[string]string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// boundsRunsJob checks the server still runs a normal job to success.
func boundsRunsJob(t *testing.T, s *upServer, what string) {
	t.Helper()
	r := haul(t, []string{"HAUL_SERVER=" + s.url()}, "run", writeSpec(t, "name: after-fault\ntasks:\n  - {key: a, command: [sh, -c, \"echo ok\"]}\n  - {key: b, command: [\"true\"], after: [a]}\n"))
	if r.code != 0 || !strings.Contains(r.stdout, "2 succeeded") {
		t.Fatalf("a normal job after %s: exit %d\n%s\n%s\nserver: %s", what, r.code, r.stdout, r.stderr, s.log)
	}
}

// TestFaultBounds sends haul up requests that used to cost it gigabytes:
// gzip bombs (Connect JSON and proto, the streaming protocol, the
// taskhost protocol), a spec over the byte limit, a small spec of a
// million and a half values, and a small spec that expands past the
// expanded-job limit. Each is refused naming its limit, nothing is stored,
// the server's peak RSS stays bounded, and a normal job still runs. On
// SQLite and PostgreSQL.
func TestFaultBounds(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, dbURL string) {
		s := startUp(t, freePort(t), t.TempDir(), dbURL)
		c := s.client()
		ctx := context.Background()
		pid := s.cmd.Process.Pid
		base := peakRSS(t, pid)
		const inflated = 1024 // MiB, decompressed

		// Connect unary, JSON: {"spec":"AAAA…"} gzipped.
		bomb := boundsBomb(t, []byte(`{"spec":"`), 'A', inflated, []byte(`"}`))
		code, body := boundsPost(t, s.url()+apiv1connect.JobServiceSubmitJobProcedure, "application/json",
			map[string]string{"Content-Encoding": "gzip"}, bomb)
		if code != http.StatusTooManyRequests || !strings.Contains(body, "resource_exhausted") || !strings.Contains(body, "decompresses to more than the limit of") {
			t.Errorf("JSON gzip bomb (%d KiB, %d MiB decompressed): HTTP %d %s; want 429 resource_exhausted naming the limit", len(bomb)>>10, inflated, code, body)
		}
		// Connect unary, proto: field 1 (spec), length-delimited, gzipped.
		pb := []byte{0x0a, 0x80, 0x80, 0x80, 0x80, 0x04} // tag 1, length 1 GiB
		bomb = boundsBomb(t, pb, 0, inflated, nil)
		code, body = boundsPost(t, s.url()+apiv1connect.JobServiceSubmitJobProcedure, "application/proto",
			map[string]string{"Content-Encoding": "gzip"}, bomb)
		if code != http.StatusTooManyRequests || !strings.Contains(body, "resource_exhausted") {
			t.Errorf("proto gzip bomb: HTTP %d %s; want 429 resource_exhausted", code, body)
		}
		// The taskhost protocol (a worker's Poll) has its own, smaller limit.
		code, body = boundsPost(t, s.url()+taskhostv1connect.TaskHostServicePollProcedure, "application/proto",
			map[string]string{"Content-Encoding": "gzip"}, bomb)
		if code != http.StatusTooManyRequests || !strings.Contains(body, "more than the limit of 4194304 bytes") {
			t.Errorf("Poll gzip bomb: HTTP %d %s; want 429 resource_exhausted naming the 4 MiB limit", code, body)
		}
		bombPeak := peakRSS(t, pid)
		t.Logf("three gzip bombs of %d KiB (%d MiB decompressed each): server peak RSS %d MiB before, %d MiB after", len(bomb)>>10, inflated, base>>20, bombPeak>>20)
		// A memory bound, generous: the bombs held would be gigabytes.
		if bombPeak > 300<<20 {
			t.Errorf("server peak RSS %d MiB after gzip bombs, want under 300 MiB", bombPeak>>20)
		}

		// A spec over the byte limit: refused before decoding, naming it.
		big := bytes.Repeat([]byte("x: 1\n"), (17<<20)/5)
		_, err := c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: big}))
		if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "more than the limit of 16777216 (checked before decoding)") {
			t.Errorf("a %d-byte spec: %v; want resource_exhausted naming the 16 MiB limit", len(big), err)
		}
		// A small spec of 1.5 million values: refused before decoding.
		many := []byte("name: many\nx-list: [" + strings.Repeat("1,", 1_500_000) + "1]\ntasks: [{key: a, command: [x]}]\n")
		_, err = c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: many}))
		if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "more than 1000000 YAML values") {
			t.Errorf("a %d-byte spec of 1.5M values: %v; want resource_exhausted naming the values limit", len(many), err)
		}
		// A 100 KB spec expanding to 2,000 tasks of 100 KB argv each.
		arg := strings.Repeat("y", 100_000)
		wide := fmt.Sprintf("name: wide\ntasks:\n  - key: \"w-{i}\"\n    foreach: {range: [0, 2000]}\n    command: [echo, %s]\n", arg)
		_, err = c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: []byte(wide)}))
		if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "more than the limit of 134217728 bytes") {
			t.Errorf("a %d-byte spec expanding to 2,000 × 100 KB: %v; want resource_exhausted naming the expanded-job limit", len(wide), err)
		}
		jobs, err := c.ListJobs(ctx, connect.NewRequest(&apiv1.ListJobsRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(jobs.Msg.Jobs); n != 0 {
			t.Errorf("after refused requests the store lists %d jobs, want none", n)
		}
		specPeak := peakRSS(t, pid)
		t.Logf("refused specs (17 MiB, 1.5M values, 2,000 × 100 KB): server peak RSS %d MiB", specPeak>>20)
		if specPeak > 300<<20 {
			t.Errorf("server peak RSS %d MiB after refused specs, want under 300 MiB", specPeak>>20)
		}
		boundsRunsJob(t, s, "refused requests")
	})
}

// TestFaultBoundsAccepted measures what the largest specs the default
// limits accept cost the server: a spec of just under a million tiny
// values (the worst case per byte) and a million-task foreach. Both run.
func TestFaultBoundsAccepted(t *testing.T) {
	t.Parallel()
	s := startUp(t, freePort(t), t.TempDir(), "")
	c := s.client()
	ctx := context.Background()
	pid := s.cmd.Process.Pid
	base := peakRSS(t, pid)
	many := []byte("name: many\nx-list: [" + strings.Repeat("1,", 990_000) + "1]\ntasks: [{key: a, command: [\"true\"]}]\n")
	resp, err := c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: many}))
	if err != nil {
		t.Fatalf("a spec of 990,000 values (under the limit): %v", err)
	}
	manyPeak := peakRSS(t, pid)
	waitJob(t, c, resp.Msg.JobId, 2*time.Minute, func(j *apiv1.Job) bool { return j.State == "succeeded" })
	t.Logf("a %d KiB spec of 990,000 values: server peak RSS %d MiB before, %d MiB after", len(many)>>10, base>>20, manyPeak>>20)
	// A memory bound, generous: decoding costs about 200 B per value.
	if manyPeak > 600<<20 {
		t.Errorf("server peak RSS %d MiB for a spec of 990,000 values, want under 600 MiB", manyPeak>>20)
	}
	resp, err = c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: []byte(
		"name: million\ntasks:\n  - {key: \"t-{i}\", command: [\"true\"], foreach: {range: [0, 1000000]}}\n")}))
	if err != nil {
		t.Fatalf("a million-task foreach: %v", err)
	}
	t.Logf("a million-task foreach: server peak RSS %d MiB after SubmitJob", peakRSS(t, pid)>>20)
	if _, err := c.CancelJob(ctx, connect.NewRequest(&apiv1.CancelJobRequest{JobId: resp.Msg.JobId})); err != nil {
		t.Fatal(err)
	}
}

// TestFaultStoreDown kills PostgreSQL under haul up: the API answers
// unavailable naming the store, not internal or unknown, and the CLI says
// so; once PostgreSQL is back, the same calls succeed and a job runs.
func TestFaultStoreDown(t *testing.T) {
	t.Parallel()
	dir, err := pgtest.MkdirTemp()
	if err != nil {
		t.Fatal(err)
	}
	pg, err := pgtest.StartServer(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop() })
	s := startUp(t, freePort(t), t.TempDir(), pg.URL())
	c := s.client()
	ctx := context.Background()
	resp, err := c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: []byte("name: before\ntasks: [{key: a, command: [\"true\"]}]\n")}))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Msg.JobId
	waitJob(t, c, id, time.Minute, func(j *apiv1.Job) bool { return j.State == "succeeded" })

	if err := pg.Kill(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	_, err = c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "store unavailable: ") {
		t.Errorf("GetJob with PostgreSQL killed: %v; want unavailable \"store unavailable: <cause>; retry\"", err)
	}
	t.Logf("GetJob with PostgreSQL down: %v", err)
	_, err = c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: []byte("name: during\ntasks: [{key: a, command: [\"true\"]}]\n")}))
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "store unavailable: ") {
		t.Errorf("SubmitJob with PostgreSQL killed: %v; want unavailable naming the store", err)
	}
	r := haul(t, []string{"HAUL_SERVER=" + s.url()}, "job", "get", id)
	if r.code == 0 || !strings.Contains(r.stderr, "store unavailable") {
		t.Errorf("haul job get with PostgreSQL down: exit %d, stderr %q; want a failure naming the store", r.code, r.stderr)
	}
	t.Logf("haul job get with PostgreSQL down: %s", strings.TrimSpace(r.stderr))

	pg2, err := pgtest.StartServer(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg2.Stop() })
	back := time.Now()
	// The gateway's connection pool reconnects on the next call.
	var got *connect.Response[apiv1.GetJobResponse]
	for deadline := time.Now().Add(time.Minute); ; {
		got, err = c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || got.Msg.Job.State != "succeeded" {
		t.Fatalf("GetJob once PostgreSQL is back: %v", err)
	}
	t.Logf("the gateway answered again %s after PostgreSQL was back (%s after it was killed, restart included)",
		time.Since(back).Round(time.Millisecond), time.Since(down).Round(time.Millisecond))
	boundsRunsJob(t, s, "a store outage")
}
