package placementsim

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/haul-dev/haul/internal/placement"
)

// Report is what a simulation measured.
type Report struct {
	Seed            int64   `json:"seed"`
	Scale           float64 `json:"scale"`
	OwnersFirst     bool    `json:"owners_first"`
	DurationSeconds float64 `json:"duration_seconds"`
	Jobs            int64   `json:"jobs"`
	// TasksSubmitted counts the tasks of every job that arrived;
	// TasksRun those that ran to the end; TasksQueued those ready but not
	// started when the simulation stopped.
	TasksSubmitted int64 `json:"tasks_submitted"`
	TasksRun       int64 `json:"tasks_run"`
	TasksQueued    int64 `json:"tasks_queued"`
	// QuotaViolations counts (tick, team) pairs where a team's own
	// workers held more than its quota (or its split in a cluster), and
	// CapacityViolations (tick, cluster) pairs where the workers in a
	// cluster held more than its capacity; both from the simulation's own
	// worker records. AccountingErrors counts the times a recount of
	// every worker disagreed with the running totals (once a minute).
	QuotaViolations    int64 `json:"quota_violations"`
	CapacityViolations int64 `json:"capacity_violations"`
	AccountingErrors   int64 `json:"accounting_errors"`
	// WorkersStarted counts the workers placement accepted, Reclaimed
	// those it later marked to give borrowed room back, Refused the
	// requests it turned down.
	WorkersStarted int64 `json:"workers_started"`
	Reclaimed      int64 `json:"reclaimed"`
	Refused        int64 `json:"refused"`
	PlaceCalls     int64 `json:"place_calls"`
	// WallSeconds is how long the simulation took on the machine that ran
	// it (set by the caller; the simulation reads no clock).
	WallSeconds float64         `json:"wall_seconds,omitempty"`
	Clusters    []ClusterReport `json:"clusters"`
	Teams       []TeamReport    `json:"teams"`
}

// ClusterReport is one cluster's figures.
type ClusterReport struct {
	Name     string              `json:"name"`
	Capacity placement.Resources `json:"capacity"`
	// Utilization is the share of each resource the cluster has that
	// reservations held, mean and peak over the ticks.
	Utilization []Utilization `json:"utilization"`
	// Pod creations per second: the budget, the mean, p99 and peak over
	// the ticks, and how many seconds exceeded the budget.
	PodsBudget        float64 `json:"pods_per_second_budget"`
	PodsMean          float64 `json:"pods_per_second_mean"`
	PodsP99           int     `json:"pods_per_second_p99"`
	PodsPeak          int     `json:"pods_per_second_peak"`
	SecondsOverBudget int64   `json:"seconds_over_budget"`
	PodsCreated       int64   `json:"pods_created"`
	StartDelaySeconds float64 `json:"start_delay_seconds"`
}

// Utilization is a resource's reserved share of a cluster's capacity.
type Utilization struct {
	Resource string  `json:"resource"`
	Mean     float64 `json:"mean"`
	Peak     float64 `json:"peak"`
}

// TeamReport is one team's figures.
type TeamReport struct {
	Team string `json:"team"`
	// Quota is the team's limit (nil for none), Lend whether it lends.
	Quota          *placement.Resources `json:"quota,omitempty"`
	Lend           bool                 `json:"lend"`
	Jobs           int64                `json:"jobs"`
	TasksSubmitted int64                `json:"tasks_submitted"`
	TasksRun       int64                `json:"tasks_run"`
	// Queue wait of the tasks that started, from ready to start, in
	// seconds (whole ticks), weighted by tasks.
	WaitP50 float64 `json:"wait_p50_seconds"`
	WaitP99 float64 `json:"wait_p99_seconds"`
	// BorrowedShare is the share of the team's worker-seconds held on
	// borrowed room.
	BorrowedShare  float64 `json:"borrowed_share"`
	WorkersStarted int64   `json:"workers_started"`
	Reclaimed      int64   `json:"reclaimed"`
	// Refused counts refused starts by blocker kind.
	Refused map[placement.BlockerKind]int64 `json:"refused,omitempty"`
}

// Table formats the report as text: totals, then a table of clusters and
// one of teams.
func (r Report) Table() string {
	var b strings.Builder
	order := "the Fleet's order"
	if r.OwnersFirst {
		order = "owners first"
	}
	fmt.Fprintf(&b, "simulated %s at scale %g (seed %d, batches in %s): %d jobs, %d tasks submitted, %d run, %d still queued\n",
		fmtSeconds(r.DurationSeconds), r.Scale, r.Seed, order, r.Jobs, r.TasksSubmitted, r.TasksRun, r.TasksQueued)
	fmt.Fprintf(&b, "quota violations %d, capacity violations %d, accounting errors %d\n",
		r.QuotaViolations, r.CapacityViolations, r.AccountingErrors)
	fmt.Fprintf(&b, "workers started %d, reclaimed %d, starts refused %d, placement batches %d",
		r.WorkersStarted, r.Reclaimed, r.Refused, r.PlaceCalls)
	if r.WallSeconds > 0 {
		fmt.Fprintf(&b, ", wall time %s", fmtSeconds(r.WallSeconds))
	}
	b.WriteString("\n\n")

	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "CLUSTER\tRESOURCE\tCAPACITY\tMEAN USE\tPEAK USE\tPODS/S BUDGET\tMEAN\tP99\tPEAK\tSECONDS OVER\tPODS\t")
	for _, c := range r.Clusters {
		for i, u := range c.Utilization {
			if i == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f%%\t%.1f%%\t%g\t%.2f\t%d\t%d\t%d\t%d\t\n",
					c.Name, u.Resource, fmtAmount(u.Resource, c.Capacity.Get(u.Resource)), 100*u.Mean, 100*u.Peak,
					c.PodsBudget, c.PodsMean, c.PodsP99, c.PodsPeak, c.SecondsOverBudget, c.PodsCreated)
				continue
			}
			fmt.Fprintf(tw, "\t%s\t%s\t%.1f%%\t%.1f%%\t\t\t\t\t\t\t\n",
				u.Resource, fmtAmount(u.Resource, c.Capacity.Get(u.Resource)), 100*u.Mean, 100*u.Peak)
		}
	}
	tw.Flush()
	b.WriteString("\n")

	tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "TEAM\tQUOTA\tLEND\tJOBS\tTASKS RUN\tWAIT P50\tWAIT P99\tBORROWED\tWORKERS\tRECLAIMED\tREFUSED\t")
	for _, t := range r.Teams {
		lend := "no"
		if t.Lend {
			lend = "yes"
		}
		var refused int64
		for _, n := range t.Refused {
			refused += n
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%.1f%%\t%d\t%d\t%d\t\n",
			t.Team, fmtQuota(t), lend, t.Jobs, t.TasksRun, fmtSeconds(t.WaitP50), fmtSeconds(t.WaitP99),
			100*t.BorrowedShare, t.WorkersStarted, t.Reclaimed, refused)
	}
	tw.Flush()
	return b.String()
}

// fmtAmount writes an amount for the table: CPU in cores, memory in GiB
// or TiB (rounded to one decimal), GPUs as a count.
func fmtAmount(name string, n int64) string {
	switch name {
	case placement.ResCPU:
		return strconv.FormatFloat(math.Round(float64(n)/100)/10, 'f', -1, 64)
	case placement.ResMemory:
		if n >= 1<<40 {
			return strconv.FormatFloat(math.Round(float64(n)/(1<<40)*10)/10, 'f', -1, 64) + "Ti"
		}
		return strconv.FormatFloat(math.Round(float64(n)/(1<<30)*10)/10, 'f', -1, 64) + "Gi"
	}
	return strconv.FormatInt(n, 10)
}

// fmtQuota writes a team's quota for the table ("-" for none).
func fmtQuota(t TeamReport) string {
	if t.Quota == nil {
		return "-"
	}
	var parts []string
	for _, name := range t.Quota.Names() {
		parts = append(parts, strings.TrimPrefix(name, "gpu/")+"="+fmtAmount(name, t.Quota.Get(name)))
	}
	return strings.Join(parts, " ")
}

// fmtSeconds writes seconds as 7s, 12m05s or 3h20m.
func fmtSeconds(s float64) string {
	switch {
	case s < 60:
		return fmt.Sprintf("%.0fs", s)
	case s < 3600:
		m := int(s) / 60
		return fmt.Sprintf("%dm%02ds", m, int(s)-60*m)
	default:
		h := int(s) / 3600
		return fmt.Sprintf("%dh%02dm", h, (int(s)-3600*h)/60)
	}
}
