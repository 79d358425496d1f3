package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
)

func (a *app) loginCmd() *cobra.Command {
	var tokenStdin, sso bool
	cmd := &cobra.Command{
		Use:   "login [--profile NAME] [--server URL]",
		Short: "Store a token for a server in a profile, checked with the server",
		Long: `Log in to a haul server: the credential is checked with the server (WhoAmI)
and stored in a profile of ~/.config/haul/config.yaml (mode 0600), which
later commands use (haul profile --help). The profile is --profile (or
$HAUL_PROFILE), else the current one, else "default"; the server is
--server (or $HAUL_SERVER), else the profile's, else ` + DefaultServer + `.

The token is read from stdin: typed at a prompt without echo on a terminal,
else the first line of stdin (--token-stdin says so explicitly, for
scripts). A token comes from 'haul token create' (or an admin).

--sso logs in with the server's OIDC issuer instead, by the OAuth 2.0
device authorization flow (RFC 8628): haul prints a URL and a code to
enter there, waits until you approve it (in any browser), and stores the
ID token the issuer gives (it expires as the issuer decides, typically in
an hour: log in again then). The server must have SSO configured
(/ui/config names its issuer) and the issuer must offer the device flow.`,
		Example: "  haul login --server https://haul.example.com\n  echo \"$TOKEN\" | haul login --profile ci --token-stdin\n  haul login --sso",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.login(cmd, tokenStdin, sso)
		},
	}
	cmd.Flags().BoolVar(&tokenStdin, "token-stdin", false, "read the token from stdin's first line (no prompt)")
	cmd.Flags().BoolVar(&sso, "sso", false, "log in with the server's OIDC issuer (device flow) instead of a token")
	return cmd
}

func (a *app) login(cmd *cobra.Command, tokenStdin, sso bool) error {
	ctx := cmd.Context()
	if tokenStdin && sso {
		return usageError{errors.New("--token-stdin and --sso: choose one way to log in")}
	}
	path := configPath()
	p, err := loadProfiles(path)
	if err != nil {
		return err
	}
	name := a.profileName(p)
	if name == "" {
		name = "default"
	}
	pr := p.Profiles[name]
	if pr == nil {
		pr = &profile{}
	}
	srv := a.server
	if !cmd.Flags().Changed("server") && os.Getenv("HAUL_SERVER") == "" && pr.Server != "" {
		srv = pr.Server
	}
	srv = strings.TrimRight(srv, "/")
	var tok string
	if sso {
		tok, err = a.deviceLogin(ctx, srv)
	} else {
		tok, err = a.readToken(srv, tokenStdin)
	}
	if err != nil {
		return err
	}
	c := apiv1connect.NewJobServiceClient(a.httpClient(), srv, connect.WithInterceptors(bearerAuth(tok)))
	who, err := c.WhoAmI(ctx, connect.NewRequest(&apiv1.WhoAmIRequest{}))
	if err != nil {
		if connect.CodeOf(err) == connect.CodeUnauthenticated {
			return fmt.Errorf("the server at %s refuses this credential: %s (nothing stored)", srv, err.(*connect.Error).Message())
		}
		return fmt.Errorf("check the credential with %s: %s (nothing stored)", srv, describe(err))
	}
	w := who.Msg
	pr.Server, pr.Token = srv, tok
	if pr.Team == "" && len(w.Teams) == 1 {
		for t := range w.Teams {
			pr.Team = t
		}
	}
	if p.Profiles == nil {
		p.Profiles = map[string]*profile{}
	}
	p.Profiles[name] = pr
	if p.Current == "" {
		p.Current = name
	}
	if err := p.save(path); err != nil {
		return err
	}
	teams := make([]string, 0, len(w.Teams))
	for t, r := range w.Teams {
		teams = append(teams, t+" ("+r+")")
	}
	slices.Sort(teams)
	desc := strings.Join(teams, ", ")
	if w.PlatformAdmin {
		desc = strings.TrimPrefix(desc+", platform admin", ", ")
	}
	if desc == "" {
		desc = "no team"
	}
	if a.output == "json" {
		return a.printJSON(map[string]any{"profile": name, "server": srv, "subject": w.Subject, "kind": w.Kind, "via": w.Via, "teams": w.Teams, "platform_admin": w.PlatformAdmin})
	}
	fmt.Fprintf(a.stdout, "logged in to %s as %s (%s via %s; %s); saved in profile %s of %s\n", srv, w.Subject, w.Kind, w.Via, desc, name, path)
	if p.Current != name {
		fmt.Fprintf(a.stdout, "profile %s is not the current one (%s): haul profile use %s, or --profile %s\n", name, p.Current, name, name)
	}
	return nil
}

// readToken reads a token from stdin: at a prompt without echo on a
// terminal, else its first line.
func (a *app) readToken(srv string, noPrompt bool) (string, error) {
	if f, ok := a.stdin.(*os.File); ok && !noPrompt && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(a.stderr, "API token for %s (haul token create makes one): ", srv)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", fmt.Errorf("read the token: %w", err)
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
		return "", errors.New("no token given")
	}
	line, err := bufio.NewReader(io.LimitReader(a.stdin, 64<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the token from stdin: %w", err)
	}
	t := strings.TrimSpace(line)
	if t == "" {
		return "", usageError{errors.New("no token on stdin: pipe one in (haul token create ... | haul login --token-stdin), or use --sso")}
	}
	return t, nil
}

// deviceLogin runs the OAuth 2.0 device authorization flow (RFC 8628)
// against the OIDC issuer the server at srv names, and returns the ID
// token.
func (a *app) deviceLogin(ctx context.Context, srv string) (string, error) {
	hc := a.httpClient()
	var conf struct {
		OIDC     bool   `json:"oidc"`
		Issuer   string `json:"issuer"`
		ClientID string `json:"client_id"`
	}
	if err := getJSON(ctx, hc, srv+"/ui/config", &conf); err != nil {
		return "", fmt.Errorf("ask %s how to log in: %w", srv, err)
	}
	if !conf.OIDC || conf.Issuer == "" || conf.ClientID == "" {
		return "", fmt.Errorf("the server at %s has no SSO (OIDC) login configured: log in with a token instead (haul token create, then haul login)", srv)
	}
	var disc struct {
		Device string `json:"device_authorization_endpoint"`
		Token  string `json:"token_endpoint"`
	}
	if err := getJSON(ctx, hc, strings.TrimRight(conf.Issuer, "/")+"/.well-known/openid-configuration", &disc); err != nil {
		return "", fmt.Errorf("OIDC issuer %s: discovery: %w", conf.Issuer, err)
	}
	if disc.Device == "" || disc.Token == "" {
		return "", fmt.Errorf("OIDC issuer %s does not offer the device authorization flow (no device_authorization_endpoint): log in with a token instead", conf.Issuer)
	}
	var da struct {
		DeviceCode              string `json:"device_code"`
		UserCode                string `json:"user_code"`
		VerificationURI         string `json:"verification_uri"`
		VerificationURIComplete string `json:"verification_uri_complete"`
		ExpiresIn               int    `json:"expires_in"`
		Interval                int    `json:"interval"`
	}
	status, err := postForm(ctx, hc, disc.Device, url.Values{"client_id": {conf.ClientID}, "scope": {"openid email profile groups"}}, &da)
	if err != nil {
		return "", fmt.Errorf("OIDC issuer %s: device authorization: %w", conf.Issuer, err)
	}
	if status != http.StatusOK || da.DeviceCode == "" || da.UserCode == "" {
		return "", fmt.Errorf("OIDC issuer %s: device authorization answered %d without a code", conf.Issuer, status)
	}
	fmt.Fprintf(a.stderr, "To log in, open %s and enter the code %s\n", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(a.stderr, "(or open %s)\n", da.VerificationURIComplete)
	}
	fmt.Fprintf(a.stderr, "waiting for the approval...\n")
	interval := time.Duration(max(da.Interval, 0)) * time.Second
	if da.Interval == 0 {
		interval = 5 * time.Second // RFC 8628 section 3.2's default
	}
	deadline := time.Now().Add(time.Duration(max(da.ExpiresIn, 60)) * time.Second)
	for {
		if !sleepCtx(ctx, interval) {
			return "", ctx.Err()
		}
		var tr struct {
			IDToken string `json:"id_token"`
			Error   string `json:"error"`
			Desc    string `json:"error_description"`
		}
		status, err := postForm(ctx, hc, disc.Token, url.Values{
			"grant_type":  {"urn:ietf:params:oauth:grant-type:device_code"},
			"device_code": {da.DeviceCode},
			"client_id":   {conf.ClientID},
		}, &tr)
		if err != nil {
			if time.Now().After(deadline) {
				return "", fmt.Errorf("OIDC issuer %s: token endpoint: %w", conf.Issuer, err)
			}
			continue // the network: try again at the next interval
		}
		switch {
		case status == http.StatusOK && tr.IDToken != "":
			return tr.IDToken, nil
		case status == http.StatusOK:
			return "", fmt.Errorf("OIDC issuer %s gave no ID token (is the openid scope allowed for client %s?)", conf.Issuer, conf.ClientID)
		case tr.Error == "authorization_pending":
		case tr.Error == "slow_down":
			// RFC 8628 section 3.5: five seconds more, from now on.
			interval += 5 * time.Second
		case tr.Error == "expired_token":
			return "", errors.New("the code expired before it was approved: run haul login --sso again")
		case tr.Error == "access_denied":
			return "", errors.New("the login was denied at the issuer")
		default:
			return "", fmt.Errorf("OIDC issuer %s: token endpoint answered %d %s %s", conf.Issuer, status, tr.Error, tr.Desc)
		}
		if time.Now().After(deadline) {
			return "", errors.New("the code expired before it was approved: run haul login --sso again")
		}
	}
}

func getJSON(ctx context.Context, hc *http.Client, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}

// postForm posts a form and decodes the JSON answer (also of an error
// status, as OAuth endpoints answer errors in JSON).
func postForm(ctx context.Context, hc *http.Client, u string, form url.Values, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return resp.StatusCode, fmt.Errorf("%s: %s, not JSON: %w", u, resp.Status, err)
	}
	return resp.StatusCode, nil
}
