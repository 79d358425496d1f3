package cli

import (
	"github.com/spf13/cobra"

	"github.com/haul-dev/haul/internal/server"
)

// gatewayCmd runs the API alone: `haul gateway`.
func (a *app) gatewayCmd() *cobra.Command {
	var f serverFlags
	var sf serveFlags
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run a stateless API gateway of a multi-process haul (PostgreSQL)",
		Long: `Run the API only: JobService and AdminService (gRPC, gRPC-Web and JSON over
HTTP on one port), the workers' Locate call, /healthz and /metrics. A gateway
holds no job state: run any number behind a load balancer. It writes jobs and
cancels to the store, where the runners find them, and sends tasks added to a
running job to the runner that owns the job's shard.

All gateways and runners of a deployment share one PostgreSQL database
(--database-url) and one object store; the first process makes the
deployment's key in the store. See docs/architecture.md.`,
		Example: "  haul gateway --database-url postgres://haul@db/haul --listen 0.0.0.0:7070 --tls-cert gw.pem --tls-key gw-key.pem",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sf.role = server.RoleGateway
			return a.serve(cmd, &f, sf)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&sf.listen, "listen", "127.0.0.1:7070", "address to serve on; beyond loopback only with TLS: --tls-cert and --tls-key")
	cmd.Flags().StringVar(&sf.tlsCert, "tls-cert", "", "serve HTTPS (HTTP/2) with this PEM certificate chain")
	cmd.Flags().StringVar(&sf.tlsKey, "tls-key", "", "the PEM private key of --tls-cert")
	return cmd
}

// runnerCmd runs a runner alone: `haul runner`.
func (a *app) runnerCmd() *cobra.Command {
	var f serverFlags
	var sf serveFlags
	cmd := &cobra.Command{
		Use:   "runner",
		Short: "Run a runner of a multi-process haul: owns shards of the jobs, runs their workers",
		Long: `Run a runner: it joins the store's runner group, takes its share of the 32
job shards (leases in the store, fenced by epoch), loads their jobs, starts
workers (local processes, or pods with --backend kube) and answers their
polls. Runners spread the shards evenly among themselves; when one dies,
the others take its shards once its leases expire (--lease-ttl, default 8s)
and adopt its workers, which find them through --locator.

--advertise is where workers and gateways reach this runner (default: the
listen address); --locator is the gateways' address, where workers ask for
their job's runner after a failover (default: this runner).`,
		Example: "  haul runner --database-url postgres://haul@db/haul --listen 0.0.0.0:7071 --advertise https://runner-0.haul-runner:7071 --locator https://haul-gateway:7070",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sf.role = server.RoleRunner
			return a.serve(cmd, &f, sf)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&sf.listen, "listen", "127.0.0.1:7071", "address to serve workers and gateways on; beyond loopback only with TLS: --tls-cert and --tls-key")
	cmd.Flags().StringVar(&sf.tlsCert, "tls-cert", "", "serve HTTPS (HTTP/2) with this PEM certificate chain; local workers trust it")
	cmd.Flags().StringVar(&sf.tlsKey, "tls-key", "", "the PEM private key of --tls-cert")
	cmd.Flags().StringVar(&sf.advertise, "advertise", "", "the URL workers and gateways reach this runner at (default: the listen address)")
	cmd.Flags().StringVar(&sf.locator, "locator", "", "the gateways' URL: where workers ask for their job's runner after a failover, and tasks reach the API (default: this runner)")
	return cmd
}
