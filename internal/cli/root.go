// Package cli implements the haul command line: the server commands (up,
// run's embedded server, taskhost) and the client commands that talk to a
// gateway over the JobService API. cmd/haul/main.go only calls Main.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/taskhost"
)

// DefaultServer is the address client commands use when neither --server
// nor HAUL_SERVER is set.
const DefaultServer = "http://127.0.0.1:7070"

// usageError marks a mistake in how a command was called (exit status 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// usageArgs wraps a cobra argument check so that its errors are usage errors.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{fmt.Errorf("%s: %w", cmd.CommandPath(), err)}
		}
		return nil
	}
}

// exitError carries a process exit code without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// app holds the global flags and the streams commands write to.
type app struct {
	server string
	output string
	// yaml is -o yaml: output is then "json" for the commands, and
	// printJSON writes the same document as YAML.
	yaml     bool
	logLevel string
	// logFormat is the server log format: text or json (--log-format).
	logFormat string
	// token is --token (default $HAUL_API_TOKEN); dataDir, when a command
	// set it (haul run --data), is where the admin token is looked for.
	token   string
	dataDir string
	// ca is --ca (default $HAUL_CA): certificates to trust for the
	// server's TLS certificate; hc is the HTTP client that trusts them.
	ca string
	hc *http.Client
	// profile is --profile (default $HAUL_PROFILE); profileUsed the one
	// in effect, serverFromProfile whether it chose the server
	// (profile.go).
	profile           string
	profileUsed       string
	serverFromProfile bool
	// serverChosen: --server, HAUL_SERVER or a profile named the server;
	// local is the reader of the data directory when none answers
	// (local.go).
	serverChosen bool
	local        localState
	stdout       io.Writer
	stderr       io.Writer
	stdin        io.Reader
}

// Main runs the haul command line with args (without the program name) and
// returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, stdin: stdin}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(stderr, "haul: %s\n", describe(err))
	var ue usageError
	if errors.As(err, &ue) || cobraUsageError(err) {
		fmt.Fprintf(stderr, "Run 'haul --help' or 'haul COMMAND --help' for usage.\n")
		return 2
	}
	return 1
}

// describe turns a Connect error into a message for people.
func describe(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		switch ce.Code() {
		case connect.CodeUnavailable:
			if strings.HasPrefix(ce.Message(), "store unavailable") {
				// The server answered: its database did not.
				return "the haul server answered: " + ce.Message()
			}
			return fmt.Sprintf("cannot reach the haul server: %s (is `haul up` running? set --server or HAUL_SERVER)", ce.Message())
		case connect.CodeNotFound, connect.CodeInvalidArgument:
			return ce.Message()
		case connect.CodeFailedPrecondition:
			if strings.HasPrefix(ce.Message(), "no server is running") {
				// The local reader (local.go) refuses to act.
				return ce.Message()
			}
		}
		return fmt.Sprintf("%s: %s", ce.Code(), ce.Message())
	}
	return err.Error()
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "haul",
		Short: "haul runs DAGs of unix-process tasks, from one machine to many clusters",
		Long: `haul is a batch-computing system: a job is a DAG of tasks, each one unix
process (argv, env, cwd). Tasks start the moment their parents succeed, on
workers that each run many tasks one after another.

Start here:
  haul run examples/hello-dag.yaml     run a job (starts an embedded server if none answers)
  haul up                              a persistent server on this machine
  haul task list JOB --state failed    which element failed?
  haul task logs JOB KEY -f            its output, live
  haul task repro JOB KEY              a shell command that reruns it locally

Client commands talk to --server (or $HAUL_SERVER, default ` + DefaultServer + `).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			switch a.output {
			case "text", "json":
			case "yaml":
				// Every command that prints JSON prints YAML instead.
				a.output, a.yaml = "json", true
			default:
				return usageError{fmt.Errorf("--output %q: want text, json or yaml", a.output)}
			}
			if a.ca != "" {
				c, err := taskhost.CAClient(a.ca)
				if err != nil {
					return usageError{fmt.Errorf("--ca %s (or HAUL_CA): %w", a.ca, err)}
				}
				a.hc = c
			}
			return a.applyProfile(cmd)
		},
	}
	server := os.Getenv("HAUL_SERVER")
	if server == "" {
		server = DefaultServer
	}
	root.PersistentFlags().StringVar(&a.server, "server", server, "haul server URL (env HAUL_SERVER)")
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "text", "output format: text, json or yaml")
	root.PersistentFlags().StringVar(&a.ca, "ca", os.Getenv(taskhost.CAEnv), "PEM file of certificates to trust for the server's TLS certificate, besides the system's (env HAUL_CA)")
	root.PersistentFlags().StringVar(&a.profile, "profile", os.Getenv("HAUL_PROFILE"), "the profile of ~/.config/haul/config.yaml to use (env HAUL_PROFILE; default its current one)")
	root.PersistentFlags().StringVar(&a.token, "token", os.Getenv("HAUL_API_TOKEN"), "API token (env HAUL_API_TOKEN; else HAUL_TOKEN, else a local server's <data dir>/admin-token)")
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "info", "server log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&a.logFormat, "log-format", "text", "server log format: text, or json (one object per line, for log collectors)")
	root.AddCommand(a.upCmd(), a.gatewayCmd(), a.runnerCmd(), a.runCmd(), a.withJobLogs(a.jobCmd()), a.taskCmd(), a.taskhostCmd(), a.autoscalerCmd(), a.withClusterRecords(a.clusterCmd()), a.simCmd())
	root.AddCommand(a.benchCmd())
	root.AddCommand(a.tokenCmd(), a.auditCmd())
	root.AddCommand(a.quotaCmd(), a.costCmd())
	root.AddCommand(a.historyCmd(), a.queryCmd())
	root.AddCommand(a.teamCmd(), a.logsCmd())
	root.AddCommand(a.profileCmd(), a.loginCmd())
	root.AddCommand(a.workerCmd())
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.InitDefaultCompletionCmd()
	a.completions(root)
	// Every command's argument check reports a usage error; a command
	// that only groups others refuses an unknown or missing one.
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Args != nil {
			c.Args = usageArgs(c.Args)
		}
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			c.Args = cobra.ArbitraryArgs
			c.RunE = groupRun
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return root
}

// cobraUsageError reports whether err is one of cobra's own usage errors
// (an unknown command, a flag group or required flag broken).
func cobraUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "if any flags in the group", "at least one of the flags in the group", "required flag(s)"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// groupRun runs a command that only groups others: with no subcommand it
// prints its help and exits 2 (nothing was done); an unknown one is a
// usage error that suggests the nearest ones.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		cmd.SetOut(cmd.OutOrStdout())
		if err := cmd.Help(); err != nil {
			return err
		}
		return usageError{fmt.Errorf("%s needs a command (see the list above)", cmd.CommandPath())}
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := nearestCommands(cmd, args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{errors.New(msg)}
}

// nearestCommands are the subcommands of cmd nearest to typed: those it
// is a prefix of, else those at the least edit distance (at most 2).
func nearestCommands(cmd *cobra.Command, typed string) []string {
	var prefixed, near []string
	best := 3
	for _, c := range cmd.Commands() {
		if !c.IsAvailableCommand() {
			continue
		}
		if typed != "" && strings.HasPrefix(c.Name(), typed) {
			prefixed = append(prefixed, c.Name())
			continue
		}
		switch d := editDistance(typed, c.Name()); {
		case d < best:
			best, near = d, []string{c.Name()}
		case d == best:
			near = append(near, c.Name())
		}
	}
	if len(prefixed) > 0 {
		return prefixed
	}
	return near
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// serverFlagSet reports whether the user chose a server explicitly:
// --server, HAUL_SERVER or a profile's server (which applyProfile sets as
// the flag).
func serverFlagSet(cmd *cobra.Command) bool {
	return cmd.Flags().Changed("server") || os.Getenv("HAUL_SERVER") != ""
}

// client is the JobService client of a client command: the server's, or,
// when no server answers and none was chosen explicitly, the data
// directory's store read in this process (local.go).
func (a *app) client() apiv1connect.JobServiceClient {
	if c := a.localClient(); c != nil {
		return c
	}
	return apiv1connect.NewJobServiceClient(a.httpClient(), strings.TrimRight(a.server, "/"), a.clientOptions()...)
}

// httpClient is the HTTP client of every API client: with --ca, one that
// trusts those certificates.
func (a *app) httpClient() *http.Client {
	if a.hc != nil {
		return a.hc
	}
	return http.DefaultClient
}

func (a *app) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(a.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	if a.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(a.stderr, &slog.HandlerOptions{Level: lvl}))
	}
	return slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: lvl}))
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}
