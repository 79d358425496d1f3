package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/gateway"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/sqlite"
)

// fleetServer is the real AdminService on SQLite behind the
// authentication interceptor, with tokens of each role. Commands get
// --server and --token explicitly, so tests using it run in parallel.
type fleetServer struct {
	st  *sqlite.Store
	url string
	// root is a platform admin; viewerA, memberA have those roles in team
	// a; viewerB is a viewer of team b.
	root, viewerA, memberA, viewerB string
}

func newFleetServer(t *testing.T) *fleetServer {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "haul.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	authn := auth.NewAuthenticator(auth.AuthnConfig{Tokens: st})
	mux := http.NewServeMux()
	mux.Handle(gateway.Bounded(gateway.AdminReadMaxBytes, apiv1connect.NewAdminServiceHandler)(gateway.NewAdmin(st, nil),
		connect.WithInterceptors(gateway.NewInterceptor(authn, nil))))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f := &fleetServer{st: st, url: srv.URL}
	token := func(subject string, platform bool, teams map[string]string) string {
		tok, id, hash, err := auth.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC().Truncate(time.Millisecond)
		if err := st.CreateToken(ctx, &store.Token{ID: id, Hash: hash, Subject: subject, Kind: "user", Teams: teams, PlatformAdmin: platform,
			CreatedBy: "test", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	f.root = token("root", true, nil)
	f.viewerA = token("va", false, map[string]string{"a": "viewer"})
	f.memberA = token("ma", false, map[string]string{"a": "member"})
	f.viewerB = token("vb", false, map[string]string{"b": "viewer"})
	return f
}

// haul runs the command line as the holder of tok against the server.
func (f *fleetServer) haul(tok string, args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	code = Main(append([]string{"--server", f.url, "--token", tok}, args...), strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

// must runs a command that must succeed and returns its stdout.
func (f *fleetServer) must(t *testing.T, tok string, args ...string) string {
	t.Helper()
	out, errOut, code := f.haul(tok, args...)
	if code != 0 {
		t.Fatalf("haul %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func TestClusterCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFleetServer(t)
	out := f.must(t, f.root, "cluster", "list")
	if !strings.Contains(out, "no clusters registered") {
		t.Errorf("cluster list of none: %q", out)
	}
	out = f.must(t, f.root, "cluster", "register", "east", "--cpu", "64", "--memory", "256Gi", "--gpu", "a100=8", "--pods-per-second", "20",
		"--label", "zone=us-east-1a,us-east-1b", "--label", "pool=gpu", "--price-cpu-hour", "0.04", "--price-gib-hour", "0.005", "--price-gpu-hour", "a100=2.5")
	if !strings.Contains(out, "cluster east registered: enabled, capacity cpu=64 memory=256Gi gpu/a100=8") {
		t.Errorf("cluster register: %q", out)
	}
	f.must(t, f.root, "cluster", "register", "west", "--cpu", "500m", "--memory", "4G", "--state", "disabled")
	cs, err := f.st.ListClusters(ctx)
	if err != nil || len(cs) != 2 {
		t.Fatalf("stored clusters: %v, %v", cs, err)
	}
	east, west := cs[0], cs[1]
	if east.Capacity.MilliCPU != 64000 || east.Capacity.Memory != 256<<30 || east.Capacity.GPU["a100"] != 8 || east.PodsPerSecond != 20 ||
		east.PricePerCPUHour != 0.04 || east.PricePerGiBHour != 0.005 || east.PricePerGPUHour["a100"] != 2.5 ||
		strings.Join(east.Labels["zone"], ",") != "us-east-1a,us-east-1b" || strings.Join(east.Labels["pool"], ",") != "gpu" {
		t.Errorf("stored east: %+v", east)
	}
	if west.State != placement.Disabled || west.Capacity.MilliCPU != 500 || west.Capacity.Memory != 4e9 {
		t.Errorf("stored west: %+v", west)
	}

	// A worker in east, to see it held.
	now := time.Now()
	err = f.st.Place(ctx, now, func(*placement.Snapshot) (store.PlaceWrite, error) {
		return store.PlaceWrite{Insert: []placement.Reservation{{ID: "w1", Team: "a", Job: "j", Cluster: "east",
			Resources: placement.Resources{MilliCPU: 4000, Memory: 16 << 30, GPU: map[string]int64{"a100": 1}}, Holder: "r", Created: now, ExpiresAt: now.Add(time.Hour)},
			{ID: "w2", Team: "b", Job: "k", Cluster: "west", Resources: placement.Resources{MilliCPU: 100, Memory: 1 << 30}, Holder: "r", Created: now, ExpiresAt: now.Add(time.Hour)}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Anyone may list.
	out = f.must(t, f.viewerB, "cluster", "list")
	for _, want := range []string{"NAME", "east", "enabled", "4/64", "16Gi/256Gi", "a100 1/8", "cpu $0.04, GiB $0.005, a100 $2.5", "pool=gpu zone=us-east-1a|us-east-1b", "west", "disabled", "0.1/0.5", "1Gi/3.7Gi"} {
		if !strings.Contains(out, want) {
			t.Errorf("cluster list lacks %q:\n%s", want, out)
		}
	}
	var listed struct {
		Clusters []struct {
			Cluster struct {
				Name  string `json:"name"`
				State string `json:"state"`
			} `json:"cluster"`
			Held struct {
				MilliCPU int64 `json:"milli_cpu"` // a number, as every int64 in -o json
			} `json:"held"`
			Workers int64 `json:"workers"`
		} `json:"clusters"`
	}
	if err := json.Unmarshal([]byte(f.must(t, f.viewerA, "cluster", "list", "-o", "json")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed.Clusters) != 2 || listed.Clusters[0].Cluster.Name != "east" || listed.Clusters[0].Held.MilliCPU != 4000 || listed.Clusters[0].Workers != 1 {
		t.Errorf("cluster list -o json: %+v", listed)
	}

	// Drain; registering again keeps the state.
	if out := f.must(t, f.root, "cluster", "drain", "east"); !strings.Contains(out, "cluster east draining") {
		t.Errorf("cluster drain: %q", out)
	}
	if rs, err := f.st.ListReservations(ctx, store.ReservationFilter{ReclaimOnly: true}); err != nil || len(rs) != 1 {
		t.Errorf("reservations to reclaim after draining: %v, %v; want w1", rs, err)
	}
	out = f.must(t, f.root, "cluster", "register", "east", "--cpu", "96", "--memory", "384Gi", "--gpu", "a100=8")
	if !strings.Contains(out, "draining (state kept)") {
		t.Errorf("register again: %q; want the state kept", out)
	}
	f.must(t, f.root, "cluster", "enable", "east")
	f.must(t, f.root, "cluster", "disable", "east")
	f.must(t, f.root, "cluster", "delete", "west")
	cs, err = f.st.ListClusters(ctx)
	if err != nil || len(cs) != 1 || cs[0].State != placement.Disabled || cs[0].Capacity.MilliCPU != 96000 {
		t.Errorf("clusters at the end: %+v, %v; want east alone, disabled, 96 cores", cs, err)
	}
	// West's worker still holds its room there, record or not.
	if out := f.must(t, f.root, "cluster", "list"); !row(out, "west", "(no record)", "0.1", "1Gi", "-", "1", "-", "-", "-") {
		t.Errorf("cluster list after deleting west, whose worker runs on:\n%s", out)
	}

	// Refusals: exit 1, saying why.
	for _, tc := range []struct {
		tok  string
		args []string
		want string
	}{
		{f.memberA, []string{"cluster", "register", "north", "--cpu", "1", "--memory", "1Gi"}, "permission_denied"},
		{f.memberA, []string{"cluster", "drain", "east"}, "platform admin"},
		{f.root, []string{"cluster", "delete", "west"}, "cluster west not found"},
		{f.root, []string{"cluster", "register", "North", "--cpu", "1", "--memory", "1Gi"}, "cluster.name"},
	} {
		if _, errOut, code := f.haul(tc.tok, tc.args...); code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("haul %s: exit %d, %q; want 1 saying %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
	// Usage mistakes: exit 2, naming the flag, before calling the server.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cluster", "register", "north", "--memory", "1Gi"}, "--cpu"},
		{[]string{"cluster", "register", "north", "--cpu", "1"}, "--memory"},
		{[]string{"cluster", "register", "north", "--cpu", "lots", "--memory", "1Gi"}, "--cpu"},
		{[]string{"cluster", "register", "north", "--cpu", "1", "--memory", "1Gb"}, "--memory"},
		{[]string{"cluster", "register", "north", "--cpu", "1", "--memory", "1Gi", "--gpu", "a100"}, "--gpu"},
		{[]string{"cluster", "register", "north", "--cpu", "1", "--memory", "1Gi", "--label", "zone"}, "--label"},
		{[]string{"cluster", "register", "north", "--cpu", "1", "--memory", "1Gi", "--price-gpu-hour", "t4=1"}, "no GPU of type t4"},
		{[]string{"cluster", "register", "north", "--cpu", "1", "--memory", "1Gi", "--state", "on"}, "--state"},
		{[]string{"cluster", "register", "north", "--cpu", "1", "--memory", "1Gi", "--price-cpu-hour", "cheap"}, "price-cpu-hour"},
		{[]string{"cluster", "drain"}, "accepts 1 arg"},
	} {
		if _, errOut, code := f.haul(f.root, tc.args...); code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("haul %s: exit %d, %q; want 2 naming %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
	if cs, err := f.st.ListClusters(ctx); err != nil || len(cs) != 1 {
		t.Errorf("clusters after refusals: %v, %v; want east alone", cs, err)
	}
}
