package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/haul-dev/haul/internal/autoscale"
	"github.com/haul-dev/haul/internal/autoscale/aws"
	"github.com/haul-dev/haul/internal/autoscale/kube"
	"github.com/haul-dev/haul/internal/autoscale/sim"
)

// DefaultAutoscaler is where `haul cluster status` looks by default.
const DefaultAutoscaler = "http://127.0.0.1:7080"

func (a *app) autoscalerCmd() *cobra.Command {
	var configPath, listen, kubeconfig, kubeContext string
	cmd := &cobra.Command{
		Use:   "autoscaler",
		Short: "Run the cost-aware cluster autoscaler for a Kubernetes cluster",
		Long: `Run haul's cluster autoscaler: every interval it reads pending worker pods and
nodes (through informers), plans launches and removals within the global and
per-config limits (max nodes, max $/hour, max added and removed per
interval), launches through the provider (aws, or sim: Node objects), marks
configs that came back short as capacity-limited, and removes nodes idle past
the grace period. Status at --listen: /status (JSON, what 'haul cluster
status' shows), /metrics. The configuration file is described in
docs/autoscaler.md.`,
		Example: "  haul autoscaler --config autoscaler.yaml --kubeconfig ~/.kube/config",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log := a.logger()
			cfg, fc, err := autoscale.LoadConfig(configPath)
			if err != nil {
				return err
			}
			if kubeconfig == "" {
				kubeconfig = fc.Kubernetes.Kubeconfig
			}
			if kubeContext == "" {
				kubeContext = fc.Kubernetes.Context
			}
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			rules.ExplicitPath = kubeconfig
			rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
			if err != nil {
				return fmt.Errorf("kubernetes client config: %w", err)
			}
			client, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return fmt.Errorf("kubernetes client: %w", err)
			}
			var provider autoscale.Provider
			switch fc.Provider.Type {
			case "aws":
				ac := aws.Config{Region: fc.Provider.AWS.Region, Endpoint: fc.Provider.AWS.Endpoint,
					LaunchTemplates: fc.Provider.AWS.LaunchTemplates, DefaultLaunchTemplate: fc.Provider.AWS.DefaultLaunchTemplate,
					Tags: fc.Provider.AWS.Tags}
				if fc.Provider.AWS.PriceTable != "" {
					if ac.OnDemandPrices, err = aws.LoadPriceTable(fc.Provider.AWS.PriceTable); err != nil {
						return err
					}
				}
				if provider, err = aws.New(ctx, ac); err != nil {
					return err
				}
			case "sim":
				s := &kube.SimNodes{Client: client, ConfigLabel: fc.Kubernetes.ConfigLabel}
				if fc.Provider.Sim != nil && fc.Provider.Sim.BootDelay != "" {
					s.BootDelay, _ = time.ParseDuration(fc.Provider.Sim.BootDelay) // checked by LoadConfig
				}
				provider = s
			}
			source, err := kube.NewSource(client, fc.Kubernetes.WorkerSelector, fc.Kubernetes.ConfigLabel, cfg.Configs)
			if err != nil {
				return err
			}
			if err := source.Start(ctx); err != nil {
				return err
			}
			ctl, err := kube.NewController(cfg, provider, source, log, nil)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			srv := &http.Server{Handler: ctl.Handler(), ReadHeaderTimeout: 10 * time.Second}
			go srv.Serve(ln)
			defer srv.Close()
			fmt.Fprintf(a.stdout, "haul autoscaler: %d launch configs, status at http://%s/status\n", len(cfg.Configs), ln.Addr())
			ctl.Run(ctx)
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "autoscaler.yaml", "autoscaler configuration file")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:7080", "address of /status and /metrics")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: the config's kubernetes.kubeconfig, $KUBECONFIG, ~/.kube/config or in-cluster)")
	cmd.Flags().StringVar(&kubeContext, "context", "", "kubeconfig context")
	return cmd
}

func (a *app) clusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Inspect clusters and their autoscaler"}
	var url string
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the autoscaler's last decision: nodes per config, spend, shortfall, capacity-limited configs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(url, "/")+"/status", nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("cannot reach the autoscaler at %s (is `haul autoscaler` running? set --autoscaler): %w", url, err)
			}
			defer resp.Body.Close()
			var st kube.Status
			if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
				return fmt.Errorf("autoscaler status: %w", err)
			}
			if a.output == "json" {
				return a.printJSON(st)
			}
			return printClusterStatus(a, st)
		},
	}
	status.Flags().StringVar(&url, "autoscaler", DefaultAutoscaler, "autoscaler status address")
	cmd.AddCommand(status)
	return cmd
}

func printClusterStatus(a *app, st kube.Status) error {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "as of:\t%s\n", st.Time.Local().Format(time.DateTime))
	fmt.Fprintf(tw, "pending worker pods:\t%d\n", st.Pending)
	capSpend := "no cap"
	if st.MaxSpendPerHour > 0 {
		capSpend = fmt.Sprintf("cap $%.2f/h", st.MaxSpendPerHour)
	}
	fmt.Fprintf(tw, "spend:\t$%.2f/h (%s)\n", st.SpendPerHour, capSpend)
	if len(st.Shortfall) == 0 {
		fmt.Fprintf(tw, "shortfall:\tnone\n")
	}
	for _, s := range st.Shortfall {
		fmt.Fprintf(tw, "shortfall:\t%d pods: %s\n", s.Pods, s.Reason)
	}
	if len(st.CapacityLimited) > 0 {
		fmt.Fprintf(tw, "capacity-limited:\t%s\n", strings.Join(st.CapacityLimited, ", "))
	}
	for _, e := range st.Errors {
		fmt.Fprintf(tw, "error:\t%s\n", e)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	configs := make([]string, 0, len(st.Nodes))
	for k := range st.Nodes {
		configs = append(configs, k)
	}
	for k := range st.InFlight {
		if _, ok := st.Nodes[k]; !ok {
			configs = append(configs, k)
		}
	}
	sort.Strings(configs)
	fmt.Fprintln(a.stdout)
	tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONFIG\tREADY\tNOT READY\tBUSY\tLAUNCHING")
	for _, k := range configs {
		n := st.Nodes[k]
		name := k
		if name == "" {
			name = "(unknown config)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", name, n.Ready, n.NotReady, n.Busy, st.InFlight[k])
	}
	return tw.Flush()
}

func (a *app) simCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "sim", Short: "Run simulations of haul's policies"}
	var scenario string
	var seed int64
	var duration time.Duration
	var maxSpend float64
	auto := &cobra.Command{
		Use:   "autoscale",
		Short: "Simulate a week of a cloud under haul's autoscaler and a baseline, side by side",
		Long: `Run the real autoscaler decision core against a discrete-event cloud (node
boot delays, spot interruptions, capacity shortages, spot price changes) in
simulated time, next to a baseline modelled on the open-source cluster
autoscaler (one group per instance type, retrying an unavailable group, no
spend cap), and print total cost, worker pending time p50/p99, nodes
launched and spend-cap violations for each. Deterministic for a seed.`,
		Example: "  haul sim autoscale --scenario spike --seed 1\n  haul sim autoscale --scenario diurnal --seed 7 --duration 72h -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch scenario {
			case "spike", "diurnal", "steady":
			default:
				return usageError{fmt.Errorf("--scenario %q: want spike, diurnal or steady", scenario)}
			}
			if maxSpend < 0 {
				return usageError{errors.New("--max-spend must not be negative")}
			}
			if duration <= 0 {
				return usageError{errors.New("--duration must be positive")}
			}
			start := time.Now()
			r, err := sim.CompareWith(scenario, seed, duration, maxSpend)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(r)
			}
			fmt.Fprint(a.stdout, r.Table())
			fmt.Fprintf(a.stderr, "simulated %s in %s\n", duration, fmtDuration(time.Since(start)))
			return nil
		},
	}
	auto.Flags().StringVar(&scenario, "scenario", "spike", "workload: spike, diurnal or steady")
	auto.Flags().Int64Var(&seed, "seed", 1, "random seed (same seed, same result)")
	auto.Flags().DurationVar(&duration, "duration", 7*24*time.Hour, "simulated time")
	auto.Flags().Float64Var(&maxSpend, "max-spend", 0, "global spend cap in $/hour for both policies' reports (default: the catalogue's $900/h; haul keeps to it, the baseline has none)")
	cmd.AddCommand(auto)
	cmd.AddCommand(a.simReuseCmd(), a.simTiersCmd())
	cmd.AddCommand(a.simPlacementCmd())
	return cmd
}
