package e2e

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/pgtest"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/postgres"
	"github.com/haul-dev/haul/internal/store/sqlite"
)

// TestSecretEnv runs a job whose spec has a secret_env on `haul up` (SQLite
// and PostgreSQL): the task's process gets the value, and nothing else
// shows it: not `haul task get`, `haul job get -o json` or `haul task
// repro`, not the API's reads, not the server's own log at debug level, not
// the stored spec, not any file under the data directory but the database.
func TestSecretEnv(t *testing.T) {
	t.Parallel()
	for _, st := range []string{"sqlite", "postgres"} {
		t.Run(st, func(t *testing.T) {
			t.Parallel()
			dbURL := ""
			if st == "postgres" {
				dbURL = pgtest.Start(t)
			}
			const value = "pw-e2e-5b7d1f93-secret"
			data := t.TempDir()
			out := filepath.Join(t.TempDir(), "seen")
			s := startUp(t, freePort(t), data, dbURL, "--log-level", "debug")
			tok, err := os.ReadFile(filepath.Join(data, "admin-token"))
			if err != nil {
				t.Fatalf("the server's admin token: %v", err)
			}
			admin := strings.TrimSpace(string(tok))
			env := []string{"HAUL_SERVER=" + s.url(), "HAUL_API_TOKEN=" + admin}
			spec := `name: with-secret
secret_env:
  DB_PASSWORD: ` + value + `
env: {PLAIN: plain-value}
tasks:
  - key: use
    command: [sh, -c, 'printf "%s|%s" "$DB_PASSWORD" "$PLAIN" > "$OUT"; echo used the password']
    env: {OUT: ` + out + `}
`
			var got []byte
			r := haul(t, env, "run", writeSpec(t, spec))
			if r.code != 0 {
				t.Fatalf("haul run: exit %d\n%s\n%s\nserver: %s", r.code, r.stdout, r.stderr, s.log)
			}
			id := strings.SplitN(r.stdout, "\n", 2)[0]
			if strings.Contains(r.stdout+r.stderr, value) {
				t.Errorf("haul run prints the secret:\n%s\n%s", r.stdout, r.stderr)
			}
			got, err = os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if want := value + "|plain-value"; string(got) != want {
				t.Fatalf("the task saw %q, want %q: the secret must reach its environment", got, want)
			}

			shown := func(what, text string) {
				t.Helper()
				if strings.Contains(text, value) {
					t.Errorf("%s shows the secret value:\n%s", what, text)
				}
			}
			r = haul(t, env, "task", "get", id, "use")
			if r.code != 0 {
				t.Fatalf("task get: exit %d %s", r.code, r.stderr)
			}
			shown("haul task get", r.stdout+r.stderr)
			if !strings.Contains(r.stdout, "DB_PASSWORD=<secret>") {
				t.Errorf("haul task get does not name the secret as DB_PASSWORD=<secret>:\n%s", r.stdout)
			}
			r = haul(t, env, "task", "get", id, "use", "-o", "json")
			shown("haul task get -o json", r.stdout+r.stderr)
			r = haul(t, env, "job", "get", id, "-o", "json")
			if r.code != 0 {
				t.Fatalf("job get: exit %d %s", r.code, r.stderr)
			}
			shown("haul job get -o json", r.stdout+r.stderr)
			if !strings.Contains(r.stdout, "DB_PASSWORD") {
				t.Errorf("haul job get -o json does not list the secret's name:\n%s", r.stdout)
			}
			r = haul(t, env, "task", "logs", id, "use")
			shown("haul task logs", r.stdout+r.stderr)

			// repro: the command reads the secret from the user's shell.
			r = haul(t, env, "task", "repro", id, "use")
			if r.code != 0 {
				t.Fatalf("task repro: exit %d %s", r.code, r.stderr)
			}
			shown("haul task repro", r.stdout+r.stderr)
			if !strings.Contains(r.stdout, `DB_PASSWORD="${DB_PASSWORD}"`) || !strings.Contains(r.stderr, "DB_PASSWORD") {
				t.Errorf("haul task repro must pass DB_PASSWORD from the shell and say so on stderr:\nstdout: %s\nstderr: %s", r.stdout, r.stderr)
			}
			sh := exec.Command("sh", "-c", r.stdout)
			sh.Env = []string{"PATH=" + os.Getenv("PATH"), "DB_PASSWORD=filled-in-by-me"}
			if o, err := sh.CombinedOutput(); err != nil {
				t.Fatalf("repro command: %v %s\n%s", err, o, r.stdout)
			}
			if got, _ := os.ReadFile(out); string(got) != "filled-in-by-me|plain-value" {
				t.Errorf("the repro command wrote %q, want the value exported in the shell", got)
			}
			r = haul(t, env, "task", "repro", id, "use", "-o", "json")
			shown("haul task repro -o json", r.stdout+r.stderr)

			// The API's reads.
			c := apiv1connect.NewJobServiceClient(&http.Client{Transport: secretsBearer{admin}}, s.url())
			ctx := context.Background()
			var msgs []proto.Message
			if m, err := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: id})); err != nil {
				t.Fatal(err)
			} else {
				msgs = append(msgs, m.Msg)
				if names := m.Msg.Job.SecretEnvNames; len(names) != 1 || names[0] != "DB_PASSWORD" {
					t.Errorf("GetJob: secret_env_names %v, want [DB_PASSWORD]", names)
				}
			}
			if m, err := c.ListJobs(ctx, connect.NewRequest(&apiv1.ListJobsRequest{})); err != nil {
				t.Fatal(err)
			} else {
				msgs = append(msgs, m.Msg)
			}
			if m, err := c.ListTasks(ctx, connect.NewRequest(&apiv1.ListTasksRequest{JobId: id})); err != nil {
				t.Fatal(err)
			} else {
				msgs = append(msgs, m.Msg)
			}
			if m, err := c.GetTask(ctx, connect.NewRequest(&apiv1.GetTaskRequest{JobId: id, Key: "use"})); err != nil {
				t.Fatal(err)
			} else {
				msgs = append(msgs, m.Msg)
			}
			for _, m := range msgs {
				wire, err := proto.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				shown(string(m.ProtoReflect().Descriptor().Name())+" (wire)", string(wire))
				shown(string(m.ProtoReflect().Descriptor().Name()), protojson.Format(m))
			}

			// The server's own log, and the files it wrote, once it has
			// stopped.
			s.stop()
			shown("the server's log", s.log.String())
			err = filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() || strings.HasPrefix(d.Name(), "haul.db") {
					return err
				}
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				if bytes.Contains(b, []byte(value)) {
					t.Errorf("%s holds the secret value", p)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var db store.Store
			if dbURL != "" {
				db, err = postgres.Open(ctx, dbURL, slog.New(slog.DiscardHandler))
			} else {
				db, err = sqlite.Open(ctx, filepath.Join(data, "haul.db"), slog.New(slog.DiscardHandler))
			}
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			j, err := db.GetJob(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			shown("the stored spec", string(j.Spec))
			if !strings.Contains(string(j.Spec), "DB_PASSWORD: <secret>") {
				t.Errorf("the stored spec does not show the placeholder:\n%s", j.Spec)
			}
		})
	}
}

// secretsBearer sends the server's admin token with every request.
type secretsBearer struct{ token string }

func (b secretsBearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}
