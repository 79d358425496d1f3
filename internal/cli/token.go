package cli

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/haul-dev/haul/internal/auth"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/server"
)

// credential is the bearer token client commands send, and where it came
// from (for messages; never the token).
type credential struct {
	token  string
	source string
}

// findCredential picks the token a client command sends to serverURL, the
// first of:
//
//  1. --token, else $HAUL_API_TOKEN (flagToken: the flag's value, whose
//     default is that variable);
//  2. $HAUL_TOKEN, the token of the task the command runs in;
//  3. <dataDir>/admin-token, the admin token a server on this machine
//     wrote, readable only by the unix user that runs it, and only when
//     serverURL is a loopback address: the token never leaves the machine.
//
// None found: no token (the server answers unauthenticated, saying how to
// get one).
func findCredential(flagToken string, getenv func(string) string, dataDir, serverURL string) credential {
	if t := strings.TrimSpace(flagToken); t != "" {
		return credential{t, "--token or HAUL_API_TOKEN"}
	}
	if t := strings.TrimSpace(getenv("HAUL_TOKEN")); t != "" {
		return credential{t, "HAUL_TOKEN"}
	}
	if dataDir != "" && isLoopbackURL(serverURL) {
		p := filepath.Join(dataDir, server.AdminTokenFile)
		if b, err := os.ReadFile(p); err == nil {
			if t := strings.TrimSpace(string(b)); t != "" {
				return credential{t, p}
			}
		}
	}
	return credential{}
}

// isLoopbackURL reports whether u names this machine: localhost or a
// loopback address.
func isLoopbackURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	host := p.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// credential returns the token this invocation sends.
func (a *app) credential() credential {
	dir := a.dataDir
	if dir == "" {
		dir = server.DefaultDataDir()
	}
	return findCredential(a.token, os.Getenv, dir, a.server)
}

// clientOptions are the options of every API client the CLI makes: the
// bearer token, when one is found.
func (a *app) clientOptions() []connect.ClientOption {
	c := a.credential()
	if c.token == "" {
		return nil
	}
	return []connect.ClientOption{connect.WithInterceptors(bearerAuth(c.token))}
}

// bearerAuth sends Authorization: Bearer <token> on every call.
type bearerAuth string

func (b bearerAuth) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}

func (b bearerAuth) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

func (b bearerAuth) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func (a *app) adminClient() apiv1connect.AdminServiceClient {
	return apiv1connect.NewAdminServiceClient(a.httpClient(), strings.TrimRight(a.server, "/"), a.clientOptions()...)
}

func (a *app) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Issue, list and revoke API tokens",
		Long: `API tokens prove who calls the haul API. A token names a subject (a person
or a service account such as a CI pipeline), a role per team (viewer, member
or admin) and an expiry. The server keeps only a hash: the token is shown
once, when it is created.

A team admin manages the tokens of the teams they admin; a platform admin
manages every token. Client commands send --token, else $HAUL_API_TOKEN,
else $HAUL_TOKEN (a task's), else, for a server on this machine, the admin
token in <data dir>/admin-token.`,
	}
	cmd.AddCommand(a.tokenCreateCmd(), a.tokenListCmd(), a.tokenRevokeCmd())
	return cmd
}

func (a *app) tokenCreateCmd() *cobra.Command {
	var subject, kind, description, ttl string
	var teams []string
	var platformAdmin bool
	cmd := &cobra.Command{
		Use:   "create --subject S --team TEAM=ROLE...",
		Short: "Issue a token and print it (once)",
		Example: "  haul token create --subject alice@example.com --team perception=member\n" +
			"  haul token create --subject ci-nightly --kind service-account --team perception=member --ttl 30d --description 'nightly resim'",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(subject) == "" {
				return usageError{fmt.Errorf("--subject: required (whom the token speaks for: alice@example.com, ci-nightly)")}
			}
			req := &apiv1.CreateTokenRequest{Subject: subject, Kind: kind, PlatformAdmin: platformAdmin, Description: description, Teams: map[string]string{}}
			for _, tr := range teams {
				team, role, ok := strings.Cut(tr, "=")
				if !ok {
					role = "member"
				}
				if _, err := auth.ParseRole(role); err != nil {
					return usageError{fmt.Errorf("--team %q: %w", tr, err)}
				}
				if err := auth.CheckTeamName(team); err != nil {
					return usageError{fmt.Errorf("--team %q: %w", tr, err)}
				}
				req.Teams[team] = role
			}
			if ttl != "" {
				d, err := parseTTL(ttl)
				if err != nil {
					return usageError{fmt.Errorf("--ttl %q: %w", ttl, err)}
				}
				req.TtlSeconds = int64(d / time.Second)
			}
			resp, err := a.adminClient().CreateToken(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(resp.Msg)
			}
			r := resp.Msg.Record
			fmt.Fprintln(a.stdout, resp.Msg.Token)
			fmt.Fprintf(a.stderr, "token %s for %s (%s): %s; expires %s.\nIt is shown only now: store it (for the CLI: HAUL_API_TOKEN or --token).\n",
				r.Id, r.Subject, r.Kind, grants(r), r.ExpiresAt.AsTime().Local().Format(time.DateTime))
			return nil
		},
	}
	cmd.Flags().StringVar(&subject, "subject", "", "whom the token speaks for: a person (alice@example.com) or a service account (ci-nightly)")
	cmd.Flags().StringVar(&kind, "kind", "user", "user or service-account")
	cmd.Flags().StringArrayVar(&teams, "team", nil, "TEAM=ROLE (viewer, member or admin; TEAM alone: member); repeat for several teams")
	cmd.Flags().BoolVar(&platformAdmin, "platform-admin", false, "a platform admin's token: every team, clusters, the audit log")
	cmd.Flags().StringVar(&ttl, "ttl", "", "how long it works: 720h, 30d (default 90d, at most 366d)")
	cmd.Flags().StringVar(&description, "description", "", "what the token is for")
	return cmd
}

// parseTTL reads a Go duration, or a number of days ("30d").
func parseTTL(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 {
			return 0, fmt.Errorf("want a positive number of days (30d) or a duration (720h)")
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("want a duration of at least 1s (720h) or a number of days (30d)")
	}
	return d, nil
}

func grants(t *apiv1.Token) string {
	var parts []string
	for _, team := range slices.Sorted(maps.Keys(t.Teams)) {
		parts = append(parts, team+"="+t.Teams[team])
	}
	if t.PlatformAdmin {
		parts = append(parts, "platform-admin")
	}
	return strings.Join(parts, ",")
}

func (a *app) tokenListCmd() *cobra.Command {
	var team, subject string
	var all bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List tokens (never their secrets), newest first",
		Example: "  haul token list --team perception\n  haul token list --all -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := a.adminClient()
			var tokens []*apiv1.Token
			for page := ""; ; {
				resp, err := c.ListTokens(cmd.Context(), connect.NewRequest(&apiv1.ListTokensRequest{Team: team, Subject: subject, IncludeRevoked: all, PageSize: 1000, PageToken: page}))
				if err != nil {
					return err
				}
				tokens = append(tokens, resp.Msg.Tokens...)
				if page = resp.Msg.NextPageToken; page == "" {
					break
				}
			}
			if a.output == "json" {
				return a.printJSON(protoList(tokens))
			}
			now := time.Now()
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSUBJECT\tKIND\tTEAMS\tSTATE\tEXPIRES\tCREATED BY\tDESCRIPTION")
			for _, t := range tokens {
				state := "active"
				switch {
				case t.RevokedAt != nil:
					state = "revoked"
				case !now.Before(t.ExpiresAt.AsTime()):
					state = "expired"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Id, t.Subject, t.Kind, grants(t), state,
					t.ExpiresAt.AsTime().Local().Format(time.DateTime), t.CreatedBy, t.Description)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&team, "team", "", "only tokens with a role in this team (a team admin must name a team it admins, unless it admins one)")
	cmd.Flags().StringVar(&subject, "subject", "", "only this subject's tokens")
	cmd.Flags().BoolVar(&all, "all", false, "include revoked tokens")
	return cmd
}

func (a *app) tokenRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke a token: it stops working within seconds",
		Example: "  haul token revoke 3f9a0c12d4e5",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.adminClient().RevokeToken(cmd.Context(), connect.NewRequest(&apiv1.RevokeTokenRequest{Id: args[0]}))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(resp.Msg.Record)
			}
			r := resp.Msg.Record
			fmt.Fprintf(a.stdout, "revoked token %s of %s (revoked at %s)\n", r.Id, r.Subject, r.RevokedAt.AsTime().Local().Format(time.DateTime))
			return nil
		},
	}
}

func (a *app) auditCmd() *cobra.Command {
	var subject, team string
	var limit int
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "List the audit log of mutating calls, newest first (platform admins)",
		Long: `The audit log records every mutating API call: when, who (subject and
token), what (the call, its team and object), from where, and its outcome
(ok, denied, or the error's code).`,
		Example: "  haul audit --subject ci-nightly\n  haul audit --team perception -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit <= 0 {
				return usageError{fmt.Errorf("--limit %d: want a positive number", limit)}
			}
			c := a.adminClient()
			var entries []*apiv1.AuditEntry
			for page := ""; len(entries) < limit; {
				resp, err := c.ListAudit(cmd.Context(), connect.NewRequest(&apiv1.ListAuditRequest{Subject: subject, Team: team, PageSize: int32(min(limit-len(entries), 1000)), PageToken: page}))
				if err != nil {
					return err
				}
				entries = append(entries, resp.Msg.Entries...)
				if page = resp.Msg.NextPageToken; page == "" {
					break
				}
			}
			if a.output == "json" {
				return a.printJSON(protoList(entries))
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tSUBJECT\tTOKEN\tACTION\tTEAM\tOBJECT\tOUTCOME\tREMOTE")
			for _, e := range entries {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.At.AsTime().Local().Format("2006-01-02 15:04:05.000"), e.Subject, e.TokenId,
					e.Action, e.Team, e.Object, e.Outcome, e.Remote)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&subject, "subject", "", "only calls by this subject")
	cmd.Flags().StringVar(&team, "team", "", "only calls on this team")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many entries")
	return cmd
}
