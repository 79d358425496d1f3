// Package server wires a single-process haul deployment together: store,
// object store, gateway, runner and a worker backend (local processes, or
// pods on Kubernetes clusters) behind one HTTP
// listener. It is the only package that constructs the others; `haul up` and
// the embedded server of `haul run` both use it.
package server

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/blob"
	_ "github.com/haul-dev/haul/internal/blob/s3" // s3:// object stores
	"github.com/haul-dev/haul/internal/gateway"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/gen/haul/runner/v1/runnerv1connect"
	"github.com/haul-dev/haul/internal/gen/haul/taskhost/v1/taskhostv1connect"
	"github.com/haul-dev/haul/internal/gpu"
	"github.com/haul-dev/haul/internal/history"
	"github.com/haul-dev/haul/internal/kube"
	"github.com/haul-dev/haul/internal/local"
	"github.com/haul-dev/haul/internal/logarchive"
	"github.com/haul-dev/haul/internal/metrics"
	"github.com/haul-dev/haul/internal/notify"
	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/retention"
	"github.com/haul-dev/haul/internal/runner"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/postgres"
	"github.com/haul-dev/haul/internal/store/sqlite"
	"github.com/haul-dev/haul/internal/token"
	"github.com/haul-dev/haul/internal/ui"
	"github.com/haul-dev/haul/internal/websession"
)

// Role says which services a process runs.
type Role int

const (
	// RoleAll runs gateway and runner in one process (`haul up`).
	RoleAll Role = iota
	// RoleGateway runs the API only (`haul gateway`): no job state.
	RoleGateway
	// RoleRunner runs the runner only (`haul runner`): shards, workers.
	RoleRunner
)

// Options configures a server.
type Options struct {
	// Role selects the services (default RoleAll).
	Role Role
	// AdvertiseURL is where workers and gateways reach this runner
	// (default: the server's own URL).
	AdvertiseURL string
	// LocatorURL is where this runner's workers ask for their job's
	// runner after a failover: the gateways' address (default: the
	// server's own URL, which answers Locate too).
	LocatorURL string
	// Listen is the address to serve on; port 0 picks a free port.
	Listen string
	// DataDir holds the SQLite database, the object store and worker files.
	DataDir string
	// DatabaseURL selects PostgreSQL (postgres://...) instead of SQLite.
	DatabaseURL string
	// BlobURL names the object store for logs (see blob.Open:
	// s3://bucket/prefix?region=..., file:///abs/path); empty: a folder
	// in DataDir. Workers get the same URL and find credentials through
	// the standard AWS chain (environment, shared config, web identity on
	// Kubernetes, instance role).
	BlobURL string
	// Blob, when set, is the server's own handle on BlobURL's store
	// (opened by the caller, e.g. with explicit credentials); workers
	// still get BlobURL.
	Blob blob.Store
	// TaskhostCommand runs a taskhost (default: this executable's
	// `taskhost` subcommand).
	TaskhostCommand []string
	// MaxWorkers caps concurrent local workers (default: 2 per CPU, at least 4).
	MaxWorkers int
	// LocalCapacity is the local backend's cluster capacity for placement
	// (zero: local.DefaultCapacity of the worker cap and the GPUs
	// nvidia-smi lists).
	LocalCapacity placement.Resources
	// NodePricePerHour is what this machine costs, for job cost estimates.
	NodePricePerHour float64
	Logger           *slog.Logger
	// Runner tunes the runner; its store, backend and URLs are set here.
	Runner runner.Config
	// Kube, when it lists clusters, runs workers as pods on them (the kube
	// backend) instead of local processes; its callbacks are set here.
	Kube *kube.Config
	// WorkerRunnerURL is the address workers reach the runner at (default:
	// the server's own URL); pods need a Service's address.
	WorkerRunnerURL string
	// Backend, when set, makes the worker backend, in place of Kube and
	// of local processes: Open calls it once, with the function the
	// backend must call whenever one of its workers has ended (the
	// runner's WorkerGone). haul bench runs workers in its own process
	// this way.
	Backend func(workerGone func(id, why string)) (WorkerBackend, error)
	// TLSCert and TLSKey, when both are set, serve HTTPS (HTTP/2 and
	// HTTP/1.1) with this certificate chain and key; local workers are
	// given TLSCert to verify it. Listening beyond loopback needs them.
	TLSCert, TLSKey string
	// OIDC, when set, also accepts ID tokens of this issuer.
	OIDC *auth.OIDC
	// WebLogin, when set (with OIDC), offers the web UI's login with SSO.
	WebLogin *websession.OIDCLogin
	// MutationsPerSecond and MutationBurst bound each identity's
	// mutating calls (0: the gateway's defaults).
	MutationsPerSecond float64
	MutationBurst      int
	// RetainFinished, when > 0, retires finished jobs from the live
	// tables this long after they finished, once the history export
	// holds them (package retention; a server that runs the runner runs
	// the retainer). 0 keeps every job forever.
	RetainFinished time.Duration
	// ExportInterval is how often the history is exported to HistoryURL
	// (default 5m); ArchiveDelay how long after a job ends its logs are
	// copied to its team's destination and it may be exported (default
	// 30s: its workers' last logs arrive meanwhile).
	ExportInterval time.Duration
	ArchiveDelay   time.Duration
	// WebhookAllowPrivate lets jobs' webhooks reach internal addresses
	// (package notify refuses them by default).
	WebhookAllowPrivate bool
	// HistoryURL is where the history export is written (an object store
	// URL or a folder, as `haul query --from` takes it); retired jobs'
	// archive rows name it, so that asking for them says where to look.
	HistoryURL string
}

// WorkerBackend is a worker backend brought by the caller (Options.Backend):
// the runner's contract, and Stop, which stops every worker and waits for
// them.
type WorkerBackend interface {
	runner.Backend
	Stop()
}

// backend is what the server needs of a worker backend besides the
// runner's contract.
type backend interface {
	runner.Backend
	Stop()
}

// Server is a running single-process deployment.
type Server struct {
	opts    Options
	log     *slog.Logger
	st      store.Store
	backend backend
	kube    *kube.Backend  // nil with the local backend
	run     *runner.Runner // nil for a gateway
	metrics *metrics.Registry
	http    *http.Server
	ln      net.Listener
	url     string
	admin   string
	serveCh chan error
	stop    sync.Once
	// bgStop stops the background loops (archiver, notifier, history export);
	// bgWG waits for them.
	bgStop context.CancelFunc
	bgWG   sync.WaitGroup
	// bs is the platform's object store (logs).
	bs blob.Store
	// retain stops the retainer (nil when none runs); retained is closed
	// when it has returned.
	retain   context.CancelFunc
	retained chan struct{}
	// webhookKey is a team's webhook signing key, derived from the
	// cluster key (package notify; GetWebhookKey shows it).
	webhookKey func(team string) []byte
}

// DefaultDataDir is where haul keeps its data when --data is not given:
// $HAUL_DATA, else $XDG_DATA_HOME/haul, else ~/.local/share/haul.
func DefaultDataDir() string {
	if d := os.Getenv("HAUL_DATA"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "haul")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "haul")
	}
	return filepath.Join(os.TempDir(), "haul")
}

// OpenStore opens the store a deployment uses: PostgreSQL when url is set,
// else SQLite in dataDir.
func OpenStore(ctx context.Context, url, dataDir string, log *slog.Logger) (store.Store, error) {
	if url != "" {
		if !strings.HasPrefix(url, "postgres://") && !strings.HasPrefix(url, "postgresql://") {
			return nil, fmt.Errorf("database URL %q: want postgres://user@host/db (SQLite is the default when no URL is given)", url)
		}
		return postgres.Open(ctx, url, log)
	}
	if err := privateDir(dataDir); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	db := filepath.Join(dataDir, "haul.db")
	if err := privateFile(db); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return sqlite.Open(ctx, db, log)
}

// Open opens the stores and binds the listener; Start begins serving.
func Open(ctx context.Context, o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DataDir == "" {
		o.DataDir = DefaultDataDir()
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:7070"
	}
	if len(o.TaskhostCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find own executable for workers: %w", err)
		}
		o.TaskhostCommand = []string{exe, "taskhost"}
	}
	var tlsConf *tls.Config
	if o.TLSCert != "" || o.TLSKey != "" {
		c, err := loadTLS(o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, err
		}
		tlsConf = c
	} else if !IsLoopback(o.Listen) {
		return nil, insecureListen(o.Listen)
	}
	if err := privateDir(o.DataDir); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	st, err := OpenStore(ctx, o.DatabaseURL, o.DataDir, o.Logger)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	admin, err := EnsureAdminToken(ctx, st, o.DataDir, time.Now())
	if err != nil {
		st.Close()
		return nil, err
	}
	blobDir := filepath.Join(o.DataDir, "blobs")
	if err := privateDir(blobDir); err != nil {
		st.Close()
		return nil, fmt.Errorf("object store: %w", err)
	}
	blobURL := cmp.Or(o.BlobURL, "file://"+blobDir)
	bs, err := o.Blob, error(nil)
	if bs == nil {
		bs, err = blob.Open(blobURL)
	}
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("object store: %w", err)
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("listen on %s: %w", o.Listen, err)
	}
	scheme := "http://"
	if tlsConf != nil {
		scheme = "https://"
	}
	s := &Server{opts: o, log: o.Logger, st: st, ln: ln, url: scheme + clientAddr(ln.Addr()), admin: admin, serveCh: make(chan error, 1)}

	// The runner group's key, made by the first process on the store:
	// worker credentials, task tokens and the gateways' credential to the
	// runners all derive from it, so any process can check any of them.
	key, err := ClusterKey(ctx, st)
	if err != nil {
		ln.Close()
		st.Close()
		return nil, err
	}
	secret := token.Secret(derive(key, "attempt tokens"))
	workerKey := derive(key, "worker credentials")
	s.webhookKey = func(team string) []byte { return derive(key, "webhook:"+team) }
	s.metrics = metrics.NewRegistry()
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.metrics.Handler())
	authn := auth.NewAuthenticator(auth.AuthnConfig{Tokens: st, OIDC: o.OIDC, TaskTokens: token.Identifier{Secret: secret, Store: st}, Logger: o.Logger})
	gwc := gateway.Config{Store: st, Blob: bs, Logger: o.Logger, Tokens: secret, Metrics: s.metrics.API(),
		Auth: authn, MutationsPerSecond: o.MutationsPerSecond, MutationBurst: o.MutationBurst}
	if o.Role == RoleGateway {
		rc, err := runnerClient(o.TLSCert)
		if err != nil {
			ln.Close()
			st.Close()
			return nil, err
		}
		ra := &runner.RemoteAppender{Store: st, Key: workerKey, Client: rc}
		gwc.Appender, gwc.Explainer, gwc.Live = ra, ra, ra
		mux.Handle(taskhostv1connect.NewTaskHostServiceHandler(&runner.LocatorService{Locator: runner.Locator{Store: st, Key: workerKey}}))
		s.mountGateway(mux, gwc, authn)
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if _, err := st.ListLeases(ctx, store.MemberLeasePrefix); err != nil {
				http.Error(w, "unhealthy: the store does not answer: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		s.serveWith(mux, tlsConf)
		return s, nil
	}

	var run *runner.Runner
	var be backend
	if o.Backend != nil {
		b, err := o.Backend(func(id, why string) { run.WorkerGone(id, why) })
		if err != nil {
			ln.Close()
			st.Close()
			return nil, fmt.Errorf("worker backend: %w", err)
		}
		be = b
	} else if o.Kube != nil {
		kc := *o.Kube
		kc.Logger = o.Logger
		if kc.SharedClaim != "" && kc.SharedPath == "" {
			kc.SharedPath = blobDir // where workers write logs: HAUL_BLOB
		}
		if o.TLSCert != "" && kc.RunnerCA == "" {
			pem, err := os.ReadFile(o.TLSCert)
			if err != nil {
				ln.Close()
				st.Close()
				return nil, fmt.Errorf("TLS certificate for worker pods: %w", err)
			}
			kc.RunnerCA = string(pem) // worker pods trust the server's certificate
		}
		kc.Gone = func(id, why string) { run.WorkerGone(id, why) }
		kc.OOMKilled = func(id, why string) { run.WorkerOOMKilled(id, why) }
		kb, err := kube.New(ctx, kc)
		if err != nil {
			ln.Close()
			st.Close()
			return nil, fmt.Errorf("kube backend: %w", err)
		}
		be, s.kube = kb, kb
	} else {
		capacity := o.LocalCapacity
		if capacity.IsZero() {
			capacity = local.DefaultCapacity(cmp.Or(o.MaxWorkers, o.Runner.MaxWorkers, max(4, 2*runtime.NumCPU())), localGPUs(ctx))
		}
		lb, err := local.New(local.Config{
			Capacity: capacity,
			Command:  o.TaskhostCommand,
			Dir:      filepath.Join(o.DataDir, "workers"),
			Logger:   o.Logger,
			Exited:   func(id, why string) { run.WorkerGone(id, why) },
			CAFile:   o.TLSCert,

			NodePricePerHour: o.NodePricePerHour,
		})
		if err != nil {
			ln.Close()
			st.Close()
			return nil, err
		}
		be = lb
	}
	rc := o.Runner
	rc.Store, rc.Backend, rc.Logger = st, be, o.Logger
	rc.RunnerURL = s.url
	if o.AdvertiseURL != "" {
		rc.RunnerURL = o.AdvertiseURL
	}
	if o.WorkerRunnerURL != "" {
		rc.RunnerURL = o.WorkerRunnerURL
	}
	rc.LocatorURL = o.LocatorURL
	// Tasks reach the API at the locator (the gateways) or, in one
	// process, where workers reach the runner, with a token that lets
	// them add tasks to their own job.
	rc.ServerURL, rc.Tokens, rc.WorkerKey, rc.Metrics = rc.RunnerURL, secret, workerKey, s.metrics.Runner()
	if o.LocatorURL != "" {
		rc.ServerURL = o.LocatorURL
	}
	rc.BlobURL, rc.Blob = blobURL, bs
	s.bs = bs
	if o.MaxWorkers > 0 {
		rc.MaxWorkers = o.MaxWorkers
	}
	run = runner.New(rc)
	s.run, s.backend = run, be

	if o.Role == RoleAll {
		gwc.Notify, gwc.Appender, gwc.Explainer, gwc.Live = run.Wake, run, run, run
		s.mountGateway(mux, gwc, authn)
	}
	// Poll replies are small and frequent: compressing them cost 3-8% of
	// the server's CPU in every haul bench profile for nothing on a LAN.
	mux.Handle(gateway.Bounded(gateway.PollReadMaxBytes, taskhostv1connect.NewTaskHostServiceHandler)(run, connect.WithCompressMinBytes(64<<10)))
	mux.Handle(gateway.Bounded(gateway.PollReadMaxBytes, runnerv1connect.NewRunnerServiceHandler)(runner.Service{Runner: run}))
	// Health says whether this server makes progress: 503, with the reason,
	// while its runner is not a member of the group or cannot write to the
	// store.
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := run.Health(); err != nil {
			http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	s.serveWith(mux, tlsConf)
	return s, nil
}

// mountGateway serves the API: JobService and AdminService, every call
// authenticated (authn) and counted.
func (s *Server) mountGateway(mux *http.ServeMux, gwc gateway.Config, authn *auth.Authn) {
	gw := gateway.New(gwc)
	// The web UI's session (a cookie) stands in for the bearer token on
	// the API's calls; see package websession.
	web := websession.New(websession.Config{Auth: authn, OIDC: s.opts.WebLogin, Secure: s.opts.TLSCert != "", Logger: s.log})
	path, h := gateway.Bounded(gw.ReadMaxBytes(), apiv1connect.NewJobServiceHandler)(gw, connect.WithInterceptors(gw.Interceptor()))
	mux.Handle(path, web.API(h))
	path, h = gateway.Bounded(gateway.AdminReadMaxBytes, apiv1connect.NewAdminServiceHandler)(gateway.NewAdmin(s.st, nil).WithLogger(s.log).WithForget(authn.Forget).WithWebhookKey(s.webhookKey), connect.WithInterceptors(gw.Interceptor()))
	mux.Handle(path, web.API(h))
	web.Mount(mux)
	mux.Handle("GET /ui/logs/{job}/{key}/{attempt}", web.API(http.HandlerFunc(gw.DownloadLog)))
	mux.Handle("/", ui.Handler())
}

// serveWith makes the HTTP server of mux: HTTPS with tlsConf, else
// HTTP/1.1 and unencrypted HTTP/2.
func (s *Server) serveWith(mux *http.ServeMux, tlsConf *tls.Config) {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	if tlsConf != nil {
		protocols.SetHTTP2(true)
		s.ln = tls.NewListener(s.ln, tlsConf)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	s.http = &http.Server{Handler: mux, Protocols: protocols, TLSConfig: tlsConf, ReadHeaderTimeout: 10 * time.Second}
}

// runnerClient is the HTTP client a gateway calls runners with: it trusts
// the system's certificate authorities and, when the gateway serves TLS,
// its own certificate (a deployment's gateways and runners share one, as
// deploy/kubernetes does).
func runnerClient(certFile string) (*http.Client, error) {
	if certFile == "" {
		return http.DefaultClient, nil
	}
	pem, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate for calls to runners: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("TLS certificate %s: no PEM certificate in it", certFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}

// ClusterKey returns the store's runner-group key, making it if the store
// has none (the first process to start wins; every other reads it).
func ClusterKey(ctx context.Context, st store.Store) ([]byte, error) {
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	key, err := st.EnsureSecret(ctx, "cluster-key", fresh)
	if err != nil {
		return nil, fmt.Errorf("the store's cluster key: %w", err)
	}
	return key, nil
}

// derive makes a key for one purpose from the cluster key.
func derive(key []byte, purpose string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// clientAddr is where a client on this machine reaches a listener: its
// address, with a loopback IP in place of an unspecified one (0.0.0.0,
// ::), which is no address to connect to or to match a certificate with.
func clientAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port))
}

// AdminToken returns the local platform admin's token (also in
// <data dir>/admin-token), for in-process clients.
func (s *Server) AdminToken() string { return s.admin }

// URL is the address clients and workers use, such as http://127.0.0.1:7070.
func (s *Server) URL() string { return s.url }

// Kube returns the Kubernetes backend, or nil when workers run locally.
func (s *Server) Kube() *kube.Backend { return s.kube }

// Store returns the server's store.
func (s *Server) Store() store.Store { return s.st }

// Start starts the runner (unless this is a gateway) and serves
// requests. A single-process server (RoleAll) refuses to start, with a
// *runner.LeaseHeldError, while another haul server answers for the same
// store at another address; a crashed predecessor's shards are taken as
// their leases expire, while the API already answers.
func (s *Server) Start(ctx context.Context) error {
	if s.opts.Role == RoleAll {
		if held, err := s.otherServer(ctx); err != nil {
			s.http.Close()
			return err
		} else if held != nil {
			s.http.Close()
			return &runner.LeaseHeldError{Lease: *held}
		}
	}
	if s.run != nil {
		if err := s.run.Start(ctx); err != nil {
			s.http.Close()
			return err
		}
	}
	if s.run != nil && s.opts.RetainFinished > 0 {
		s.startRetainer()
	}
	if s.run != nil {
		if err := s.startBackground(); err != nil {
			s.http.Close()
			return err
		}
	}
	go func() { s.serveCh <- s.http.Serve(s.ln) }()
	s.log.Info("haul serving", "url", s.url, "data", s.opts.DataDir, "role", s.opts.Role)
	return nil
}

// startBackground runs, until Stop, the log archiver (copies ended jobs'
// logs to their teams' destinations), the webhook notifier (sends ended
// jobs' events to their webhooks) and, when HistoryURL is set, the
// history export every ExportInterval. Each takes a store lease, so one
// runner of a group does the work.
func (s *Server) startBackground() error {
	ctx, cancel := context.WithCancel(context.Background())
	s.bgStop = cancel
	arch := logarchive.New(logarchive.Config{Store: s.st, Blob: s.bs, Holder: "archiver-" + s.url, Logger: s.log.With("component", "log-archiver"),
		Delay: s.opts.ArchiveDelay})
	s.bgWG.Go(func() { arch.Run(ctx) })
	if ns, ok := s.st.(notify.Store); ok {
		nt, err := notify.New(notify.Config{Store: ns, Key: s.webhookKey, Holder: "notifier-" + s.url, Logger: s.log.With("component", "notifier"),
			AllowPrivate: s.opts.WebhookAllowPrivate})
		if err != nil {
			cancel()
			return err
		}
		s.bgWG.Go(func() { nt.Run(ctx) })
	} else {
		s.log.Warn("webhooks are not sent: the store keeps no webhook deliveries", "store", fmt.Sprintf("%T", s.st))
	}
	if s.opts.HistoryURL == "" {
		return nil
	}
	hs, err := blob.Open(s.opts.HistoryURL)
	if err != nil {
		cancel()
		return fmt.Errorf("history: %w", err)
	}
	every := cmp.Or(s.opts.ExportInterval, 5*time.Minute)
	ex := &history.Exporter{Store: s.st, Blob: hs, MinAge: cmp.Or(s.opts.ArchiveDelay, logarchive.DefaultDelay), Teams: history.TeamStores(s.st), Log: s.log.With("component", "history")}
	holder := "exporter-" + s.url
	s.bgWG.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			now := time.Now()
			if _, held, err := s.st.AcquireLease(ctx, store.Lease{Name: "history-exporter", Holder: holder, ExpiresAt: now.Add(every + time.Minute)}, now); err == nil && held {
				st, err := ex.Run(ctx)
				switch {
				case err != nil && ctx.Err() == nil:
					s.log.Warn("history export failed; tried again later", "err", err)
				case st.Jobs > 0:
					s.log.Info("history exported", "jobs", st.Jobs, "rows", st.Rows, "bytes", st.Bytes)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	s.log.Info("exporting history", "to", s.opts.HistoryURL, "every", every)
	return nil
}

// startRetainer runs a retention.Retainer until Stop: it retires the
// jobs that finished more than RetainFinished ago and were exported.
func (s *Server) startRetainer() {
	ctx, cancel := context.WithCancel(context.Background())
	s.retain, s.retained = cancel, make(chan struct{})
	r := &retention.Retainer{Store: s.st, Age: s.opts.RetainFinished, History: s.opts.HistoryURL, Logger: s.log.With("component", "retention")}
	go func() {
		defer close(s.retained)
		r.Run(ctx)
	}()
	s.log.Info("retaining finished jobs", "for", s.opts.RetainFinished, "history", s.opts.HistoryURL)
}

// otherServer returns the membership lease of another live runner of the
// store that answers at another address, or nil.
func (s *Server) otherServer(ctx context.Context) (*store.Lease, error) {
	ls, err := s.st.ListLeases(ctx, store.MemberLeasePrefix)
	if err != nil {
		return nil, fmt.Errorf("read the store's runners: %w", err)
	}
	now := time.Now()
	for _, l := range ls {
		if l.ExpiresAt.After(now) && l.Address != s.url && Alive(ctx, l.Address) {
			return &l, nil
		}
	}
	return nil, nil
}

// Alive reports whether a haul server answers at url.
func Alive(ctx context.Context, url string) bool {
	if url == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(url, "/")+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	var unknownCA x509.UnknownAuthorityError
	if errors.As(err, &unknownCA) {
		// A TLS server whose certificate this process does not trust:
		// something answers there.
		return true
	}
	if err != nil {
		return false
	}
	resp.Body.Close()
	// An unhealthy server (503: it cannot reach the store now) is alive.
	return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusServiceUnavailable
}

// Done returns a channel that receives an error if the server stops on its
// own: serving failed, or the runner lost its lease.
func (s *Server) Done() <-chan error { return s.serveCh }

// Stop stops the runner and its workers, then the HTTP server, then closes
// the store. It is idempotent.
func (s *Server) Stop() {
	s.stop.Do(func() {
		if s.bgStop != nil {
			s.bgStop()
			s.bgWG.Wait()
		}
		if s.retain != nil {
			s.retain()
			<-s.retained
		}
		if s.run != nil {
			s.run.Stop()
			s.backend.Stop()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.http.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.http.Close()
		}
		s.st.Close()
	})
}

// localGPUs counts this machine's GPUs (nvidia-smi), all of the generic
// type "gpu"; nil when there are none.
func localGPUs(ctx context.Context) map[string]int64 {
	smi, err := gpu.Detect(ctx, "")
	if err != nil {
		return nil
	}
	if n := len(smi.Devices()); n > 0 {
		return map[string]int64{"gpu": int64(n)}
	}
	return nil
}
