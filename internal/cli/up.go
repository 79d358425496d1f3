package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/autoscale/aws"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/kube"
	"github.com/haul-dev/haul/internal/logarchive"
	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/runner"
	"github.com/haul-dev/haul/internal/server"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/taskhost"
	"github.com/haul-dev/haul/internal/websession"
)

// serverFlags are the flags of the commands that run a server.
type serverFlags struct {
	data        string
	databaseURL string
	blobURL     string
	maxWorkers  int
	localCap    string
	nodePrice   float64
	halfLife    time.Duration
	nsHalfLife  map[string]string
	// workerTimeout and leaseTTL tune failure detection (0: the runner's defaults).
	workerTimeout time.Duration
	leaseTTL      time.Duration
	// Who may call: OIDC, and each identity's mutation rate.
	oidc auth.OIDCConfig
	// The web UI's login with SSO (with --oidc-issuer).
	oidcRedirect, oidcSecretFile string
	mutationRate                 float64
	mutationBurst                int

	backend         string
	kubeClusters    string
	priceTable      string
	runnerURL       string
	taskhostImage   string
	workerImage     string
	podQPS          float64
	podBurst        int
	kubeInstance    string
	sharedClaim     string
	workerEnvSecret string
	// retainFinished (--retain-finished, parsed by parseRetention) and
	// history (--history) configure retention.
	retainFinished string
	history        string
	exportInterval time.Duration
	archiveDelay   time.Duration
	// webhookPrivate lets webhooks reach internal addresses.
	webhookPrivate bool
}

// parseRetention reads --retain-finished: a Go duration (720h) or a whole
// number of days (30d); 0 (or empty) keeps finished jobs forever.
func parseRetention(s string) (time.Duration, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("--retain-finished %q: want a number of days (30d), a duration (720h) or 0", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("--retain-finished %q: want a number of days (30d), a duration (720h) or 0", s)
	}
	return d, nil
}

// options turns the flags into server options.
func (f *serverFlags) options(listen string, log *slog.Logger) (server.Options, error) {
	o := server.Options{Listen: listen, DataDir: f.data, DatabaseURL: f.databaseURL, BlobURL: f.blobURL, MaxWorkers: f.maxWorkers, NodePricePerHour: f.nodePrice, Logger: log}
	if f.halfLife < 0 {
		return o, fmt.Errorf("--reuse-half-life %v: want a positive duration such as 10m", f.halfLife)
	}
	o.Runner.HalfLife = f.halfLife
	if f.localCap != "" {
		r, err := placement.ParseResources(f.localCap)
		if err != nil {
			return o, fmt.Errorf("--local-capacity: %w", err)
		}
		if r.MilliCPU <= 0 || r.Memory <= 0 {
			return o, fmt.Errorf("--local-capacity %q: name both cpu and memory, such as cpu=16,memory=64Gi", f.localCap)
		}
		o.LocalCapacity = r
	}
	if f.workerTimeout < 0 || f.leaseTTL < 0 {
		return o, fmt.Errorf("--worker-timeout %v, --lease-ttl %v: want positive durations such as 45s", f.workerTimeout, f.leaseTTL)
	}
	if f.leaseTTL > 0 && f.leaseTTL < time.Second {
		return o, fmt.Errorf("--lease-ttl %v: want at least 1s (the lease is renewed every fifth of it)", f.leaseTTL)
	}
	o.Runner.WorkerTimeout, o.Runner.LeaseTTL = f.workerTimeout, f.leaseTTL
	if f.mutationRate < 0 || f.mutationBurst < 0 {
		return o, fmt.Errorf("--mutation-rate %v, --mutation-burst %d: want positive numbers", f.mutationRate, f.mutationBurst)
	}
	o.MutationsPerSecond, o.MutationBurst = f.mutationRate, f.mutationBurst
	if f.oidc.Issuer != "" || f.oidc.Audience != "" {
		if f.oidc.Issuer == "" || f.oidc.Audience == "" {
			return o, fmt.Errorf("--oidc-issuer %q and --oidc-client-id %q go together", f.oidc.Issuer, f.oidc.Audience)
		}
		v, err := auth.NewOIDC(f.oidc, log)
		if err != nil {
			return o, fmt.Errorf("OIDC: %w", err)
		}
		o.OIDC = v
		o.WebLogin = &websession.OIDCLogin{Issuer: f.oidc.Issuer, ClientID: f.oidc.Audience, RedirectURL: f.oidcRedirect}
		if f.oidcSecretFile != "" {
			b, err := os.ReadFile(f.oidcSecretFile)
			if err != nil {
				return o, fmt.Errorf("--oidc-client-secret-file: %w", err)
			}
			o.WebLogin.ClientSecret = strings.TrimSpace(string(b))
		}
	} else if f.oidcRedirect != "" || f.oidcSecretFile != "" {
		return o, fmt.Errorf("--oidc-redirect-url and --oidc-client-secret-file need --oidc-issuer")
	}
	switch f.backend {
	case "local":
		if f.kubeClusters != "" || f.priceTable != "" {
			return o, fmt.Errorf("--kube-clusters and --price-table need --backend kube")
		}
	case "kube":
		if f.kubeClusters == "" {
			return o, fmt.Errorf("--backend kube needs --kube-clusters FILE (the clusters to run workers on; see docs/kubernetes.md)")
		}
		clusters, err := kube.LoadClusters(f.kubeClusters)
		if err != nil {
			return o, err
		}
		o.Kube = &kube.Config{Clusters: clusters, TaskhostImage: f.taskhostImage, DefaultImage: f.workerImage,
			PodCreateQPS: f.podQPS, PodCreateBurst: f.podBurst, WatchNodes: true,
			Instance: f.kubeInstance, SharedClaim: f.sharedClaim, WorkerEnvSecret: f.workerEnvSecret}
		if f.priceTable != "" {
			prices, err := aws.LoadPriceTable(f.priceTable)
			if err != nil {
				return o, fmt.Errorf("--price-table: %w", err)
			}
			o.Kube.Prices = prices
		}
	default:
		return o, fmt.Errorf("--backend %q: want local or kube", f.backend)
	}
	o.WorkerRunnerURL = f.runnerURL
	retain, err := parseRetention(f.retainFinished)
	if err != nil {
		return o, err
	}
	o.RetainFinished, o.HistoryURL = retain, f.history
	o.ExportInterval, o.ArchiveDelay = f.exportInterval, f.archiveDelay
	o.WebhookAllowPrivate = f.webhookPrivate
	for ns, v := range f.nsHalfLife {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return o, fmt.Errorf("--namespace-half-life %s=%s: want NAMESPACE=DURATION with a positive duration such as team-a=5m", ns, v)
		}
		if o.Runner.NamespaceHalfLife == nil {
			o.Runner.NamespaceHalfLife = map[string]time.Duration{}
		}
		o.Runner.NamespaceHalfLife[ns] = d
	}
	return o, nil
}

func (f *serverFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.data, "data", server.DefaultDataDir(), "data directory: SQLite database, logs, worker files (env HAUL_DATA)")
	cmd.Flags().StringVar(&f.databaseURL, "database-url", os.Getenv("HAUL_DATABASE_URL"), "PostgreSQL URL (postgres://...) instead of SQLite (env HAUL_DATABASE_URL)")
	cmd.Flags().StringVar(&f.blobURL, "blob", os.Getenv("HAUL_BLOB"), "object store for logs: s3://bucket/prefix?region=R[&endpoint=URL&path_style=true] (credentials from the AWS chain), or file:///abs/path; default a folder in --data (env HAUL_BLOB)")
	cmd.Flags().IntVar(&f.maxWorkers, "max-workers", 0, "most local workers at once (default: 2 per CPU, at least 4)")
	cmd.Flags().StringVar(&f.localCap, "local-capacity", "", "what local workers may hold together, for placement and quotas: cpu=16,memory=64Gi[,gpu=1] (default: max(CPUs, max-workers) cores, the machine's memory and GPUs)")
	cmd.Flags().Float64Var(&f.nodePrice, "node-price", 0, "what this machine costs in $/hour, for job cost estimates")
	cmd.Flags().DurationVar(&f.halfLife, "reuse-half-life", runner.DefaultHalfLife, "how fast worker reuse targeting forgets observed task run times and worker startups")
	cmd.Flags().StringToStringVar(&f.nsHalfLife, "namespace-half-life", nil, "the half-life for one namespace, NAMESPACE=DURATION (repeatable, e.g. team-a=5m)")
	cmd.Flags().StringVar(&f.oidc.Issuer, "oidc-issuer", "", "accept ID tokens of this OpenID Connect issuer (URL) as well as issued tokens")
	cmd.Flags().StringVar(&f.oidc.Audience, "oidc-client-id", "", "the client ID the issuer's ID tokens must be for (their aud; with --oidc-issuer)")
	cmd.Flags().StringVar(&f.oidc.UserClaim, "oidc-user-claim", "email", "the ID token claim that names the user (sub when it is missing or the email is unverified)")
	cmd.Flags().StringVar(&f.oidc.TeamsClaim, "oidc-teams-claim", "groups", "the ID token claim listing the user's teams: TEAM (member) or TEAM:viewer|member|admin")
	cmd.Flags().StringVar(&f.oidc.AdminGroup, "oidc-admin-group", "", "a value of the teams claim that makes the user a platform admin")
	cmd.Flags().StringVar(&f.oidcRedirect, "oidc-redirect-url", "", "the web UI's login callback registered with the issuer (default: https://HOST/ui/oidc/callback at the host the browser used)")
	cmd.Flags().StringVar(&f.oidcSecretFile, "oidc-client-secret-file", "", "a file holding the client secret, for an issuer that registered the web UI as a confidential client (default: a public client with PKCE)")
	cmd.Flags().Float64Var(&f.mutationRate, "mutation-rate", 0, "each identity's submits, cancels and adds per second, beyond its burst (default 20)")
	cmd.Flags().IntVar(&f.mutationBurst, "mutation-burst", 0, "each identity's mutating calls allowed at once above the rate (default 100)")
	cmd.Flags().DurationVar(&f.workerTimeout, "worker-timeout", 0, "how long a worker may go without polling before it is stopped and its attempts retried (default 45s)")
	cmd.Flags().DurationVar(&f.leaseTTL, "lease-ttl", 0, "how long a runner's shard leases in the store last unless renewed: other runners take over a dead runner's shards after this, and a store outage shorter than 5/6 of it keeps running work (default 8s)")
	cmd.Flags().StringVar(&f.backend, "backend", "local", "where workers run: local (processes on this machine) or kube (pods on the clusters of --kube-clusters)")
	cmd.Flags().StringVar(&f.kubeClusters, "kube-clusters", "", "clusters file for --backend kube: kubeconfig and context (or in_cluster), namespace, enabled; SIGHUP re-reads enabled")
	cmd.Flags().StringVar(&f.runnerURL, "runner-url", "", "the address workers reach this server at (default: the listen address; on Kubernetes a Service such as http://haul-runner.haul.svc:7070)")
	cmd.Flags().StringVar(&f.taskhostImage, "taskhost-image", "ghcr.io/haul-dev/taskhost:latest", "image holding the static taskhost, installed into worker pods at start (--backend kube)")
	cmd.Flags().StringVar(&f.workerImage, "worker-image", kube.DefaultImage, "image tasks run in when the job names none (--backend kube)")
	cmd.Flags().StringVar(&f.priceTable, "price-table", "", "instance type prices ($/hour; the autoscaler's price table: .csv, .yaml or .json) for the cost of worker pods on nodes without a haul.dev/price-per-hour annotation (--backend kube)")
	cmd.Flags().Float64Var(&f.podQPS, "pod-create-qps", 20, "most worker pods created per second, per cluster (--backend kube)")
	cmd.Flags().IntVar(&f.podBurst, "pod-create-burst", 10, "pods that may be created at once above the rate (--backend kube)")
	cmd.Flags().StringVar(&f.kubeInstance, "kube-instance", "haul", "this deployment's name on its clusters (label haul.dev/backend): unique per haul deployment sharing a cluster; a restarted server deletes the worker pods its predecessor left")
	cmd.Flags().StringVar(&f.retainFinished, "retain-finished", "0", "how long finished jobs stay in the live store: 30d, 720h; 0 keeps them forever. Older jobs leave it once haul history export has exported them; asking for one then answers from its archive row and says where its history is (--history)")
	cmd.Flags().StringVar(&f.history, "history", os.Getenv(HistoryEnv), "where the history is exported (an object store URL or folder, as haul query --from takes it): a server that runs the runner exports ended jobs there every --export-interval, and names it to callers asking for retired jobs (env "+HistoryEnv+")")
	cmd.Flags().DurationVar(&f.exportInterval, "export-interval", 5*time.Minute, "how often ended jobs are exported to --history")
	cmd.Flags().BoolVar(&f.webhookPrivate, "webhook-allow-private", false, "let jobs' webhooks reach internal addresses (loopback, private, link-local): only when every team's specs are trusted, since a webhook is called from inside the deployment")
	cmd.Flags().DurationVar(&f.archiveDelay, "log-archive-delay", logarchive.DefaultDelay, "how long after a job ends its logs are copied to its team's destination and it may be exported (its workers' last logs, and the runner's copies of logs whose workers died, arrive meanwhile)")
	cmd.Flags().StringVar(&f.workerEnvSecret, "worker-env-secret", "", "a Secret in the workers' namespace whose keys every worker pod gets as environment variables, e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for an s3:// --blob where pods have no IAM role (--backend kube)")
	cmd.Flags().StringVar(&f.sharedClaim, "worker-shared-claim", "", "a ReadWriteMany PersistentVolumeClaim every worker pod mounts at the data directory's blobs/ (the filesystem log store; --backend kube)")
}

func (a *app) upCmd() *cobra.Command {
	var f serverFlags
	var listen, tlsCert, tlsKey string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a persistent haul on this machine: gateway, runner and local workers",
		Long: `Run haul on this machine until interrupted: the API (gRPC, gRPC-Web and JSON
over HTTP on one port), the runner and local worker processes, on SQLite in
the data directory, or on PostgreSQL with --database-url. Jobs that were
running when a previous server stopped are resumed; attempts that were
running are retried.

Every call needs a token. At its first start the server makes a platform
admin token and writes it to <data dir>/admin-token, readable by this unix
user only; this user's haul commands find it by themselves. Others need a
token from 'haul token create' (or an OIDC ID token).

By default the server listens on 127.0.0.1 only. Listening beyond loopback
needs TLS: --tls-cert and --tls-key (clients then trust the certificate
with --ca or HAUL_CA unless a public CA signed it); without them the
server refuses to start.`,
		Example: "  haul up\n  haul up --listen 0.0.0.0:7070 --tls-cert server.pem --tls-key server-key.pem --database-url postgres://haul@db/haul",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.serve(cmd, &f, serveFlags{listen: listen, tlsCert: tlsCert, tlsKey: tlsKey})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:7070", "address to serve on; beyond loopback (such as 0.0.0.0:7070) only with TLS: --tls-cert and --tls-key")
	cmd.Flags().StringVar(&tlsCert, "tls-cert", "", "serve HTTPS (HTTP/2) with this PEM certificate chain; local workers trust it")
	cmd.Flags().StringVar(&tlsKey, "tls-key", "", "the PEM private key of --tls-cert")
	return cmd
}

// serveFlags are the flags of a serving command beyond serverFlags.
type serveFlags struct {
	listen, tlsCert, tlsKey string
	role                    server.Role
	advertise, locator      string
}

// serve runs a server until interrupted: `haul up`, `haul gateway`,
// `haul runner`.
func (a *app) serve(cmd *cobra.Command, f *serverFlags, sf serveFlags) error {
	ctx := cmd.Context()
	log := a.logger()
	o, err := f.options(sf.listen, log)
	if err != nil {
		return usageError{err}
	}
	if (sf.tlsCert == "") != (sf.tlsKey == "") {
		return usageError{fmt.Errorf("--tls-cert and --tls-key go together (got --tls-cert %q, --tls-key %q)", sf.tlsCert, sf.tlsKey)}
	}
	o.TLSCert, o.TLSKey = sf.tlsCert, sf.tlsKey
	o.Role, o.AdvertiseURL, o.LocatorURL = sf.role, sf.advertise, sf.locator
	s, err := server.Open(ctx, o)
	if err != nil {
		return err
	}
	if err := s.Start(context.WithoutCancel(ctx)); err != nil {
		s.Stop()
		var held *runner.LeaseHeldError
		if errors.As(err, &held) {
			return fmt.Errorf("another haul server at %s already runs the jobs of this store (data %s): stop it, or use it with --server %s", held.Lease.Address, f.data, held.Lease.Address)
		}
		return err
	}
	switch sf.role {
	case server.RoleGateway:
		fmt.Fprintf(a.stdout, "haul gateway is up at %s (admin token in %s)\n", s.URL(), filepath.Join(f.data, server.AdminTokenFile))
	case server.RoleRunner:
		fmt.Fprintf(a.stdout, "haul runner is up at %s\n", s.URL())
	default:
		fmt.Fprintf(a.stdout, "haul is up at %s (data in %s; admin token in %s)\n", s.URL(), f.data, filepath.Join(f.data, server.AdminTokenFile))
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if s.Kube() != nil {
		// A mounted ConfigMap changes under us: apply it when it does.
		go watchClusters(ctx, log, s.Kube(), s.Store(), f.kubeClusters, 5*time.Second)
	}
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			s.Stop()
			return nil
		case err := <-s.Done():
			// It cannot go on by itself: exit non-zero, naming why, so
			// that a supervisor restarts it.
			log.Error("server stopped", "err", err)
			s.Stop()
			return fmt.Errorf("server stopped: %w", err)
		case <-hup:
			reloadClusters(log, s.Kube(), s.Store(), f.kubeClusters)
		}
	}
}

func (a *app) runCmd() *cobra.Command {
	var f serverFlags
	var detach, embedded bool
	var sets []string
	cmd := &cobra.Command{
		Use:   "run FILE",
		Short: "Run a job: submit it, show progress, exit 0 if and only if it succeeded",
		Long: `Run a job spec. If a haul server answers at --server (or $HAUL_SERVER), the
job is submitted there; otherwise haul starts an embedded server (SQLite and
logs in the data directory, local workers) for the job's lifetime. When
--server, $HAUL_SERVER or a profile names a server, that server must answer:
--embedded runs the job embedded anyway. After the job, read commands (job
get/list, task list/get/logs) read the data directory directly while no
server runs.

The job ID is printed first. Progress goes to stderr, the summary to stdout.
Ctrl-C detaches from a remote server's job (it keeps running); on an embedded
server it cancels the job (press again to quit at once).`,
		Example: "  haul run examples/hello-dag.yaml\n  haul run --detach big.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			params, err := parseSets(sets)
			if err != nil {
				return err
			}
			data, name, err := a.readSpec(args[0])
			if err != nil {
				return err
			}
			ctx := withParams(cmd.Context(), params)
			a.dataDir = f.data // where a local server keeps its admin token
			if embedded {
				if detach {
					return usageError{errors.New("--embedded and --detach: an embedded server lives as long as the command")}
				}
				return a.runEmbedded(ctx, data, name, f)
			}
			if serverFlagSet(cmd) || server.Alive(ctx, a.server) {
				err := a.runRemote(ctx, data, name, detach)
				if serverFlagSet(cmd) && connect.CodeOf(err) == connect.CodeUnavailable && !strings.HasPrefix(err.(*connect.Error).Message(), "store unavailable") {
					return a.noChosenServer(cmd, err)
				}
				return err
			}
			if detach {
				return fmt.Errorf("--detach needs a running server: start one with `haul up` (none answers at %s)", a.server)
			}
			return a.runEmbedded(ctx, data, name, f)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&detach, "detach", false, "submit and return at once (needs a running server)")
	cmd.Flags().BoolVar(&embedded, "embedded", false, "run the job in an embedded server on this machine even when --server, HAUL_SERVER or a profile names one")
	addSetFlag(cmd, &sets)
	return cmd
}

// noChosenServer is haul run's error when the server that --server,
// HAUL_SERVER or a profile chose does not answer: it says how to run the
// job embedded instead.
func (a *app) noChosenServer(cmd *cobra.Command, err error) error {
	by := "--server"
	switch {
	case cmd.Flags().Changed("server") && a.serverFromProfile:
		by = "profile " + a.profileUsed
	case !cmd.Flags().Changed("server") && os.Getenv("HAUL_SERVER") != "":
		by = "HAUL_SERVER"
	}
	how := "drop --server"
	switch by {
	case "HAUL_SERVER":
		how = "unset HAUL_SERVER"
	case "--server":
	default:
		how = "use a profile whose server runs (haul profile use NAME)"
	}
	return fmt.Errorf("no haul server answers at %s (chosen by %s): %s.\nTo run the job on this machine in an embedded server instead: %s, or pass --embedded (haul run --embedded FILE)",
		a.server, by, strings.TrimPrefix(describe(err), "cannot reach the haul server: "), how)
}

func (a *app) runRemote(ctx context.Context, data []byte, name string, detach bool) error {
	c := a.client()
	resp, err := submit(ctx, c, data, name)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, resp.JobId)
	if detach {
		return nil
	}
	err = a.watch(ctx, c, resp.JobId, time.Now())
	if errors.Is(err, errInterrupted) {
		fmt.Fprintf(a.stderr, "detached; the job keeps running: haul job watch %s\n", resp.JobId)
		return exitError{130}
	}
	return err
}

func (a *app) runEmbedded(ctx context.Context, data []byte, name string, f serverFlags) error {
	// The embedded server logs to a file: the terminal shows progress.
	if err := os.MkdirAll(f.data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	logPath := filepath.Join(f.data, "server.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("server log: %w", err)
	}
	defer logf.Close()
	if err := logf.Chmod(0o600); err != nil {
		return fmt.Errorf("server log: %w", err)
	}
	log := slog.New(slog.NewTextHandler(logf, nil))
	o, err := f.options("127.0.0.1:0", log)
	if err != nil {
		return usageError{err}
	}
	s, err := server.Open(ctx, o)
	if err != nil {
		return fmt.Errorf("start embedded haul: %w", err)
	}
	defer s.Stop()
	if err := s.Start(context.WithoutCancel(ctx)); err != nil {
		var held *runner.LeaseHeldError
		if errors.As(err, &held) {
			// A server already runs jobs from this data directory, on
			// another address: use it rather than a second runner.
			s.Stop()
			fmt.Fprintf(a.stderr, "using the haul server at %s, which runs jobs from %s\n", held.Lease.Address, f.data)
			a.server, a.dataDir = held.Lease.Address, f.data
			return a.runRemote(ctx, data, name, false)
		}
		return fmt.Errorf("start embedded haul: %w", err)
	}
	a.server = s.URL()
	// This process made the server: its admin token is the credential
	// (also when a token from the environment names another server's).
	a.dataDir, a.token = f.data, s.AdminToken()
	c := a.client()
	resp, err := submit(ctx, c, data, name)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, resp.JobId)
	fmt.Fprintf(a.stderr, "embedded haul at %s (data in %s; log %s)\n", s.URL(), f.data, logPath)
	start := time.Now()
	err = a.watch(ctx, c, resp.JobId, start)
	if !errors.Is(err, errInterrupted) {
		return err
	}
	// Ctrl-C: cancel the job and wait for it; a second Ctrl-C quits at once.
	fmt.Fprintf(a.stderr, "cancelling job %s (Ctrl-C again to quit now)\n", resp.JobId)
	again, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := c.CancelJob(again, connect.NewRequest(&apiv1.CancelJobRequest{JobId: resp.JobId})); err != nil {
		return err
	}
	err = a.watch(again, c, resp.JobId, start)
	if errors.Is(err, errInterrupted) {
		return exitError{130}
	}
	return err
}

func (a *app) taskhostCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "taskhost",
		Short: "Run a worker's task host (started by haul's worker backends, not by hand)",
		Long: `The task host runs inside every worker: it polls its runner for tasks, runs
them, ships their logs and reports results. Worker backends start it; the
same program also ships as the small static binary haul-taskhost.`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := taskhost.Main(cmd.Context(), args, os.Getenv, a.stderr); code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
}

// reloadClusters re-reads the clusters file and enables or disables each
// cluster the backend knows, in the cluster's record in the store, which
// placement follows on every runner: a disabled cluster gets no new
// workers, its running ones finish. Adding or removing
// clusters needs a restart.
func reloadClusters(log *slog.Logger, kb *kube.Backend, st store.Store, path string) {
	if kb == nil {
		log.Info("SIGHUP ignored: workers run locally")
		return
	}
	clusters, err := kube.LoadClusters(path)
	if err != nil {
		log.Error("reload clusters file; nothing changed", "file", path, "err", err)
		return
	}
	known := map[string]bool{}
	for _, c := range kb.Clusters() {
		known[c.Name] = true
	}
	for _, c := range clusters {
		// The store's record is what placement follows on every runner;
		// the backend's own enabled flag is not changed, since it would
		// move workers not yet created away from the cluster placement
		// reserved for them.
		if !known[c.Name] {
			log.Warn("reload clusters file: a new cluster needs a restart", "cluster", c.Name)
			continue
		}
		state := placement.Enabled
		if !c.Enabled {
			state = placement.Disabled
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := st.SetClusterState(ctx, c.Name, state)
		cancel()
		if err != nil {
			log.Error("reload clusters file: set the cluster's state in the store", "cluster", c.Name, "state", state, "err", err)
			continue
		}
		log.Info("cluster", "name", c.Name, "enabled", c.Enabled)
	}
}

// watchClusters re-reads the clusters file every interval and applies it
// when its content changed (a ConfigMap edit reaches a pod's mounted file
// within about a minute).
func watchClusters(ctx context.Context, log *slog.Logger, kb *kube.Backend, st store.Store, path string, every time.Duration) {
	last, _ := os.ReadFile(path)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := os.ReadFile(path)
		if err != nil || bytes.Equal(data, last) {
			continue
		}
		last = data
		log.Info("clusters file changed", "file", path)
		reloadClusters(log, kb, st, path)
	}
}
