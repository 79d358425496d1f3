package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/blob"
	"github.com/haul-dev/haul/internal/gateway"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/server"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/sqlite"
)

// Reading a data directory with no server (embedded mode's promise):
// after `haul run` the embedded server is gone, yet its hints name read
// commands. When no server was chosen (no --server, HAUL_SERVER or
// profile's server) and none answers at the default address, client
// commands serve the API in this process from the data directory's store,
// opened read-only, and its log files: the same gateway, so every answer
// is the server's. Calls that would change anything are refused. While a
// server on this machine runs the directory's jobs at another address
// (haul run's embedded server), that server is asked instead.

// localState is what the app keeps of the local reader.
type localState struct {
	// server is the URL the decision was made for ("" before it was).
	server string
	client apiv1connect.JobServiceClient
}

// localClient returns a JobService client that reads the data directory
// in this process, or nil when a server should be asked: one was chosen
// explicitly, one answers, or the data directory has no store.
func (a *app) localClient() apiv1connect.JobServiceClient {
	if a.local.server == a.server {
		return a.local.client
	}
	a.local = localState{server: a.server}
	if a.serverChosen || strings.TrimRight(a.server, "/") != DefaultServer || server.Alive(context.Background(), a.server) {
		return nil
	}
	dir := a.dataDir
	if dir == "" {
		dir = server.DefaultDataDir()
	}
	db := filepath.Join(dir, "haul.db")
	if _, err := os.Stat(db); err != nil {
		return nil
	}
	st, err := sqlite.OpenReadOnly(context.Background(), db, nil)
	if err != nil {
		fmt.Fprintf(a.stderr, "(no server answered, and %s cannot be read directly: %v)\n", dir, err)
		return nil
	}
	if addr := runningServer(st); addr != "" {
		// A server runs this directory's jobs elsewhere than the default
		// address (haul run's embedded one): ask it, with this
		// directory's admin token (it is on this machine).
		st.Close()
		fmt.Fprintf(a.stderr, "(using the haul server at %s, which runs the jobs of %s)\n", addr, dir)
		a.server, a.dataDir = addr, dir
		return nil
	}
	c, err := serveLocal(dir, st)
	if err != nil {
		st.Close()
		fmt.Fprintf(a.stderr, "(no server answered, and %s cannot be read directly: %v)\n", dir, err)
		return nil
	}
	fmt.Fprintf(a.stderr, "(no server answered; read from %s directly)\n", dir)
	a.local.client = c
	return c
}

// runningServer returns the address of a live server that holds a runner
// lease of st on this machine, or "".
func runningServer(st store.Store) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ls, err := st.ListLeases(ctx, store.MemberLeasePrefix)
	if err != nil {
		return ""
	}
	for _, l := range ls {
		if l.ExpiresAt.After(time.Now()) && isLoopbackURL(l.Address) && server.Alive(ctx, l.Address) {
			return l.Address
		}
	}
	return ""
}

// serveLocal serves the API of the data directory dir, whose store st is
// open read-only, on a loopback listener of this process, and returns a
// client of it.
func serveLocal(dir string, st store.Store) (apiv1connect.JobServiceClient, error) {
	bs, err := blob.Open("file://" + filepath.Join(dir, "blobs"))
	if err != nil {
		return nil, err
	}
	gw := gateway.New(gateway.Config{Store: st, Blob: bs, Auth: localOwner(dir)})
	mux := http.NewServeMux()
	mux.Handle(apiv1connect.NewJobServiceHandler(gw, connect.WithInterceptors(readOnly{dir: dir}, gw.Interceptor())))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: protocols}
	// It serves until this process exits: a command's lifetime.
	go srv.Serve(ln)
	// The gateway wants a bearer; localOwner takes any.
	return apiv1connect.NewJobServiceClient(http.DefaultClient, "http://"+ln.Addr().String(), connect.WithInterceptors(bearerAuth("local"))), nil
}

// localOwner authenticates every call of the local reader as the unix
// user who may read the data directory's files, and so everything in it:
// a platform admin of that deployment, for reading.
type localOwner string

func (d localOwner) Authenticate(context.Context, string) (*auth.Identity, error) {
	name := "local"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return &auth.Identity{Subject: "local:" + name, Kind: auth.KindUser, PlatformAdmin: true, Via: "data directory " + string(d)}, nil
}

// readOnly refuses every call but reads (Get*, List*, Watch*, WhoAmI):
// there is no server to act.
type readOnly struct{ dir string }

func (r readOnly) check(procedure string) error {
	m := path.Base(procedure)
	for _, p := range []string{"Get", "List", "Watch", "WhoAmI"} {
		if strings.HasPrefix(m, p) {
			return nil
		}
	}
	return connect.NewError(connect.CodeFailedPrecondition, errors.New(noServerMessage(r.dir)))
}

// noServerMessage says how to act when only the data directory is there.
func noServerMessage(dir string) string {
	return fmt.Sprintf("no server is running; start one with `haul up --data %s`", dir)
}

func (r readOnly) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := r.check(req.Spec().Procedure); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (r readOnly) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (r readOnly) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := r.check(conn.Spec().Procedure); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}
