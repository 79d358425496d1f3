package cli

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/placement"
)

// withClusterRecords adds the commands on the store's cluster records
// (list, register, enable, disable, drain, delete) to the cluster
// command, beside the autoscaler's status.
func (a *app) withClusterRecords(cmd *cobra.Command) *cobra.Command {
	cmd.Short = "Register and manage the clusters workers run in; inspect their autoscaler"
	cmd.Long = `A cluster record says what haul's workers may hold in a cluster (CPU,
memory, GPUs by type), its node labels, its pod-creation budget, its prices,
and whether new workers may start there: enabled, disabled (none start; the
ones there run on) or draining (none start; the ones there finish their
current task and exit). Any caller may list clusters; registering, changing
and deleting them is for platform admins. How to reach a cluster (its
kubeconfig) stays in the runner's clusters file, never in the store.`
	cmd.AddCommand(a.clusterListCmd(), a.clusterRegisterCmd(), a.clusterDeleteCmd())
	for _, s := range []struct{ verb, state, short string }{
		{"enable", "enabled", "Let new workers start in a cluster"},
		{"disable", "disabled", "Start no new workers in a cluster; the ones there run on"},
		{"drain", "draining", "Start no new workers in a cluster, and have the ones there finish their current task and exit"},
	} {
		cmd.AddCommand(a.clusterStateCmd(s.verb, s.state, s.short))
	}
	return cmd
}

func (a *app) clusterListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List clusters: state, capacity, what is held there now, prices",
		Example: "  haul cluster list\n  haul cluster list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := a.adminClient().ListClusters(cmd.Context(), connect.NewRequest(&apiv1.ListClustersRequest{}))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(resp.Msg)
			}
			if len(resp.Msg.Clusters) == 0 && len(resp.Msg.Unregistered) == 0 {
				fmt.Fprintln(a.stdout, "no clusters registered (haul cluster register NAME --cpu N --memory M)")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATE\tCPU\tMEMORY\tGPU\tWORKERS\tPODS/S\tPRICE/H\tLABELS")
			for _, cs := range resp.Msg.Clusters {
				c := cs.Cluster
				capacity, held := resourcesFromAPI(c.Capacity), resourcesFromAPI(cs.Held)
				workers := strconv.FormatInt(cs.Workers, 10)
				if cs.BorrowedWorkers > 0 {
					workers += fmt.Sprintf(" (%d borrowed)", cs.BorrowedWorkers)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.State,
					heldOf(placement.ResCPU, held, capacity), heldOf(placement.ResMemory, held, capacity), gpuHeld(held, capacity),
					workers, podsPerSecond(c.PodsPerSecond), prices(c), labels(c.Labels))
			}
			for _, cs := range resp.Msg.Unregistered {
				held := resourcesFromAPI(cs.Held)
				fmt.Fprintf(tw, "%s\t(no record)\t%s\t%s\t%s\t%d\t-\t-\t-\n", cs.Cluster.GetName(),
					amount(placement.ResCPU, held.MilliCPU), amount(placement.ResMemory, held.Memory), gpuHeld(held, placement.Resources{}), cs.Workers)
			}
			return tw.Flush()
		},
	}
}

// heldOf formats "held/capacity" of one resource.
func heldOf(name string, held, capacity placement.Resources) string {
	return amount(name, held.Get(name)) + "/" + amount(name, capacity.Get(name))
}

// amount formats an amount of a resource for people: CPU in cores, memory
// with a binary suffix (rounded to a tenth when not whole: 3.7Gi), GPUs as
// a count. -o json has the exact figures.
func amount(name string, n int64) string {
	if name == placement.ResMemory && n > 0 {
		return bytesIEC(n)
	}
	return placement.FormatAmount(name, n)
}

// resString formats resources as "cpu=2 memory=4Gi gpu/a100=1" ("0" for
// none), with amount's units.
func resString(r placement.Resources) string {
	var parts []string
	for _, name := range r.Names() {
		parts = append(parts, name+"="+amount(name, r.Get(name)))
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, " ")
}

// gpuHeld formats "a100 1/8, t4 0/4" over the GPU types offered or held.
func gpuHeld(held, capacity placement.Resources) string {
	types := map[string]bool{}
	for t := range capacity.GPU {
		types[t] = true
	}
	for t := range held.GPU {
		types[t] = true
	}
	if len(types) == 0 {
		return "-"
	}
	var parts []string
	for _, t := range slices.Sorted(maps.Keys(types)) {
		parts = append(parts, fmt.Sprintf("%s %d/%d", t, held.GPU[t], capacity.GPU[t]))
	}
	return strings.Join(parts, ", ")
}

func podsPerSecond(v float64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// prices formats a cluster's prices: "cpu $0.04, GiB $0.005, a100 $2.5".
func prices(c *apiv1.Cluster) string {
	var parts []string
	if c.PricePerCpuHour != 0 {
		parts = append(parts, "cpu $"+strconv.FormatFloat(c.PricePerCpuHour, 'f', -1, 64))
	}
	if c.PricePerGibHour != 0 {
		parts = append(parts, "GiB $"+strconv.FormatFloat(c.PricePerGibHour, 'f', -1, 64))
	}
	for _, t := range slices.Sorted(maps.Keys(c.PricePerGpuHour)) {
		parts = append(parts, t+" $"+strconv.FormatFloat(c.PricePerGpuHour[t], 'f', -1, 64))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// labels formats node labels: "zone=a|b gpu-type=a100" ("any" when unknown).
func labels(ls map[string]*apiv1.LabelValues) string {
	if len(ls) == 0 {
		return "any"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(ls)) {
		parts = append(parts, k+"="+strings.Join(ls[k].GetValues(), "|"))
	}
	return strings.Join(parts, " ")
}

// resourcesFromAPI converts the API's resources (nil: none).
func resourcesFromAPI(r *apiv1.Resources) placement.Resources {
	if r == nil {
		return placement.Resources{}
	}
	return placement.Resources{MilliCPU: r.MilliCpu, Memory: r.MemoryBytes, GPU: r.Gpu}
}

// resourcesToAPI converts resources for a request.
func resourcesToAPI(r placement.Resources) *apiv1.Resources {
	p := &apiv1.Resources{MilliCpu: r.MilliCPU, MemoryBytes: r.Memory}
	if len(r.GPU) > 0 {
		p.Gpu = maps.Clone(r.GPU)
	}
	return p
}

func (a *app) clusterRegisterCmd() *cobra.Command {
	var cpu, memory, state string
	var gpus, labelFlags, gpuPrices []string
	var pps, priceCPU, priceGiB float64
	cmd := &cobra.Command{
		Use:   "register NAME --cpu N --memory M [flags]",
		Short: "Register a cluster, or replace its record (platform admins)",
		Long: `Registers a cluster, or replaces the record of one registered before. The
capacity is what haul's workers may hold there in total; its GPU types are the
ones the cluster offers. Without --state, a cluster registered before keeps
its state and a new one is enabled.`,
		Example: "  haul cluster register east --cpu 64 --memory 256Gi --gpu a100=8 --pods-per-second 20 \\\n" +
			"      --label zone=us-east-1a,us-east-1b --price-cpu-hour 0.04 --price-gib-hour 0.005 --price-gpu-hour a100=2.5",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := clusterFromFlags(args[0], cpu, memory, gpus, labelFlags, gpuPrices)
			if err != nil {
				return usageError{err}
			}
			c.PodsPerSecond, c.PricePerCpuHour, c.PricePerGibHour = pps, priceCPU, priceGiB
			client := a.adminClient()
			kept := ""
			if cmd.Flags().Changed("state") {
				s, err := placement.ParseClusterState(state)
				if err != nil {
					return usageError{fmt.Errorf("--state: %w", err)}
				}
				c.State = string(s)
			} else {
				// Replacing a record keeps its state: registering again to
				// change a price must not re-enable a drained cluster.
				list, err := client.ListClusters(cmd.Context(), connect.NewRequest(&apiv1.ListClustersRequest{}))
				if err != nil {
					return err
				}
				c.State = string(placement.Enabled)
				for _, cs := range list.Msg.Clusters {
					if cs.Cluster.GetName() == c.Name {
						c.State, kept = cs.Cluster.State, " (state kept)"
					}
				}
			}
			resp, err := client.PutCluster(cmd.Context(), connect.NewRequest(&apiv1.PutClusterRequest{Cluster: c}))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(resp.Msg.Cluster)
			}
			r := resp.Msg.Cluster
			fmt.Fprintf(a.stdout, "cluster %s registered: %s%s, capacity %s\n", r.Name, r.State, kept, resString(resourcesFromAPI(r.Capacity)))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cpu, "cpu", "", "CPU capacity in cores (64, 0.5) or thousandths (500m); required")
	f.StringVar(&memory, "memory", "", "memory capacity: bytes, or with Ki, Mi, Gi, Ti, K, M, G, T (256Gi); required")
	f.StringArrayVar(&gpus, "gpu", nil, "GPUs offered, TYPE=COUNT (a100=8); repeat for each type")
	f.Float64Var(&pps, "pods-per-second", 0, "worker creations a second the cluster's API server is budgeted for")
	f.StringArrayVar(&labelFlags, "label", nil, "node label values present in the cluster, KEY=V1,V2 (for tiers' node selectors); repeat per key; none: any selector matches")
	f.Float64Var(&priceCPU, "price-cpu-hour", 0, "USD per core-hour")
	f.Float64Var(&priceGiB, "price-gib-hour", 0, "USD per GiB-hour of memory")
	f.StringArrayVar(&gpuPrices, "price-gpu-hour", nil, "USD per GPU-hour of a type, TYPE=PRICE (a100=2.5); repeat per type")
	f.StringVar(&state, "state", "", "enabled, disabled or draining (default: kept when registered before, else enabled)")
	return cmd
}

// clusterFromFlags reads register's flags; errors name the flag.
func clusterFromFlags(name, cpu, memory string, gpus, labelFlags, gpuPrices []string) (*apiv1.Cluster, error) {
	if cpu == "" {
		return nil, fmt.Errorf("--cpu: required (the cores haul's workers may hold there: 64)")
	}
	if memory == "" {
		return nil, fmt.Errorf("--memory: required (the memory haul's workers may hold there: 256Gi)")
	}
	var capacity placement.Resources
	for _, p := range []struct{ flag, res, v string }{{"--cpu", placement.ResCPU, cpu}, {"--memory", placement.ResMemory, memory}} {
		r, err := placement.ParseResources(p.res + "=" + p.v)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", p.flag, p.v, err)
		}
		capacity = capacity.Add(r)
	}
	for _, g := range gpus {
		t, n, ok := strings.Cut(g, "=")
		if !ok || t == "" || strings.ContainsAny(n, ", ") {
			return nil, fmt.Errorf("--gpu %q: want TYPE=COUNT (a100=8)", g)
		}
		if _, dup := capacity.GPU[t]; dup {
			return nil, fmt.Errorf("--gpu %q: type %s is given twice", g, t)
		}
		r, err := placement.ParseResources(placement.GPUResource(t) + "=" + n)
		if err != nil {
			return nil, fmt.Errorf("--gpu %q: %w", g, err)
		}
		capacity = capacity.Add(r)
	}
	c := &apiv1.Cluster{Name: name, Capacity: resourcesToAPI(capacity)}
	for _, l := range labelFlags {
		k, vs, ok := strings.Cut(l, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--label %q: want KEY=V1,V2 (zone=us-east-1a,us-east-1b)", l)
		}
		if c.Labels == nil {
			c.Labels = map[string]*apiv1.LabelValues{}
		}
		if _, dup := c.Labels[k]; dup {
			return nil, fmt.Errorf("--label %q: key %s is given twice (list its values in one flag: %s=V1,V2)", l, k, k)
		}
		values := &apiv1.LabelValues{}
		for v := range strings.SplitSeq(vs, ",") {
			if v = strings.TrimSpace(v); v == "" {
				return nil, fmt.Errorf("--label %q: an empty value", l)
			}
			values.Values = append(values.Values, v)
		}
		c.Labels[k] = values
	}
	for _, p := range gpuPrices {
		t, v, ok := strings.Cut(p, "=")
		price, err := strconv.ParseFloat(v, 64)
		if !ok || t == "" || err != nil {
			return nil, fmt.Errorf("--price-gpu-hour %q: want TYPE=PRICE (a100=2.5)", p)
		}
		if _, offered := capacity.GPU[t]; !offered {
			return nil, fmt.Errorf("--price-gpu-hour %q: the cluster offers no GPU of type %s (add --gpu %s=COUNT)", p, t, t)
		}
		if c.PricePerGpuHour == nil {
			c.PricePerGpuHour = map[string]float64{}
		}
		c.PricePerGpuHour[t] = price
	}
	return c, nil
}

func (a *app) clusterStateCmd(verb, state, short string) *cobra.Command {
	return &cobra.Command{
		Use:     verb + " NAME",
		Short:   short + " (platform admins)",
		Example: "  haul cluster " + verb + " east",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.adminClient().SetClusterState(cmd.Context(), connect.NewRequest(&apiv1.SetClusterStateRequest{Name: args[0], State: state}))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(resp.Msg.Cluster)
			}
			fmt.Fprintf(a.stdout, "cluster %s %s\n", resp.Msg.Cluster.Name, resp.Msg.Cluster.State)
			return nil
		},
	}
}

func (a *app) clusterDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME",
		Short:   "Delete a cluster record (platform admins); its workers keep their reservations until they exit",
		Example: "  haul cluster delete east",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.adminClient().DeleteCluster(cmd.Context(), connect.NewRequest(&apiv1.DeleteClusterRequest{Name: args[0]}))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(resp.Msg)
			}
			fmt.Fprintf(a.stdout, "cluster %s deleted\n", args[0])
			return nil
		},
	}
}
