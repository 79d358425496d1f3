package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// profile is one named server a user talks to: its URL, the token to send
// there, and the team whose jobs `job list` shows by default.
type profile struct {
	Server string `yaml:"server,omitempty"`
	Token  string `yaml:"token,omitempty"`
	Team   string `yaml:"team,omitempty"`
}

// profiles is the CLI's configuration file:
//
//	current: prod
//	profiles:
//	  prod: {server: https://haul.example.com, token: ..., team: ml}
//	  local: {server: http://127.0.0.1:7070}
type profiles struct {
	Current  string              `yaml:"current,omitempty"`
	Profiles map[string]*profile `yaml:"profiles,omitempty"`
}

// configPath is the configuration file: $XDG_CONFIG_HOME/haul/config.yaml,
// else ~/.config/haul/config.yaml.
func configPath() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "haul", "config.yaml")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".config", "haul", "config.yaml")
	}
	return ""
}

// loadProfiles reads the configuration file; none is an empty one. A file
// that holds a token must be readable by its owner only: one that others
// may read is refused (the token may have leaked: make a new one).
func loadProfiles(path string) (*profiles, error) {
	p := &profiles{}
	if path == "" {
		return p, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("haul configuration: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("haul configuration: %w", err)
	}
	if err := yaml.NewDecoder(f).Decode(p); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("haul configuration %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		for name, pr := range p.Profiles {
			if pr != nil && pr.Token != "" {
				return nil, fmt.Errorf("haul configuration %s holds a token (profile %q) but its mode is %04o: other users may read it. "+
					"Make it private with `chmod 600 %s`, and as the token may have leaked, replace it (haul login)", path, name, st.Mode().Perm(), path)
			}
		}
	}
	return p, nil
}

// save writes the configuration file, readable by its owner only (it may
// hold tokens), replacing the old one at once.
func (p *profiles) save(path string) error {
	if path == "" {
		return errors.New("haul configuration: no home directory to keep it in (set XDG_CONFIG_HOME)")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("haul configuration: %w", err)
	}
	b, err := yaml.Marshal(p)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.yaml")
	if err != nil {
		return fmt.Errorf("haul configuration: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("haul configuration: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("haul configuration: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("haul configuration: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("haul configuration: %w", err)
	}
	return nil
}

// profileName is the profile this invocation uses: --profile, else
// $HAUL_PROFILE, else the file's current one ("" when none).
func (a *app) profileName(p *profiles) string {
	if a.profile != "" {
		return a.profile
	}
	return p.Current
}

// applyProfile resolves the profile (see profileName) and fills in what
// flags and the environment left unset: the server (unless --server or
// HAUL_SERVER), the token (unless --token, HAUL_API_TOKEN or HAUL_TOKEN,
// and only for the profile's own server: a profile's token is never sent
// to another one), and `job list`'s namespace (unless -n).
func (a *app) applyProfile(cmd *cobra.Command) error {
	defer func() { a.serverChosen = serverFlagSet(cmd) }()
	if cmd.HasParent() && cmd.Parent().Name() == "profile" || cmd.Name() == "login" {
		// They manage the file themselves; a broken one must not stop
		// them from fixing it.
		return nil
	}
	top := cmd
	for top.HasParent() && top.Parent().HasParent() {
		top = top.Parent()
	}
	switch top.Name() {
	case "up", "gateway", "runner", "taskhost", "autoscaler", "sim", "bench", "history":
		// Servers, workers and offline tools talk to no server through a
		// profile: a user's configuration must not change or stop them.
		return nil
	}
	path := configPath()
	p, err := loadProfiles(path)
	if err != nil {
		return err
	}
	name := a.profileName(p)
	if name == "" {
		return nil
	}
	pr := p.Profiles[name]
	if pr == nil {
		return usageError{fmt.Errorf("profile %q is not in %s (haul profile list; haul profile set %s --server URL)", name, path, name)}
	}
	a.profileUsed = name
	if f := cmd.Flags().Lookup("server"); f != nil && !f.Changed && os.Getenv("HAUL_SERVER") == "" && pr.Server != "" {
		// Set as the flag: the server counts as chosen (serverFlagSet),
		// so no embedded server or local read stands in for it.
		if err := cmd.Flags().Set("server", pr.Server); err != nil {
			return err
		}
		a.server = pr.Server
		a.serverFromProfile = true
	}
	sameServer := pr.Server == "" || strings.TrimRight(pr.Server, "/") == strings.TrimRight(a.server, "/")
	if pr.Token != "" && sameServer && strings.TrimSpace(a.token) == "" && strings.TrimSpace(os.Getenv("HAUL_TOKEN")) == "" {
		a.token = pr.Token
	}
	if pr.Team != "" && cmd.Name() == "list" && cmd.HasParent() && cmd.Parent().Name() == "job" {
		if f := cmd.Flags().Lookup("namespace"); f != nil && !f.Changed {
			if err := f.Value.Set(pr.Team); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *app) profileCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profile",
		Short: "Named servers and their tokens (~/.config/haul/config.yaml)",
		Long: `A profile names a server, the token to send it and a default team:

  current: prod
  profiles:
    prod:  {server: https://haul.example.com, token: ..., team: ml}
    local: {server: http://127.0.0.1:7070}

The file is $XDG_CONFIG_HOME/haul/config.yaml (default
~/.config/haul/config.yaml). --profile or $HAUL_PROFILE picks a profile,
else 'current' does. Flags and the environment win over it: --server or
$HAUL_SERVER, --token, $HAUL_API_TOKEN or $HAUL_TOKEN. A profile's token
is sent to its own server only. 'team' is the default namespace of
'haul job list' (a spec names its own namespace).

A file that holds a token must be readable by its owner only (mode 0600):
haul writes it so, and refuses to read a token from one that others may
read. 'haul login' stores a token in a profile.`,
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the profiles (never their tokens)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := configPath()
			p, err := loadProfiles(path)
			if err != nil {
				return err
			}
			cur := a.profileName(p)
			names := make([]string, 0, len(p.Profiles))
			for n := range p.Profiles {
				names = append(names, n)
			}
			slices.Sort(names)
			if a.output == "json" {
				out := []map[string]any{}
				for _, n := range names {
					pr := p.Profiles[n]
					out = append(out, map[string]any{"name": n, "server": pr.Server, "team": pr.Team, "token": pr.Token != "", "current": n == cur})
				}
				return a.printJSON(out)
			}
			if len(names) == 0 {
				fmt.Fprintf(a.stdout, "no profiles in %s: haul profile set NAME --server URL, or haul login\n", path)
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CURRENT\tNAME\tSERVER\tTEAM\tTOKEN")
			for _, n := range names {
				pr := p.Profiles[n]
				mark, tok := "", "-"
				if n == cur {
					mark = "*"
				}
				if pr.Token != "" {
					tok = "stored"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", mark, n, orDash(pr.Server), orDash(pr.Team), tok)
			}
			return tw.Flush()
		},
	}
	use := &cobra.Command{
		Use:   "use NAME",
		Short: "Make a profile the current one",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := configPath()
			p, err := loadProfiles(path)
			if err != nil {
				return err
			}
			if p.Profiles[args[0]] == nil {
				return usageError{fmt.Errorf("profile %q is not in %s (haul profile set %s --server URL)", args[0], path, args[0])}
			}
			p.Current = args[0]
			if err := p.save(path); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "using profile %s (%s)\n", args[0], orDash(p.Profiles[args[0]].Server))
			return nil
		},
	}
	var server, team string
	set := &cobra.Command{
		Use:     "set NAME --server URL [--team T]",
		Short:   "Create or change a profile (the first one made becomes current)",
		Example: "  haul profile set prod --server https://haul.example.com --team ml\n  haul profile use prod",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := configPath()
			p, err := loadProfiles(path)
			if err != nil {
				return err
			}
			if p.Profiles == nil {
				p.Profiles = map[string]*profile{}
			}
			pr := p.Profiles[args[0]]
			if pr == nil {
				pr = &profile{}
				p.Profiles[args[0]] = pr
			}
			if cmd.Flags().Changed("server") {
				if pr.Token != "" && strings.TrimRight(pr.Server, "/") != strings.TrimRight(server, "/") {
					// The token was another server's: never send it here.
					pr.Token = ""
					fmt.Fprintf(a.stderr, "profile %s: its token was for %s and is dropped: haul login --profile %s\n", args[0], pr.Server, args[0])
				}
				pr.Server = server
			}
			if cmd.Flags().Changed("team") {
				pr.Team = team
			}
			if p.Current == "" {
				p.Current = args[0]
			}
			if err := p.save(path); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "profile %s: server %s, team %s\n", args[0], orDash(pr.Server), orDash(pr.Team))
			return nil
		},
	}
	// Its own --server: the global one's default is the environment's.
	set.Flags().StringVar(&server, "server", "", "the profile's server URL")
	set.Flags().StringVar(&team, "team", "", "the profile's default team (job list's namespace)")
	cmd.AddCommand(list, use, set)
	return cmd
}
