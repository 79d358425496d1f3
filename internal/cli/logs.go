package cli

import (
	"bufio"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

// teamCmd groups team settings: where the team's logs go.
func (a *app) teamCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "team",
		Short: "Team settings: where a team's logs are copied",
	}
	logs := &cobra.Command{
		Use:   "logs",
		Short: "Show teams' log destinations (never their secrets)",
		Long: `A team's log destination is an S3 bucket and prefix of the team's own:
when one of its jobs ends, the job's logs are copied there (layout and
index: docs/history.md, "Logs in the team's bucket"). A job may name a
destination within it (logs: {destination: s3://bucket/prefix/sub/}).
A platform admin sets it with the credentials to write there, which are
stored and never shown again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			team, _ := cmd.Flags().GetString("team")
			resp, err := a.adminClient().GetLogDestinations(cmd.Context(), connect.NewRequest(&apiv1.GetLogDestinationsRequest{Team: team}))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(resp.Msg)
			}
			if len(resp.Msg.Destinations) == 0 {
				fmt.Fprintln(a.stdout, "no log destinations for the teams you may see")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TEAM\tDESTINATION\tACCESS KEY\tSECRET\tUPDATED")
			for _, d := range resp.Msg.Destinations {
				secret := "-"
				if d.HasSecret {
					secret = "stored"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Team, d.Url, orDash(d.AccessKeyId), secret, time.Unix(0, d.UpdatedUnixNanos).Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	logs.Flags().String("team", "", "one team (default: every team you may see)")
	var keyID, secretFile string
	set := &cobra.Command{
		Use:   "set TEAM s3://bucket/prefix/[?region=R&endpoint=URL&path_style=true]",
		Short: "Set a team's log destination (platform admins)",
		Long: `Set where the team's jobs' logs are copied when they end. Credentials: an
access key ID and a file holding the secret access key (read from a file,
never from the command line, so it stays out of shell history and process
lists); without them the servers' own AWS credentials are used.`,
		Example: "  haul team logs set ml s3://ml-logs/haul/ --access-key-id AKIA... --secret-access-key-file ./secret",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &apiv1.SetLogDestinationRequest{Team: args[0], Url: args[1], AccessKeyId: keyID}
			if secretFile != "" {
				b, err := os.ReadFile(secretFile)
				if err != nil {
					return fmt.Errorf("--secret-access-key-file: %w", err)
				}
				req.SecretAccessKey = strings.TrimSpace(string(b))
			}
			resp, err := a.adminClient().SetLogDestination(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			d := resp.Msg.Destination
			fmt.Fprintf(a.stdout, "team %s: logs go to %s (access key %s)\n", d.Team, d.Url, orDash(d.AccessKeyId))
			return nil
		},
	}
	set.Flags().StringVar(&keyID, "access-key-id", "", "the destination's access key ID")
	set.Flags().StringVar(&secretFile, "secret-access-key-file", "", "a file holding the destination's secret access key")
	del := &cobra.Command{
		Use:   "delete TEAM",
		Short: "Remove a team's log destination (platform admins)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := a.adminClient().DeleteLogDestination(cmd.Context(), connect.NewRequest(&apiv1.DeleteLogDestinationRequest{Team: args[0]})); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "team %s: log destination removed\n", args[0])
			return nil
		},
	}
	logs.AddCommand(set, del)
	cmd.AddCommand(logs)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// logsCmd groups commands on whole jobs' logs.
func (a *app) logsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Jobs' logs as plain files",
	}
	var glob string
	export := &cobra.Command{
		Use:   "export JOB DIR",
		Short: "Write a job's logs as plain per-attempt files",
		Long: `Write every attempt's output of a job under DIR, one plain file per
attempt and stream:

  DIR/JOB/TASK/ATTEMPT.stdout
  DIR/JOB/TASK/ATTEMPT.stderr

TASK is the task's key (path-escaped: a '/' becomes %2F). Files of
attempts that printed nothing on a stream are not written. An attempt
whose log is incomplete is written as far as it was stored, and named
on stderr; the command then exits 3.`,
		Example: "  haul logs export 1m8wykxqykzj6 ./logs\n  haul logs export 1m8wykxqykzj6 ./logs --key 'sim-*'",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			job, dir := args[0], args[1]
			incomplete, files := 0, 0
			req := &apiv1.ListTasksRequest{JobId: job, KeyGlob: glob, PageSize: 1000}
			for {
				resp, err := a.client().ListTasks(cmd.Context(), connect.NewRequest(req))
				if err != nil {
					return err
				}
				for _, t := range resp.Msg.Tasks {
					for attempt := int32(1); attempt <= t.Attempts; attempt++ {
						n, err := a.exportAttempt(cmd, job, t.Key, attempt, filepath.Join(dir, job, url.PathEscape(t.Key)))
						files += n
						if ce := new(connect.Error); errors.As(err, &ce) && ce.Code() == connect.CodeDataLoss {
							incomplete++
							fmt.Fprintf(a.stderr, "%s attempt %d: %s\n", t.Key, attempt, ce.Message())
							continue
						}
						if err != nil {
							return fmt.Errorf("%s attempt %d: %w", t.Key, attempt, err)
						}
					}
				}
				if resp.Msg.NextPageToken == "" {
					break
				}
				req.PageToken = resp.Msg.NextPageToken
			}
			fmt.Fprintf(a.stdout, "wrote %d files under %s\n", files, filepath.Join(dir, job))
			if incomplete > 0 {
				return exitError{ExitLogIncomplete}
			}
			return nil
		},
	}
	export.Flags().StringVar(&glob, "key", "", "only tasks whose keys match this glob")
	cmd.AddCommand(export)
	return cmd
}

// exportAttempt writes one attempt's streams into dir; it returns the
// files written.
func (a *app) exportAttempt(cmd *cobra.Command, job, key string, attempt int32, dir string) (int, error) {
	stream, err := a.client().GetLogs(cmd.Context(), connect.NewRequest(&apiv1.GetLogsRequest{JobId: job, Key: key, Attempt: attempt}))
	if err != nil {
		return 0, err
	}
	defer stream.Close()
	files := map[apiv1.LogStream]*os.File{}
	bufs := map[apiv1.LogStream]*bufio.Writer{}
	closeAll := func() error {
		var errs []error
		for s, f := range files {
			errs = append(errs, bufs[s].Flush(), f.Close())
		}
		return errors.Join(errs...)
	}
	for stream.Receive() {
		for _, c := range stream.Msg().Chunks {
			w := bufs[c.Stream]
			if w == nil {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					closeAll()
					return 0, err
				}
				ext := "stdout"
				if c.Stream == apiv1.LogStream_LOG_STREAM_STDERR {
					ext = "stderr"
				}
				f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%d.%s", attempt, ext)))
				if err != nil {
					closeAll()
					return 0, err
				}
				files[c.Stream], bufs[c.Stream] = f, bufio.NewWriterSize(f, 64<<10)
				w = bufs[c.Stream]
			}
			if _, err := w.Write(c.Data); err != nil {
				closeAll()
				return 0, err
			}
		}
	}
	if err := closeAll(); err != nil {
		return len(files), err
	}
	return len(files), stream.Err()
}
