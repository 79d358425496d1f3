package kubetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/haul-dev/haul/internal/kube"
)

// kubectlTimeout bounds one kubectl run; it is a failsafe against a hang,
// not an expectation.
const kubectlTimeout = 2 * time.Minute

// manifestsDir is the deployment's directory, relative to the repository
// root.
const manifestsDir = "deploy/kubernetes"

// kubectlRunner runs kubectl against one test cluster.
type kubectlRunner struct {
	t          *testing.T
	bin        string
	kubeconfig string
	cacheDir   string
}

// run runs kubectl with args and returns its output and exit code (-1 if
// it could not run or was killed).
func (k kubectlRunner) run(args ...string) (stdout, stderr string, code int) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(k.t.Context(), kubectlTimeout)
	defer cancel()
	full := append([]string{"--kubeconfig", k.kubeconfig, "--cache-dir", k.cacheDir}, args...)
	cmd := exec.CommandContext(ctx, k.bin, full...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errb.String(), 0
	case errors.As(err, &exit) && ctx.Err() == nil:
		return out.String(), errb.String(), exit.ExitCode()
	default:
		k.t.Fatalf("kubectl %s: %v (ctx: %v)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, ctx.Err(), out.String(), errb.String())
		return "", "", -1
	}
}

// manifestFiles returns the files that `kubectl apply -f DIR` reads in the
// deployment's directory, in its order.
func manifestFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".yaml", ".yml", ".json":
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(files)
	return files
}

// documents decodes every YAML document in a file that is not empty.
func documents(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// dryRunLines returns kubectl's "(server dry run)" lines.
func dryRunLines(stdout string) []string {
	var lines []string
	for line := range strings.Lines(stdout) {
		if line = strings.TrimSpace(line); strings.HasSuffix(line, "(server dry run)") {
			lines = append(lines, line)
		}
	}
	return lines
}

// TestDeployManifests runs `kubectl apply --dry-run=server` on every file of
// deploy/kubernetes against a real API server: schemas, validation, strict
// field checks (unknown fields are refused), RBAC references and Pod
// Security warnings are the server's. It also breaks the Deployment on
// purpose, to show that a bad manifest fails the check, and checks the
// production topology (deploy/kubernetes/production) on the same server.
func TestDeployManifests(t *testing.T) {
	t.Parallel()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, manifestsDir)
	files := manifestFiles(t, dir)
	namespaces := filepath.Join(dir, "00-namespaces.yaml")
	deployment := filepath.Join(dir, "40-deployment.yaml")
	for _, want := range []string{namespaces, deployment} {
		if !slices.Contains(files, want) {
			t.Fatalf("%s is missing from %s (have %v)", filepath.Base(want), manifestsDir, files)
		}
	}

	k := kubectlRunner{t: t, bin: Kubectl(t), cacheDir: t.TempDir()}
	c := Start(t)
	k.kubeconfig = c.Kubeconfig()
	if stdout, stderr, code := k.run("version", "--client"); code != 0 || !strings.Contains(stdout, "Client Version: "+Version+"\n") {
		t.Errorf("kubectl version --client: exit %d, want Client Version: %s\n%s%s", code, Version, stdout, stderr)
	}

	// The namespaces must come first: on an empty cluster they are the only
	// objects a dry run can accept, since nothing else's namespace exists.
	if files[0] != namespaces {
		t.Errorf("kubectl applies %s first; want %s, so that the namespaces exist before what is in them", files[0], namespaces)
	}
	t.Run("namespaces on an empty cluster", func(t *testing.T) {
		k.dryRun(t, len(documents(t, namespaces)), namespaces)
	})
	if stdout, stderr, code := k.run("apply", "-f", namespaces); code != 0 {
		t.Fatalf("kubectl apply -f %s: exit %d\n%s%s", namespaces, code, stdout, stderr)
	}

	total := k.dryRunEach(t, files)
	t.Run("the whole directory", func(t *testing.T) { k.dryRun(t, total, dir) })

	// The example Secret is not applied with the directory, but must be
	// valid for whoever copies it.
	secret := filepath.Join(dir, "database-secret.yaml.example")
	t.Run(filepath.Base(secret), func(t *testing.T) { k.dryRun(t, len(documents(t, secret)), secret) })

	// A dry run stores nothing.
	_, err = c.Clientset().AppsV1().Deployments("haul").Get(t.Context(), "haul", metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("get deployment haul/haul after a dry run: %v, want not found", err)
	}

	// The same checks must fail a broken Deployment: refused by the server,
	// or accepted with a warning.
	t.Run("a broken manifest is rejected", func(t *testing.T) {
		k.wantBroken(t, deployment, []breakCase{
			{"negative replicas", "replicas: 1\n", "replicas: -1\n", "spec.replicas"},
			{"unknown field", "imagePullPolicy:", "imagePulPolicy:", `unknown field "spec.template.spec.containers[0].imagePulPolicy"`},
			{"bad port name", "name: http\n", "name: HTTP_PORT\n", "ports[0].name"},
			// Accepted, but with the warning that dryRun refuses.
			{"privilege escalation", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", `would violate PodSecurity "restricted`},
		})
	})

	// The production topology is checked on the same server.
	t.Run("production topology", func(t *testing.T) { checkProductionManifests(t, k, c, dir) })
}

// dryRun applies paths with --dry-run=server and wants exit 0, no
// warnings, and one dry-run line per document.
func (k kubectlRunner) dryRun(t *testing.T, wantObjects int, paths ...string) {
	t.Helper()
	args := []string{"apply", "--dry-run=server"}
	for _, p := range paths {
		args = append(args, "-f", p)
	}
	stdout, stderr, code := k.run(args...)
	if code != 0 {
		t.Fatalf("kubectl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
	}
	if strings.Contains(stderr, "Warning") {
		t.Errorf("kubectl %s warned:\n%s", strings.Join(args, " "), stderr)
	}
	if got := dryRunLines(stdout); len(got) != wantObjects {
		t.Errorf("kubectl %s: %d objects accepted, want %d:\n%s", strings.Join(args, " "), len(got), wantObjects, stdout)
	}
}

// dryRunEach dry-runs each file alone, in a subtest named for it, and
// returns how many objects the files hold together; a file that holds none
// is an error.
func (k kubectlRunner) dryRunEach(t *testing.T, files []string) int {
	t.Helper()
	total := 0
	for _, f := range files {
		n := len(documents(t, f))
		if n == 0 {
			t.Errorf("%s holds no object", f)
		}
		total += n
		t.Run(filepath.Base(f), func(t *testing.T) { k.dryRun(t, n, f) })
	}
	return total
}

// breakCase is one way to break a manifest: replace the first old with
// new, and want kubectl's complaint to contain want.
type breakCase struct{ name, old, new, want string }

// wantBroken applies each broken copy of path with --dry-run=server and
// wants it refused by the server, or accepted with a warning (which
// dryRun refuses), in words that contain the case's want. It shows that
// the dry run can fail the file at all.
func (k kubectlRunner) wantBroken(t *testing.T, path string, cases []breakCase) {
	t.Helper()
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		if !bytes.Contains(orig, []byte(tc.old)) {
			t.Fatalf("%s no longer contains %q: update this test", path, tc.old)
		}
		broken := filepath.Join(t.TempDir(), "broken.yaml")
		if err := os.WriteFile(broken, bytes.Replace(orig, []byte(tc.old), []byte(tc.new), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := k.run("apply", "--dry-run=server", "-f", broken)
		if code == 0 && !strings.Contains(stderr, "Warning") {
			t.Errorf("%s: %s: kubectl accepted it without a warning:\n%s%s", filepath.Base(path), tc.name, stdout, stderr)
			continue
		}
		if !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: %s: exit %d, but kubectl does not say %q:\n%s", filepath.Base(path), tc.name, code, tc.want, stderr)
		}
	}
}

// TestClustersConfigMap reads the clusters file in the ConfigMap with the
// kube backend's own parser and checks what the rest of the deployment
// assumes: one enabled in-cluster entry whose workers go to haul-workers.
func TestClustersConfigMap(t *testing.T) {
	t.Parallel()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	docs := documents(t, filepath.Join(root, manifestsDir, "20-clusters-configmap.yaml"))
	if len(docs) != 1 {
		t.Fatalf("want one ConfigMap, got %d documents", len(docs))
	}
	data, _ := docs[0]["data"].(map[string]any)
	text, ok := data["clusters.yaml"].(string)
	if !ok {
		t.Fatalf("the ConfigMap has no data.clusters.yaml string: %v", docs[0]["data"])
	}
	clusters, err := kube.ParseClusters([]byte(text))
	if err != nil {
		t.Fatalf("clusters.yaml: %v", err)
	}
	want := []kube.ClusterConfig{{Name: "local", InCluster: true, Namespace: "haul-workers", Enabled: true}}
	if !reflect.DeepEqual(clusters, want) {
		t.Errorf("clusters.yaml = %+v, want %+v", clusters, want)
	}
}
