package gateway

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/haul-dev/haul/internal/auth"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/sqlite"
)

// fleetEnv serves the AdminService on a real SQLite store behind the
// authentication interceptor, with tokens of each role.
type fleetEnv struct {
	st  *sqlite.Store
	url string
	// Tokens: a platform admin; a viewer, a member and an admin of team
	// "a"; a viewer of team "b".
	root, viewerA, memberA, adminA, viewerB string
}

func newFleetEnv(t *testing.T) *fleetEnv {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "haul.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	authn := auth.NewAuthenticator(auth.AuthnConfig{Tokens: st})
	mux := http.NewServeMux()
	mux.Handle(Bounded(AdminReadMaxBytes, apiv1connect.NewAdminServiceHandler)(NewAdmin(st, nil), connect.WithInterceptors(NewInterceptor(authn, nil))))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e := &fleetEnv{st: st, url: srv.URL}
	token := func(subject string, platform bool, teams map[string]string) string {
		return issueToken(t, st, subject, platform, teams)
	}
	e.root = token("root", true, nil)
	e.viewerA = token("va", false, map[string]string{"a": "viewer"})
	e.memberA = token("ma", false, map[string]string{"a": "member"})
	e.adminA = token("aa", false, map[string]string{"a": "admin"})
	e.viewerB = token("vb", false, map[string]string{"b": "viewer"})
	return e
}

func (e *fleetEnv) as(tok string) apiv1connect.AdminServiceClient {
	return apiv1connect.NewAdminServiceClient(&http.Client{Transport: withBearer{tok}}, e.url)
}

// wantErr checks an error's code and that its message says each of want.
func wantErr(t *testing.T, what string, err error, code connect.Code, want ...string) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Errorf("%s: %v; want %s", what, err, code)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: %v; want it to say %q", what, err, w)
		}
	}
}

func gib(n int64) int64 { return n << 30 }

func quotaReq(team string, cpu, memGiB int64, gpu map[string]int64) *apiv1.SetQuotaRequest {
	return &apiv1.SetQuotaRequest{Quota: &apiv1.Quota{Team: team, Limit: &apiv1.Resources{MilliCpu: cpu * 1000, MemoryBytes: gib(memGiB), Gpu: gpu}}}
}

func TestFleetChangesArePlatformAdmins(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newFleetEnv(t)
	cluster := &apiv1.PutClusterRequest{Cluster: &apiv1.Cluster{Name: "east", Capacity: &apiv1.Resources{MilliCpu: 64000, MemoryBytes: gib(256)}}}
	for _, tok := range []string{e.viewerA, e.memberA, e.adminA} {
		c := e.as(tok)
		_, err := c.SetQuota(ctx, connect.NewRequest(quotaReq("a", 8, 32, nil)))
		wantErr(t, "SetQuota of its own team by a team role", err, connect.CodePermissionDenied, "platform admin")
		_, err = c.DeleteQuota(ctx, connect.NewRequest(&apiv1.DeleteQuotaRequest{Team: "a"}))
		wantErr(t, "DeleteQuota by a team role", err, connect.CodePermissionDenied, "platform admin")
		_, err = c.PutCluster(ctx, connect.NewRequest(cluster))
		wantErr(t, "PutCluster by a team role", err, connect.CodePermissionDenied, "platform admin")
		_, err = c.SetClusterState(ctx, connect.NewRequest(&apiv1.SetClusterStateRequest{Name: "east", State: "draining"}))
		wantErr(t, "SetClusterState by a team role", err, connect.CodePermissionDenied, "platform admin")
		_, err = c.DeleteCluster(ctx, connect.NewRequest(&apiv1.DeleteClusterRequest{Name: "east"}))
		wantErr(t, "DeleteCluster by a team role", err, connect.CodePermissionDenied, "platform admin")
	}
	// Denials are on record, under the team concerned.
	entries, err := e.st.ListAudit(ctx, store.AuditFilter{Team: "a", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	denied := 0
	for _, en := range entries {
		if en.Action == "SetQuota" && en.Outcome == "denied" && en.Object == "quota/a" && en.Subject == "ma" {
			denied++
		}
	}
	if denied != 1 {
		t.Errorf("audit of team a: %d denied SetQuota by ma, want 1: %+v", denied, entries)
	}
	// Nothing was stored.
	if qs, err := e.st.ListQuotas(ctx); err != nil || len(qs) != 0 {
		t.Errorf("quotas after refused calls: %v, %v; want none", qs, err)
	}
	if cs, err := e.st.ListClusters(ctx); err != nil || len(cs) != 0 {
		t.Errorf("clusters after refused calls: %v, %v; want none", cs, err)
	}

	// The platform admin may, and it is audited.
	root := e.as(e.root)
	if _, err := root.SetQuota(ctx, connect.NewRequest(quotaReq("a", 8, 32, nil))); err != nil {
		t.Fatalf("SetQuota by a platform admin: %v", err)
	}
	if _, err := root.PutCluster(ctx, connect.NewRequest(cluster)); err != nil {
		t.Fatalf("PutCluster by a platform admin: %v", err)
	}
	entries, err = e.st.ListAudit(ctx, store.AuditFilter{Subject: "root", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, en := range entries {
		got = append(got, en.Action+" "+en.Outcome+" "+en.Team+" "+en.Object)
	}
	for _, want := range []string{"SetQuota ok a quota/a", "PutCluster ok  cluster/east"} {
		if !strings.Contains(strings.Join(got, "\n"), want) {
			t.Errorf("audit lacks %q: %q", want, got)
		}
	}
}

func TestGetQuotasVisibility(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newFleetEnv(t)
	root := e.as(e.root)
	for _, req := range []*apiv1.SetQuotaRequest{quotaReq("a", 8, 32, nil), quotaReq("b", 16, 64, map[string]int64{"a100": 2})} {
		if _, err := root.SetQuota(ctx, connect.NewRequest(req)); err != nil {
			t.Fatalf("SetQuota %s: %v", req.Quota.Team, err)
		}
	}
	teams := func(tok, team string) ([]string, error) {
		resp, err := e.as(tok).GetQuotas(ctx, connect.NewRequest(&apiv1.GetQuotasRequest{Team: team}))
		if err != nil {
			return nil, err
		}
		var out []string
		for _, tq := range resp.Msg.Teams {
			out = append(out, tq.Team)
		}
		return out, nil
	}
	if got, err := teams(e.root, ""); err != nil || strings.Join(got, ",") != "a,b" {
		t.Errorf("platform admin's quotas: %v, %v; want a,b", got, err)
	}
	if got, err := teams(e.root, "b"); err != nil || strings.Join(got, ",") != "b" {
		t.Errorf("platform admin's quota of b: %v, %v; want b", got, err)
	}
	if got, err := teams(e.viewerA, ""); err != nil || strings.Join(got, ",") != "a" {
		t.Errorf("viewer of a's quotas: %v, %v; want a alone", got, err)
	}
	if got, err := teams(e.viewerA, "a"); err != nil || strings.Join(got, ",") != "a" {
		t.Errorf("viewer of a's quota of a: %v, %v; want a", got, err)
	}
	_, err := teams(e.viewerA, "b")
	wantErr(t, "viewer of a asks for b's quota", err, connect.CodePermissionDenied, `team "b"`)
	_, err = teams(e.memberA, "b")
	wantErr(t, "member of a asks for b's quota", err, connect.CodePermissionDenied, `team "b"`)
	_, err = teams(e.viewerA, "Not A Team")
	wantErr(t, "a bad team name", err, connect.CodeInvalidArgument, "team")
	// A team with no quota, asked by name: it owns nothing.
	resp, err := root.GetQuotas(ctx, connect.NewRequest(&apiv1.GetQuotasRequest{Team: "c"}))
	if err != nil || len(resp.Msg.Teams) != 1 || resp.Msg.Teams[0].Quota != nil {
		t.Errorf("quota of c (none set): %v, %v; want one entry without a quota", resp, err)
	}
	// Cost is visible the same way.
	_, err = e.as(e.viewerA).GetCost(ctx, connect.NewRequest(&apiv1.GetCostRequest{Team: "b"}))
	wantErr(t, "viewer of a asks for b's cost", err, connect.CodePermissionDenied, `team "b"`)
	if _, err := e.as(e.viewerB).GetCost(ctx, connect.NewRequest(&apiv1.GetCostRequest{Team: "b"})); err != nil {
		t.Errorf("viewer of b asks for b's cost: %v", err)
	}
	// Any caller lists clusters.
	if _, err := e.as(e.viewerB).ListClusters(ctx, connect.NewRequest(&apiv1.ListClustersRequest{})); err != nil {
		t.Errorf("ListClusters by a viewer: %v", err)
	}
}

func TestFleetBadInputNamesTheField(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newFleetEnv(t)
	root := e.as(e.root)
	res := func(cpu, mem int64, gpu map[string]int64) *apiv1.Resources {
		return &apiv1.Resources{MilliCpu: cpu, MemoryBytes: mem, Gpu: gpu}
	}
	okCap := res(64000, gib(256), map[string]int64{"a100": 8})
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"no cluster", func() error {
			_, err := root.PutCluster(ctx, connect.NewRequest(&apiv1.PutClusterRequest{}))
			return err
		}, "cluster: required"},
		{"no name", func() error {
			_, err := root.PutCluster(ctx, connect.NewRequest(&apiv1.PutClusterRequest{Cluster: &apiv1.Cluster{Capacity: okCap}}))
			return err
		}, "cluster.name: required"},
		{"bad name", func() error {
			_, err := root.PutCluster(ctx, connect.NewRequest(&apiv1.PutClusterRequest{Cluster: &apiv1.Cluster{Name: "East_1", Capacity: okCap}}))
			return err
		}, "cluster.name"},
		{"bad state", func() error {
			_, err := root.PutCluster(ctx, connect.NewRequest(&apiv1.PutClusterRequest{Cluster: &apiv1.Cluster{Name: "east", State: "paused", Capacity: okCap}}))
			return err
		}, "cluster.state"},
		{"negative cpu", func() error {
			_, err := root.PutCluster(ctx, connect.NewRequest(&apiv1.PutClusterRequest{Cluster: &apiv1.Cluster{Name: "east", Capacity: res(-1, 0, nil)}}))
			return err
		}, "cluster.capacity.milli_cpu"},
		{"negative gpus", func() error {
			_, err := root.PutCluster(ctx, connect.NewRequest(&apiv1.PutClusterRequest{Cluster: &apiv1.Cluster{Name: "east", Capacity: res(1000, 0, map[string]int64{"a100": -2})}}))
			return err
		}, "cluster.capacity.gpu[a100]"},
		{"bad gpu type", func() error {
			_, err := root.PutCluster(ctx, connect.NewRequest(&apiv1.PutClusterRequest{Cluster: &apiv1.Cluster{Name: "east", Capacity: res(1000, 0, map[string]int64{"A 100": 2})}}))
			return err
		}, "cluster.capacity.gpu"},
		{"NaN price", func() error {
			_, err := root.PutCluster(ctx, connect.NewRequest(&apiv1.PutClusterRequest{Cluster: &apiv1.Cluster{Name: "east", Capacity: okCap, PricePerCpuHour: math.NaN()}}))
			return err
		}, "cluster.price_per_cpu_hour"},
		{"negative pods per second", func() error {
			_, err := root.PutCluster(ctx, connect.NewRequest(&apiv1.PutClusterRequest{Cluster: &apiv1.Cluster{Name: "east", Capacity: okCap, PodsPerSecond: -1}}))
			return err
		}, "cluster.pods_per_second"},
		{"price of a GPU not offered", func() error {
			_, err := root.PutCluster(ctx, connect.NewRequest(&apiv1.PutClusterRequest{Cluster: &apiv1.Cluster{Name: "east", Capacity: okCap, PricePerGpuHour: map[string]float64{"h100": 3}}}))
			return err
		}, "cluster.price_per_gpu_hour[h100]"},
		{"empty label value", func() error {
			_, err := root.PutCluster(ctx, connect.NewRequest(&apiv1.PutClusterRequest{Cluster: &apiv1.Cluster{Name: "east", Capacity: okCap,
				Labels: map[string]*apiv1.LabelValues{"zone": {Values: []string{""}}}}}))
			return err
		}, "cluster.labels[zone]"},
		{"state of no name", func() error {
			_, err := root.SetClusterState(ctx, connect.NewRequest(&apiv1.SetClusterStateRequest{State: "enabled"}))
			return err
		}, "name: required"},
		{"unknown state", func() error {
			_, err := root.SetClusterState(ctx, connect.NewRequest(&apiv1.SetClusterStateRequest{Name: "east", State: "off"}))
			return err
		}, "state"},
		{"delete a bad name", func() error {
			_, err := root.DeleteCluster(ctx, connect.NewRequest(&apiv1.DeleteClusterRequest{Name: "a/b"}))
			return err
		}, "name"},
		{"no quota", func() error { _, err := root.SetQuota(ctx, connect.NewRequest(&apiv1.SetQuotaRequest{})); return err }, "quota: required"},
		{"quota of a bad team", func() error {
			_, err := root.SetQuota(ctx, connect.NewRequest(quotaReq("Team A", 1, 1, nil)))
			return err
		}, "quota.team"},
		{"negative memory", func() error { _, err := root.SetQuota(ctx, connect.NewRequest(quotaReq("a", 1, -1, nil))); return err }, "quota.limit.memory_bytes"},
		{"split over the limit", func() error {
			req := quotaReq("a", 8, 32, nil)
			req.Quota.Clusters = map[string]*apiv1.Resources{"east": res(16000, 0, nil)}
			_, err := root.SetQuota(ctx, connect.NewRequest(req))
			return err
		}, "quota.clusters[east]: cpu 16 is over the limit's 8"},
		{"split of a bad cluster name", func() error {
			req := quotaReq("a", 8, 32, nil)
			req.Quota.Clusters = map[string]*apiv1.Resources{"EAST": res(1000, 0, nil)}
			_, err := root.SetQuota(ctx, connect.NewRequest(req))
			return err
		}, "quota.clusters[EAST]"},
		{"delete a bad team's quota", func() error {
			_, err := root.DeleteQuota(ctx, connect.NewRequest(&apiv1.DeleteQuotaRequest{}))
			return err
		}, "team"},
		{"cost since after until", func() error {
			now := time.Now()
			_, err := root.GetCost(ctx, connect.NewRequest(&apiv1.GetCostRequest{Since: timestamppb.New(now), Until: timestamppb.New(now.Add(-time.Hour))}))
			return err
		}, "since"},
		{"cost of a negative job limit", func() error {
			_, err := root.GetCost(ctx, connect.NewRequest(&apiv1.GetCostRequest{Jobs: true, JobLimit: -1}))
			return err
		}, "job_limit"},
	} {
		wantErr(t, tc.name, tc.call(), connect.CodeInvalidArgument, tc.want)
	}
	if qs, err := e.st.ListQuotas(ctx); err != nil || len(qs) != 0 {
		t.Errorf("quotas after bad input: %v, %v; want none", qs, err)
	}
	if cs, err := e.st.ListClusters(ctx); err != nil || len(cs) != 0 {
		t.Errorf("clusters after bad input: %v, %v; want none", cs, err)
	}
	// Unknown names are not found.
	_, err := root.SetClusterState(ctx, connect.NewRequest(&apiv1.SetClusterStateRequest{Name: "nowhere", State: "enabled"}))
	wantErr(t, "state of an unknown cluster", err, connect.CodeNotFound, "nowhere")
	_, err = root.DeleteCluster(ctx, connect.NewRequest(&apiv1.DeleteClusterRequest{Name: "nowhere"}))
	wantErr(t, "delete an unknown cluster", err, connect.CodeNotFound, "nowhere")
	_, err = root.DeleteQuota(ctx, connect.NewRequest(&apiv1.DeleteQuotaRequest{Team: "nobody"}))
	wantErr(t, "delete a quota never set", err, connect.CodeNotFound, "nobody")
}

// TestClustersAndQuotasWithUsage registers clusters and quotas, books
// reservations in the store as placement would, and checks what
// ListClusters and GetQuotas report held.
func TestClustersAndQuotasWithUsage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newFleetEnv(t)
	root := e.as(e.root)
	east := &apiv1.Cluster{
		Name: "east", Capacity: &apiv1.Resources{MilliCpu: 64000, MemoryBytes: gib(256), Gpu: map[string]int64{"a100": 8}},
		Labels:        map[string]*apiv1.LabelValues{"zone": {Values: []string{"b", "a", "a"}}},
		PodsPerSecond: 20, PricePerCpuHour: 0.04, PricePerGibHour: 0.005, PricePerGpuHour: map[string]float64{"a100": 2.5},
	}
	put, err := root.PutCluster(ctx, connect.NewRequest(&apiv1.PutClusterRequest{Cluster: east}))
	if err != nil {
		t.Fatal(err)
	}
	if put.Msg.Cluster.State != "enabled" || strings.Join(put.Msg.Cluster.Labels["zone"].Values, ",") != "a,b" {
		t.Errorf("put cluster: %v; want enabled, zone a,b", put.Msg.Cluster)
	}
	if _, err := root.PutCluster(ctx, connect.NewRequest(&apiv1.PutClusterRequest{Cluster: &apiv1.Cluster{Name: "west", State: "disabled", Capacity: &apiv1.Resources{MilliCpu: 32000, MemoryBytes: gib(128)}}})); err != nil {
		t.Fatal(err)
	}
	req := quotaReq("a", 16, 64, map[string]int64{"a100": 2})
	req.Quota.Clusters = map[string]*apiv1.Resources{"east": {MilliCpu: 8000}}
	req.Quota.Lend = true
	if _, err := root.SetQuota(ctx, connect.NewRequest(req)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rsv := func(id, team, cluster string, cpu, mem int64, gpu map[string]int64, borrowed bool) placement.Reservation {
		return placement.Reservation{ID: id, Team: team, Job: "job-" + id, Cluster: cluster, Resources: placement.Resources{MilliCPU: cpu, Memory: mem, GPU: gpu},
			Borrowed: borrowed, Holder: "runner-1", Created: now, ExpiresAt: now.Add(time.Hour)}
	}
	err = e.st.Place(ctx, now, func(*placement.Snapshot) (store.PlaceWrite, error) {
		return store.PlaceWrite{Insert: []placement.Reservation{
			rsv("w1", "a", "east", 4000, gib(16), map[string]int64{"a100": 1}, false),
			rsv("w2", "a", "east", 2000, gib(8), nil, false),
			rsv("w3", "a", "west", 1000, gib(4), nil, true),
			rsv("w4", "b", "east", 8000, gib(32), nil, true),
		}}, nil
	})
	if err != nil {
		t.Fatalf("Place: %v", err)
	}

	list, err := e.as(e.viewerB).ListClusters(ctx, connect.NewRequest(&apiv1.ListClustersRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Msg.Clusters) != 2 || list.Msg.Clusters[0].Cluster.Name != "east" || list.Msg.Clusters[1].Cluster.Name != "west" {
		t.Fatalf("ListClusters: %v; want east, west", list.Msg.Clusters)
	}
	ec, wc := list.Msg.Clusters[0], list.Msg.Clusters[1]
	if ec.Workers != 3 || ec.Held.MilliCpu != 14000 || ec.Held.MemoryBytes != gib(56) || ec.Held.Gpu["a100"] != 1 ||
		ec.BorrowedWorkers != 1 || ec.Borrowed.MilliCpu != 8000 {
		t.Errorf("east holds %v (%d workers, %d borrowed: %v); want 14 cores, 56Gi, 1 a100 by 3 workers, 8 cores borrowed by 1", ec.Held, ec.Workers, ec.BorrowedWorkers, ec.Borrowed)
	}
	if ec.Cluster.PricePerGpuHour["a100"] != 2.5 || ec.Cluster.PodsPerSecond != 20 || ec.Cluster.Capacity.Gpu["a100"] != 8 {
		t.Errorf("east's record: %v", ec.Cluster)
	}
	if wc.Cluster.State != "disabled" || wc.Workers != 1 || wc.Held.MilliCpu != 1000 {
		t.Errorf("west: %v; want disabled, one worker holding 1 core", wc)
	}

	q, err := e.as(e.viewerA).GetQuotas(ctx, connect.NewRequest(&apiv1.GetQuotasRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Msg.Teams) != 1 {
		t.Fatalf("viewer of a sees %d teams, want 1 (a): %v", len(q.Msg.Teams), q.Msg.Teams)
	}
	ta := q.Msg.Teams[0]
	if ta.Team != "a" || ta.Quota == nil || !ta.Quota.Lend || ta.Workers != 2 || ta.BorrowedWorkers != 1 {
		t.Errorf("team a: %v; want its lending quota, 2 own workers and 1 borrowing", ta)
	}
	got := map[string]string{}
	for _, r := range ta.Resources {
		got[r.Resource] = fmt.Sprintf("limit %d reserved %d borrowed %d used %d", r.Limit, r.Reserved, r.Borrowed, r.Used)
	}
	want := map[string]string{
		"cpu":      "limit 16000 reserved 6000 borrowed 1000 used 7000",
		"memory":   fmt.Sprintf("limit %d reserved %d borrowed %d used %d", gib(64), gib(24), gib(4), gib(28)),
		"gpu/a100": "limit 2 reserved 1 borrowed 0 used 1",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("team a's resources:\n got %v\nwant %v", got, want)
	}
	if len(ta.Resources) != 3 || ta.Resources[0].Resource != "cpu" || ta.Resources[1].Resource != "memory" {
		t.Errorf("resources out of order: %v", ta.Resources)
	}
	if len(ta.Clusters) != 2 || ta.Clusters[0].Cluster != "east" || ta.Clusters[0].Split.GetMilliCpu() != 8000 || ta.Clusters[0].Reserved.MilliCpu != 6000 ||
		ta.Clusters[1].Cluster != "west" || ta.Clusters[1].Split != nil || ta.Clusters[1].Borrowed.MilliCpu != 1000 {
		t.Errorf("team a's clusters: %v", ta.Clusters)
	}
	// b has no quota but borrows: the platform admin sees it.
	q, err = root.GetQuotas(ctx, connect.NewRequest(&apiv1.GetQuotasRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Msg.Teams) != 2 || q.Msg.Teams[1].Team != "b" || q.Msg.Teams[1].Quota != nil || q.Msg.Teams[1].BorrowedWorkers != 1 {
		t.Errorf("platform admin's quotas: %v; want a, and b borrowing without a quota", q.Msg.Teams)
	}

	// Drain, then delete.
	st, err := root.SetClusterState(ctx, connect.NewRequest(&apiv1.SetClusterStateRequest{Name: "east", State: "draining"}))
	if err != nil || st.Msg.Cluster.State != "draining" || st.Msg.Cluster.Capacity.MilliCpu != 64000 {
		t.Fatalf("drain east: %v, %v", st, err)
	}
	reclaim, err := e.st.ListReservations(ctx, store.ReservationFilter{Cluster: "east", ReclaimOnly: true})
	if err != nil || len(reclaim) != 3 {
		t.Errorf("reservations to reclaim in the drained cluster: %v, %v; want 3", reclaim, err)
	}
	if _, err := root.DeleteCluster(ctx, connect.NewRequest(&apiv1.DeleteClusterRequest{Name: "west"})); err != nil {
		t.Fatal(err)
	}
	if _, err := root.DeleteQuota(ctx, connect.NewRequest(&apiv1.DeleteQuotaRequest{Team: "a"})); err != nil {
		t.Fatal(err)
	}
	cs, err := e.st.ListClusters(ctx)
	if err != nil || len(cs) != 1 || cs[0].Name != "east" || cs[0].State != placement.Draining {
		t.Errorf("clusters after deleting west: %v, %v; want east draining", cs, err)
	}
	// West's worker still holds its room: listed without a record.
	list, err = e.as(e.viewerA).ListClusters(ctx, connect.NewRequest(&apiv1.ListClustersRequest{}))
	if err != nil || len(list.Msg.Clusters) != 1 || len(list.Msg.Unregistered) != 1 || list.Msg.Unregistered[0].Cluster.Name != "west" ||
		list.Msg.Unregistered[0].Workers != 1 || list.Msg.Unregistered[0].BorrowedWorkers != 1 || list.Msg.Unregistered[0].Held.MilliCpu != 1000 {
		t.Errorf("ListClusters after deleting west: %v, %v; want east, and west unregistered with its borrowing worker", list, err)
	}
	if qs, err := e.st.ListQuotas(ctx); err != nil || len(qs) != 0 {
		t.Errorf("quotas after deleting a's: %v, %v", qs, err)
	}
}

// costJob stores a job of team created at created, then records its cost
// as the runner does.
func costJob(t *testing.T, st store.Store, seed uint64, team string, created time.Time, usd, seconds float64) string {
	t.Helper()
	ctx := context.Background()
	id := store.NewJobID(created, rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
	job := &store.Job{ID: id, Name: "job", Namespace: team, State: store.JobPending, TaskCount: 1, Counts: store.TaskCounts{Blocked: 1},
		CreatedAt: created, Spec: []byte("name: job\n")}
	if err := st.CreateJob(ctx, job, []store.Task{{Index: 0, Key: "t", Argv: []string{"true"}, State: store.TaskBlocked}}); err != nil {
		t.Fatalf("create job: %v", err)
	}
	if err := st.Apply(ctx, &store.Batch{Jobs: []store.JobUpdate{{ID: id, State: store.JobRunning, Counts: store.TaskCounts{Running: 1},
		StartedAt: created, WorkerSeconds: seconds, CostUSD: usd}}}); err != nil {
		t.Fatalf("record cost: %v", err)
	}
	return id
}

func TestGetCost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newFleetEnv(t)
	now := time.Now().UTC().Truncate(time.Second)
	costJob(t, e.st, 1, "a", now.Add(-48*time.Hour), 100, 1000) // before the default period
	j2 := costJob(t, e.st, 2, "a", now.Add(-2*time.Hour), 1.5, 60)
	j3 := costJob(t, e.st, 3, "a", now.Add(-time.Hour), 4, 120)
	costJob(t, e.st, 4, "b", now.Add(-30*time.Minute), 10, 600)
	costJob(t, e.st, 5, "b", now.Add(time.Hour), 1000, 1) // after until

	resp, err := e.as(e.root).GetCost(ctx, connect.NewRequest(&apiv1.GetCostRequest{Until: timestamppb.New(now), Jobs: true}))
	if err != nil {
		t.Fatal(err)
	}
	m := resp.Msg
	if !m.Complete || m.TotalJobs != 3 || m.TotalCostUsd != 15.5 || m.TotalWorkerSeconds != 780 {
		t.Errorf("cost of the last 24h: complete %v, %d jobs, $%v, %vs; want complete, 3 jobs, $15.5, 780s", m.Complete, m.TotalJobs, m.TotalCostUsd, m.TotalWorkerSeconds)
	}
	if !m.Since.AsTime().Equal(now.Add(-24*time.Hour)) || !m.Until.AsTime().Equal(now) {
		t.Errorf("period %v to %v; want the 24h before %v", m.Since.AsTime(), m.Until.AsTime(), now)
	}
	if len(m.Teams) != 2 || m.Teams[0].Team != "a" || m.Teams[0].CostUsd != 5.5 || m.Teams[0].Jobs != 2 || m.Teams[1].Team != "b" || m.Teams[1].CostUsd != 10 {
		t.Errorf("per team: %v", m.Teams)
	}
	if len(m.Jobs) != 3 || m.Jobs[1].JobId != j3 || m.Jobs[2].JobId != j2 || m.Jobs[2].WorkerSeconds != 60 {
		t.Errorf("jobs, most costly first: %v", m.Jobs)
	}
	// A job limit keeps the totals and says how many were left out.
	resp, err = e.as(e.root).GetCost(ctx, connect.NewRequest(&apiv1.GetCostRequest{Until: timestamppb.New(now), Jobs: true, JobLimit: 1}))
	if err != nil || len(resp.Msg.Jobs) != 1 || resp.Msg.JobsOmitted != 2 || resp.Msg.TotalJobs != 3 {
		t.Errorf("job limit 1: %v, %v; want 1 job listed, 2 omitted, 3 counted", resp, err)
	}
	// A viewer of a sees a alone, with or without naming it.
	for _, team := range []string{"", "a"} {
		resp, err = e.as(e.viewerA).GetCost(ctx, connect.NewRequest(&apiv1.GetCostRequest{Team: team, Until: timestamppb.New(now), Since: timestamppb.New(now.Add(-72 * time.Hour))}))
		if err != nil || len(resp.Msg.Teams) != 1 || resp.Msg.Teams[0].Team != "a" || resp.Msg.TotalCostUsd != 105.5 {
			t.Errorf("viewer of a, team %q, last 72h: %v, %v; want a alone, $105.5", team, resp, err)
		}
	}
	// An end of the period past what job IDs encode still finds them.
	far := time.UnixMilli(1<<45 + 1000) // in 3084: its low 45 bits are small
	resp, err = e.as(e.root).GetCost(ctx, connect.NewRequest(&apiv1.GetCostRequest{Since: timestamppb.New(now.Add(-72 * time.Hour)), Until: timestamppb.New(far)}))
	if err != nil || resp.Msg.TotalJobs != 5 || resp.Msg.TotalCostUsd != 1115.5 {
		t.Errorf("cost until 3084: %v, %v; want all 5 jobs, $1115.5", resp, err)
	}
	// The bound: a scan that stops early says so and from when it counts.
	f := store.JobFilter{}
	sum, err := scanCost(ctx, e.st, f, now.Add(-72*time.Hour), now.Add(2*time.Hour), false, 2)
	if err != nil {
		t.Fatal(err)
	}
	if sum.complete || sum.scanned != 2 || !sum.oldest.Equal(now.Add(-30*time.Minute)) || sum.teams["b"].Jobs != 2 || sum.teams["a"] != nil {
		t.Errorf("scan bounded at 2 of 5: complete %v, scanned %d, oldest %v, teams %v; want incomplete from the b job at -30m", sum.complete, sum.scanned, sum.oldest, sum.teams)
	}
	// Exactly at the bound with nothing left in the period: complete.
	sum, err = scanCost(ctx, e.st, f, now.Add(-3*time.Hour), now, false, 3)
	if err != nil || !sum.complete || sum.scanned != 3 {
		t.Errorf("scan of 3 jobs bounded at 3: %+v, %v; want complete", sum, err)
	}
}

// FuzzQuotaFromProto: whatever a request holds, checking it never panics,
// and a quota it accepts is one the store may hold: valid, no amount
// negative, every split within the limit.
func FuzzQuotaFromProto(f *testing.F) {
	f.Add("a", int64(8000), int64(1<<30), "a100", int64(2), "east", int64(4000), true)
	f.Add("", int64(-1), int64(0), "", int64(0), "", int64(0), false)
	f.Add("team-b", int64(0), int64(-5), "A100", int64(-1), "East", int64(1), false)
	f.Add("x", int64(1), int64(1), "t4", int64(1), "west", int64(2), true)
	f.Fuzz(func(t *testing.T, team string, cpu, mem int64, gpuType string, gpus int64, cluster string, splitCPU int64, lend bool) {
		p := &apiv1.Quota{Team: team, Lend: lend, Limit: &apiv1.Resources{MilliCpu: cpu, MemoryBytes: mem, Gpu: map[string]int64{gpuType: gpus}},
			Clusters: map[string]*apiv1.Resources{cluster: {MilliCpu: splitCPU}}}
		q, err := quotaFromProto(p)
		if err != nil {
			if !strings.Contains(err.Error(), "quota") {
				t.Errorf("error %q does not name the quota's field", err)
			}
			return
		}
		if err := q.Validate(); err != nil {
			t.Errorf("accepted %+v, which is not valid: %v", q, err)
		}
		if q.Limit.MilliCPU < 0 || q.Limit.Memory < 0 || q.Limit.GPU[gpuType] < 0 {
			t.Errorf("accepted a negative limit: %+v", q.Limit)
		}
		for c, split := range q.Clusters {
			if over := split.Exceeds(q.Limit); over != "" {
				t.Errorf("accepted a split for %s over the limit in %s: %+v", c, over, q)
			}
		}
		if back := quotaProto(q); back.Team != team || back.Lend != lend || back.Limit.MilliCpu != cpu || back.Limit.MemoryBytes != mem {
			t.Errorf("round trip of %+v gave %+v", p, back)
		}
	})
}
