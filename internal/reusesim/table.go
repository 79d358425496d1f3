package reusesim

import (
	"fmt"
	"strings"
	"text/tabwriter"
)

// Table formats results as a table, one row per result; the vs columns
// compare each row with the one-per-task row of its workload (when there
// is one).
func Table(rs []Result) string {
	base := map[string]Result{}
	for _, r := range rs {
		if r.Strategy == OnePerTask {
			base[r.Workload] = r
		}
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "WORKLOAD\tSTRATEGY\tMAKESPAN\tvs 1/TASK\tWORKER-SECONDS\tvs 1/TASK\tWORKERS\tPEAK\tTASKS/WORKER\tUTILIZATION\t")
	for _, r := range rs {
		mk, ws := "", ""
		if r.Strategy == OnePerTask {
			mk, ws = "-", "-"
		} else if o, ok := base[r.Workload]; ok && o.Makespan > 0 && o.WorkerSeconds > 0 {
			mk = signedPercent(r.Makespan/o.Makespan - 1)
			ws = signedPercent(r.WorkerSeconds/o.WorkerSeconds - 1)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f\t%s\t%d\t%d\t%.1f\t%.1f%%\t\n",
			r.Workload, r.Strategy, fmtSeconds(r.Makespan), mk, r.WorkerSeconds, ws,
			r.Workers, r.PeakWorkers, r.TasksPerWorker, 100*r.Utilization)
	}
	tw.Flush()
	return b.String()
}

func signedPercent(f float64) string { return fmt.Sprintf("%+.1f%%", 100*f) }

// fmtSeconds writes a duration in seconds as 42.3s, 12m05s or 3h20m.
func fmtSeconds(s float64) string {
	switch {
	case s < 60:
		return fmt.Sprintf("%.1fs", s)
	case s < 3600:
		m := int(s) / 60
		return fmt.Sprintf("%dm%02ds", m, int(s)-60*m)
	default:
		h := int(s) / 3600
		return fmt.Sprintf("%dh%02dm", h, (int(s)-3600*h)/60)
	}
}
