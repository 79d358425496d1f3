package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/store"
)

// Job references: anywhere a command takes a job ID (its first argument,
// named JOB, or ID under `haul job`) it also takes
//   - a unique prefix of one: "1m8x" for 1m8x9b6209aes, found with
//     ListJobs by id_prefix (two matches are enough to refuse it);
//   - @last: the caller's newest job (ListJobs mine, one job).
// A full-length ID is used as it is, without asking the server (a retired
// job is not listed but is still answered for).

// lastJobRef names the caller's newest job.
const lastJobRef = "@last"

// resolveJob turns a job reference into a job ID.
func (a *app) resolveJob(ctx context.Context, ref string) (string, error) {
	if ref == lastJobRef {
		resp, err := a.client().ListJobs(ctx, connect.NewRequest(&apiv1.ListJobsRequest{Mine: true, PageSize: 1}))
		if err != nil {
			return "", err
		}
		if len(resp.Msg.Jobs) == 0 {
			return "", errors.New("@last: you have submitted no job (that you may still see)")
		}
		return resp.Msg.Jobs[0].Id, nil
	}
	prefix := strings.ToLower(ref)
	if len(prefix) >= store.JobIDLen || !isIDPrefix(prefix) {
		return ref, nil
	}
	resp, err := a.client().ListJobs(ctx, connect.NewRequest(&apiv1.ListJobsRequest{IdPrefix: prefix, PageSize: 2}))
	if err != nil {
		if connect.CodeOf(err) == connect.CodeUnavailable {
			// No server answers: the command says so itself (or
			// reads the data directory, which takes full IDs).
			return ref, nil
		}
		return "", err
	}
	switch jobs := resp.Msg.Jobs; {
	case len(jobs) == 0:
		return "", fmt.Errorf("no job starts with %q", ref)
	case len(jobs) == 1:
		return jobs[0].Id, nil
	default:
		more := ""
		if resp.Msg.NextPageToken != "" {
			more = " …"
		}
		return "", fmt.Errorf("job prefix %q is ambiguous: %s, %s%s (type more of the ID)", ref, jobs[0].Id, jobs[1].Id, more)
	}
}

func isIDPrefix(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9') {
			return false
		}
	}
	return true
}

// takesJob reports whether c's first argument is a job: named JOB in its
// use line, or ID under `haul job`.
func takesJob(c *cobra.Command) bool {
	f := strings.Fields(c.Use)
	if len(f) < 2 {
		return false
	}
	return f[1] == "JOB" || f[1] == "ID" && c.HasParent() && c.Parent().Name() == "job"
}

// takesKey reports whether c's second argument is a task key.
func takesKey(c *cobra.Command) bool {
	f := strings.Fields(c.Use)
	return takesJob(c) && len(f) >= 3 && f[2] == "KEY"
}

// withJobRef makes c resolve its job argument before it runs.
func (a *app) withJobRef(c *cobra.Command) {
	run := c.RunE
	if run == nil {
		return
	}
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			id, err := a.resolveJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			args[0] = id
		}
		return run(cmd, args)
	}
}

// parseWhen reads a point in time for --since/--until: a duration meaning
// that long before now ("24h", "90m", "7d"), an RFC 3339 time, or a date
// (YYYY-MM-DD, midnight local time).
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.ParseFloat(n, 64); err == nil && days >= 0 {
			return now.Add(-time.Duration(days * 24 * float64(time.Hour))), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration ago must not be negative", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04:05", s, time.Local); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q: want a duration ago (24h, 90m, 7d), an RFC 3339 time (2026-12-01T09:00:00Z) or a date (2026-12-01)", s)
}

// labelsText renders labels as k=v,k2=v2, sorted by key.
func labelsText(labels map[string]string) string {
	if len(labels) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}
