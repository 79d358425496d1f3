package kubetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/haul-dev/haul/internal/cli"
)

// productionDir is the production topology's directory (haul gateway and
// haul runner as separate workloads), inside manifestsDir. kubectl apply
// -f on manifestsDir does not descend into it, so the single-process
// topology is applied without it.
const productionDir = "production"

// productionBase lists the files of manifestsDir that the production
// topology uses as they are: everything but the single-process workload,
// its Service and its Ingress.
var productionBase = []string{"00-namespaces.yaml", "10-rbac.yaml", "20-clusters-configmap.yaml", "30-blobs-pvc-readwritemany.yaml"}

// minRunnerGrace is the least termination grace a runner needs to stop
// cleanly: up to 5 s to release its shard leases, 10 s to delete its
// worker pods, 5 s to close its listener.
const minRunnerGrace = 20

// checkProductionManifests dry-runs the production topology on the API
// server of TestDeployManifests, whose namespaces exist: every file alone,
// then the shared files with the whole directory, as docs/kubernetes.md
// applies them; and breaks its files on purpose.
func checkProductionManifests(t *testing.T, k kubectlRunner, c *Cluster, dir string) {
	prod := filepath.Join(dir, productionDir)
	files := manifestFiles(t, prod)
	if len(files) == 0 {
		t.Fatalf("%s holds no manifest", prod)
	}
	total := k.dryRunEach(t, files)
	var paths []string
	for _, b := range productionBase {
		p := filepath.Join(dir, b)
		paths = append(paths, p)
		total += len(documents(t, p))
	}
	t.Run("shared files and the production directory", func(t *testing.T) { k.dryRun(t, total, append(paths, prod)...) })

	// A dry run stores nothing.
	if _, err := c.Clientset().AppsV1().StatefulSets("haul").Get(t.Context(), "haul-runner", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get statefulset haul/haul-runner after a dry run: %v, want not found", err)
	}
	if _, err := c.Clientset().AppsV1().Deployments("haul").Get(t.Context(), "haul-gateway", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get deployment haul/haul-gateway after a dry run: %v, want not found", err)
	}

	t.Run("a broken manifest is rejected", func(t *testing.T) {
		k.wantBroken(t, filepath.Join(prod, "40-gateway.yaml"), []breakCase{
			{"negative minAvailable", "minAvailable: 1\n", "minAvailable: -1\n", "spec.minAvailable"},
			{"privilege escalation", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", `would violate PodSecurity "restricted`},
		})
		k.wantBroken(t, filepath.Join(prod, "45-runner.yaml"), []breakCase{
			{"negative replicas", "replicas: 3\n", "replicas: -3\n", "spec.replicas"},
			{"bad pod management policy", "podManagementPolicy: Parallel", "podManagementPolicy: Eventually", "spec.podManagementPolicy"},
			{"unknown downward API field", "fieldPath: metadata.name", "fieldPath: metadata.nickname", "fieldRef.fieldPath"},
			{"both PDB bounds", "  maxUnavailable: 1\n", "  maxUnavailable: 1\n  minAvailable: 1\n", "minAvailable and maxUnavailable cannot be both set"},
		})
		k.wantBroken(t, filepath.Join(prod, "50-services.yaml"), []breakCase{
			{"bad cluster IP", "clusterIP: None", "clusterIP: nobody", "spec.clusterIP"},
		})
	})
}

// objects decodes every object of files into its typed form, by kind and
// name (all of them are in namespace haul or cluster-wide, apart from the
// workers' namespace's claim, which is skipped).
func objects(t *testing.T, files ...string) map[string]runtime.Object {
	t.Helper()
	objs := map[string]runtime.Object{}
	for _, f := range files {
		for _, doc := range documents(t, f) {
			data, err := json.Marshal(doc)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			obj, gvk, err := scheme.Codecs.UniversalDeserializer().Decode(data, nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			m, err := meta.Accessor(obj)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if m.GetNamespace() != "" && m.GetNamespace() != "haul" {
				continue
			}
			key := gvk.Kind + "/" + m.GetName()
			if _, dup := objs[key]; dup {
				t.Errorf("%s: a second %s", f, key)
			}
			objs[key] = obj
		}
	}
	return objs
}

// object returns the object of that kind and name, typed.
func object[T runtime.Object](t *testing.T, objs map[string]runtime.Object, kind, name string) T {
	t.Helper()
	o, ok := objs[kind+"/"+name].(T)
	if !ok {
		t.Fatalf("no %s %s (have %v)", kind, name, slices.Sorted(func(yield func(string) bool) {
			for k := range objs {
				if !yield(k) {
					return
				}
			}
		}))
	}
	return o
}

// serverArgs parses a haul server container's arguments: the subcommand,
// then --flag value pairs.
func serverArgs(t *testing.T, c corev1.Container) (sub string, flags map[string]string) {
	t.Helper()
	if !slices.Equal(c.Command, []string{"/haul"}) || len(c.Args) == 0 {
		t.Fatalf("container %s: command %q args %q, want /haul SUBCOMMAND ...", c.Name, c.Command, c.Args)
	}
	flags = map[string]string{}
	for i := 1; i < len(c.Args); i++ {
		name, value, ok := strings.Cut(c.Args[i], "=")
		if !ok {
			if i+1 >= len(c.Args) || strings.HasPrefix(c.Args[i+1], "-") {
				t.Fatalf("container %s: argument %q has no value", c.Name, c.Args[i])
			}
			i++
			value = c.Args[i]
		}
		if !strings.HasPrefix(name, "--") {
			t.Fatalf("container %s: argument %q is not a --flag", c.Name, name)
		}
		if _, dup := flags[name]; dup {
			t.Errorf("container %s: %s given twice", c.Name, name)
		}
		flags[name] = value
	}
	return c.Args[0], flags
}

// volumeAt returns the volume a container sees path on: the one mounted
// at the longest prefix of path.
func volumeAt(t *testing.T, spec corev1.PodSpec, c corev1.Container, path string) corev1.Volume {
	t.Helper()
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if (path == m.MountPath || strings.HasPrefix(path, m.MountPath+"/")) && (best == nil || len(m.MountPath) > len(best.MountPath)) {
			best = &c.VolumeMounts[i]
		}
	}
	if best == nil {
		t.Fatalf("container %s: nothing is mounted at %s", c.Name, path)
	}
	i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == best.Name })
	if i < 0 {
		t.Fatalf("container %s mounts volume %s, which the pod does not have", c.Name, best.Name)
	}
	return spec.Volumes[i]
}

// envVar returns a container's variable of that name.
func envVar(t *testing.T, c corev1.Container, name string) corev1.EnvVar {
	t.Helper()
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
	if i < 0 {
		t.Fatalf("container %s has no variable %s", c.Name, name)
	}
	return c.Env[i]
}

// selects reports whether a selector picks pods with these labels.
func selects(t *testing.T, sel *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return !s.Empty() && s.Matches(labels.Set(podLabels))
}

// checkServer checks what every haul server pod of the production
// topology needs, against the shared objects: one container serving HTTPS
// on its one port from Secret haul-tls, PostgreSQL from Secret
// haul-database, the data directory with the shared log claim at blobs/,
// probes that match the scheme, resources, and Prometheus annotations
// that name the port. It returns the container, its flags and its port.
func checkServer(t *testing.T, objs map[string]runtime.Object, tmpl corev1.PodTemplateSpec, sub string) (corev1.Container, map[string]string, corev1.ContainerPort) {
	t.Helper()
	spec := tmpl.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%s pods: %d containers, want 1", sub, len(spec.Containers))
	}
	c := spec.Containers[0]
	gotSub, flags := serverArgs(t, c)
	if gotSub != sub {
		t.Fatalf("container %s runs haul %s, want haul %s", c.Name, gotSub, sub)
	}
	if len(c.Ports) != 1 {
		t.Fatalf("container %s: %d ports, want 1", c.Name, len(c.Ports))
	}
	port := c.Ports[0]
	if want := "0.0.0.0:" + strconv.Itoa(int(port.ContainerPort)); flags["--listen"] != want {
		t.Errorf("%s --listen %q, want %q (the container port, on every interface)", sub, flags["--listen"], want)
	}

	// TLS from haul-tls; beyond loopback haul serves nothing else.
	for flag, key := range map[string]string{"--tls-cert": corev1.TLSCertKey, "--tls-key": corev1.TLSPrivateKeyKey} {
		path := flags[flag]
		if filepath.Base(path) != key {
			t.Errorf("%s %s %q, want the Secret's key %s", sub, flag, path, key)
		}
		if v := volumeAt(t, spec, c, path); v.Secret == nil || v.Secret.SecretName != "haul-tls" {
			t.Errorf("%s %s %s: on volume %s, want Secret haul-tls", sub, flag, path, v.Name)
		}
	}

	// PostgreSQL from the Secret that database-secret.yaml.example shows.
	if flags["--database-url"] != "$(HAUL_DATABASE_URL)" {
		t.Errorf("%s --database-url %q, want $(HAUL_DATABASE_URL)", sub, flags["--database-url"])
	}
	example := object[*corev1.Secret](t, objs, "Secret", "haul-database")
	db := envVar(t, c, "HAUL_DATABASE_URL")
	if ref := db.ValueFrom; ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != example.Name || example.StringData[ref.SecretKeyRef.Key] == "" {
		t.Errorf("%s HAUL_DATABASE_URL = %+v, want Secret %s's key with the URL", sub, db, example.Name)
	}

	// Logs: the shared claim at <data>/blobs.
	blobs := volumeAt(t, spec, c, flags["--data"]+"/blobs")
	if blobs.PersistentVolumeClaim == nil {
		t.Errorf("%s: %s/blobs is on volume %s, want the shared claim", sub, flags["--data"], blobs.Name)
	} else {
		object[*corev1.PersistentVolumeClaim](t, objs, "PersistentVolumeClaim", blobs.PersistentVolumeClaim.ClaimName)
	}

	// Probes: readiness asks /healthz in the scheme served; liveness only
	// whether the port answers.
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Scheme != corev1.URISchemeHTTPS || p.HTTPGet.Port != intstr.FromString(port.Name) {
		t.Errorf("%s readiness probe %+v, want GET /healthz over HTTPS on port %s", sub, p, port.Name)
	}
	if p := c.LivenessProbe; p == nil || p.TCPSocket == nil || p.TCPSocket.Port != intstr.FromString(port.Name) {
		t.Errorf("%s liveness probe %+v, want a TCP check of port %s", sub, p, port.Name)
	}
	if r := c.Resources; r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
		t.Errorf("%s resources %+v, want CPU and memory requests and a memory limit", sub, r)
	}

	// /metrics on the served port.
	want := map[string]string{"prometheus.io/scrape": "true", "prometheus.io/scheme": "https",
		"prometheus.io/port": strconv.Itoa(int(port.ContainerPort)), "prometheus.io/path": "/metrics"}
	for k, v := range want {
		if tmpl.Annotations[k] != v {
			t.Errorf("%s pods: annotation %s = %q, want %q", sub, k, tmpl.Annotations[k], v)
		}
	}
	return c, flags, port
}

// servicePort returns a Service's one port, checking that it targets the
// container port by name.
func servicePort(t *testing.T, svc *corev1.Service, port corev1.ContainerPort) corev1.ServicePort {
	t.Helper()
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != intstr.FromString(port.Name) {
		t.Fatalf("Service %s ports %+v, want one targeting %s", svc.Name, svc.Spec.Ports, port.Name)
	}
	return svc.Spec.Ports[0]
}

// TestProductionTopology checks what the API server cannot: that the
// production topology's objects fit together (Services and budgets select
// their pods and only those, the runners' advertised names are the
// headless Service's, the locator is the gateways' Service, the mounted
// files are where the flags say) and that the arguments are flags that
// haul gateway and haul runner accept.
func TestProductionTopology(t *testing.T) {
	t.Parallel()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, manifestsDir)
	files := manifestFiles(t, filepath.Join(dir, productionDir))
	for _, b := range productionBase {
		files = append(files, filepath.Join(dir, b))
	}
	objs := objects(t, append(files, filepath.Join(dir, "database-secret.yaml.example"))...)

	gw := object[*appsv1.Deployment](t, objs, "Deployment", "haul-gateway")
	gwSvc := object[*corev1.Service](t, objs, "Service", "haul-gateway")
	gwPDB := object[*policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", "haul-gateway")
	rn := object[*appsv1.StatefulSet](t, objs, "StatefulSet", "haul-runner")
	rnSvc := object[*corev1.Service](t, objs, "Service", "haul-runner")
	rnPDB := object[*policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", "haul-runner")
	gwLabels, rnLabels := gw.Spec.Template.Labels, rn.Spec.Template.Labels

	t.Run("selectors", func(t *testing.T) {
		for _, tc := range []struct {
			what     string
			sel      *metav1.LabelSelector
			own, not map[string]string
		}{
			{"Deployment haul-gateway", gw.Spec.Selector, gwLabels, rnLabels},
			{"Service haul-gateway", &metav1.LabelSelector{MatchLabels: gwSvc.Spec.Selector}, gwLabels, rnLabels},
			{"PodDisruptionBudget haul-gateway", gwPDB.Spec.Selector, gwLabels, rnLabels},
			{"StatefulSet haul-runner", rn.Spec.Selector, rnLabels, gwLabels},
			{"Service haul-runner", &metav1.LabelSelector{MatchLabels: rnSvc.Spec.Selector}, rnLabels, gwLabels},
			{"PodDisruptionBudget haul-runner", rnPDB.Spec.Selector, rnLabels, gwLabels},
		} {
			if !selects(t, tc.sel, tc.own) || selects(t, tc.sel, tc.not) {
				t.Errorf("%s selects %v: want its own pods %v and not %v", tc.what, tc.sel, tc.own, tc.not)
			}
		}
	})

	t.Run("gateways", func(t *testing.T) {
		if r := gw.Spec.Replicas; r == nil || *r < 2 {
			t.Errorf("haul-gateway replicas %v, want 2 or more", r)
		}
		if gwPDB.Spec.MinAvailable == nil || *gwPDB.Spec.MinAvailable != intstr.FromInt32(1) || gwPDB.Spec.MaxUnavailable != nil {
			t.Errorf("PodDisruptionBudget haul-gateway %+v, want minAvailable 1", gwPDB.Spec)
		}
		c, flags, port := checkServer(t, objs, gw.Spec.Template, "gateway")
		servicePort(t, gwSvc, port)
		if gwSvc.Spec.ClusterIP == corev1.ClusterIPNone {
			t.Errorf("Service haul-gateway is headless; want one address balanced over the gateways")
		}
		for _, f := range []string{"--backend", "--kube-clusters", "--runner-url", "--advertise", "--locator"} {
			if _, ok := flags[f]; ok {
				t.Errorf("haul gateway is given %s, which only a runner uses", f)
			}
		}
		// The gateway calls runners over HTTPS with Go's system roots:
		// SSL_CERT_DIR must add the directory of the served certificate.
		certDir := filepath.Dir(flags["--tls-cert"])
		if dirs := strings.Split(envVar(t, c, "SSL_CERT_DIR").Value, ":"); !slices.Contains(dirs, certDir) || !slices.Contains(dirs, "/etc/ssl/certs") {
			t.Errorf("haul gateway SSL_CERT_DIR %v, want the system's /etc/ssl/certs and %s", dirs, certDir)
		}
	})

	t.Run("runners", func(t *testing.T) {
		if r := rn.Spec.Replicas; r == nil || *r != 3 {
			t.Errorf("haul-runner replicas %v, want 3", r)
		}
		if rnPDB.Spec.MaxUnavailable == nil || *rnPDB.Spec.MaxUnavailable != intstr.FromInt32(1) || rnPDB.Spec.MinAvailable != nil {
			t.Errorf("PodDisruptionBudget haul-runner %+v, want maxUnavailable 1", rnPDB.Spec)
		}
		if rn.Spec.ServiceName != rnSvc.Name || rnSvc.Spec.ClusterIP != corev1.ClusterIPNone || !rnSvc.Spec.PublishNotReadyAddresses {
			t.Errorf("StatefulSet serviceName %q, Service %s clusterIP %q publishNotReadyAddresses %v: want the headless Service, publishing every runner's name",
				rn.Spec.ServiceName, rnSvc.Name, rnSvc.Spec.ClusterIP, rnSvc.Spec.PublishNotReadyAddresses)
		}
		if g := rn.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g < minRunnerGrace {
			t.Errorf("haul-runner terminationGracePeriodSeconds %v, want at least %d", g, minRunnerGrace)
		}
		c, flags, port := checkServer(t, objs, rn.Spec.Template, "runner")
		rnPort := servicePort(t, rnSvc, port)
		gwPort := servicePort(t, gwSvc, gw.Spec.Template.Spec.Containers[0].Ports[0])
		for name, field := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"} {
			if e := envVar(t, c, name); e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != field {
				t.Errorf("haul runner %s = %+v, want the downward API's %s", name, e, field)
			}
		}
		want := map[string]string{
			"--advertise":     fmt.Sprintf("https://$(POD_NAME).%s.$(POD_NAMESPACE).svc:%d", rnSvc.Name, rnPort.Port),
			"--locator":       fmt.Sprintf("https://%s.$(POD_NAMESPACE).svc:%d", gwSvc.Name, gwPort.Port),
			"--backend":       "kube",
			"--kube-instance": "$(POD_NAME)",
		}
		for f, v := range want {
			if flags[f] != v {
				t.Errorf("haul runner %s %q, want %q", f, flags[f], v)
			}
		}
		if u, ok := flags["--runner-url"]; ok {
			t.Errorf("haul runner --runner-url %q: it would replace every runner's own address (--advertise) with one", u)
		}

		// The kube backend: the clusters file from the ConfigMap, the
		// identity the RBAC binds, the claim workers mount.
		clusters := flags["--kube-clusters"]
		v := volumeAt(t, rn.Spec.Template.Spec, c, clusters)
		if v.ConfigMap == nil {
			t.Fatalf("haul runner --kube-clusters %s is on volume %s, want ConfigMap haul-clusters", clusters, v.Name)
		}
		cm := object[*corev1.ConfigMap](t, objs, "ConfigMap", v.ConfigMap.Name)
		if _, ok := cm.Data[filepath.Base(clusters)]; !ok {
			t.Errorf("haul runner --kube-clusters %s: ConfigMap %s has no key %s", clusters, cm.Name, filepath.Base(clusters))
		}
		sa := rn.Spec.Template.Spec.ServiceAccountName
		rb := object[*rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding", "haul-nodes")
		if !slices.ContainsFunc(rb.Subjects, func(s rbacv1.Subject) bool {
			return s.Kind == rbacv1.ServiceAccountKind && s.Name == sa && s.Namespace == rn.Namespace
		}) {
			t.Errorf("haul runner runs as ServiceAccount %s, which ClusterRoleBinding %s does not bind (%+v)", sa, rb.Name, rb.Subjects)
		}
		blobs := volumeAt(t, rn.Spec.Template.Spec, c, flags["--data"]+"/blobs")
		if blobs.PersistentVolumeClaim == nil || flags["--worker-shared-claim"] != blobs.PersistentVolumeClaim.ClaimName {
			t.Errorf("haul runner --worker-shared-claim %q, want the claim it mounts at %s/blobs (%+v)", flags["--worker-shared-claim"], flags["--data"], blobs.VolumeSource)
		}
	})
}

// TestServerArgsParse hands every haul server container's arguments in
// deploy/kubernetes to haul's own command line, with --help, which parses
// every flag and its value and then only prints the help: a misspelt flag
// or a value of the wrong type fails here, not at a pod's start.
func TestServerArgsParse(t *testing.T) {
	t.Parallel()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, manifestsDir)
	objs := objects(t, append(manifestFiles(t, filepath.Join(dir, productionDir)), filepath.Join(dir, "40-deployment.yaml"))...)
	var containers []corev1.Container
	for _, key := range []string{"Deployment/haul", "Deployment/haul-gateway", "StatefulSet/haul-runner"} {
		switch o := objs[key].(type) {
		case *appsv1.Deployment:
			containers = append(containers, o.Spec.Template.Spec.Containers...)
		case *appsv1.StatefulSet:
			containers = append(containers, o.Spec.Template.Spec.Containers...)
		default:
			t.Fatalf("no %s", key)
		}
	}
	parses := func(args []string) (int, string) {
		var out, errb bytes.Buffer
		code := cli.Main(append(slices.Clone(args), "--help"), strings.NewReader(""), &out, &errb)
		return code, errb.String()
	}
	for _, c := range containers {
		if code, stderr := parses(c.Args); code != 0 {
			t.Errorf("haul %s: exit %d:\n%s", strings.Join(c.Args, " "), code, stderr)
		}
		// The check fails a flag haul does not know.
		if code, _ := parses(append(slices.Clone(c.Args), "--no-such-flag", "x")); code == 0 {
			t.Errorf("haul %s --no-such-flag x --help: exit 0, want a usage error", c.Args[0])
		}
	}
}
