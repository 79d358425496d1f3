package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
)

// TestZeroSetupAuth: `haul up` on a fresh data directory makes its own
// admin token, private to its unix user, and that user's CLI uses it with
// no flag and no token in the environment; jobs record it as their
// submitter; files and folders of the data directory are the user's only;
// another unix user's CLI is refused as unauthenticated.
func TestZeroSetupAuth(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	s := startUp(t, freePort(t), data, "")
	spec := writeSpec(t, "name: zero-setup\ntasks:\n  - {key: a, command: [sh, -c, \"echo zero\"]}\n")
	// HAUL_API_TOKEN set empty: the CLI must find the token itself.
	env := []string{"HAUL_SERVER=" + s.url(), "HAUL_DATA=" + data, "HAUL_API_TOKEN=", "HAUL_TOKEN="}
	r := haul(t, env, "job", "submit", spec)
	if r.code != 0 {
		t.Fatalf("haul job submit with no credential given: exit %d: %s", r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	j := waitJob(t, s.client(), id, 2*time.Minute, func(j *apiv1.Job) bool { return j.State == "succeeded" })
	if j.SubmittedBy != "local-admin" {
		t.Errorf("submitted_by %q, want local-admin", j.SubmittedBy)
	}
	r = haul(t, env, "job", "get", id, "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"submitted_by": "local-admin"`) {
		t.Errorf("haul job get: exit %d, %s %s; want submitted_by local-admin", r.code, r.stdout, r.stderr)
	}

	for path, want := range map[string]os.FileMode{
		data:                               0o700,
		filepath.Join(data, "admin-token"): 0o600,
		filepath.Join(data, "haul.db"):     0o600,
		filepath.Join(data, "blobs"):       0o700,
		filepath.Join(data, "workers"):     0o700,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", path, got, want)
		}
	}
	// Everything under the workers' folder is private too.
	filepath.Walk(filepath.Join(data, "workers"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %o, readable by others", p, fi.Mode().Perm())
		}
		return nil
	})

	// A second start reuses the token.
	before := s.token
	s.stop()
	s2 := startUp(t, freePort(t), data, "")
	if s2.token != before {
		t.Errorf("a restarted server made a new admin token; want the valid one reused")
	}

	// Another unix user: the admin token is not theirs to read.
	if os.Geteuid() != 0 {
		t.Fatalf("this test runs the CLI as user nobody, which needs root (running as uid %d)", os.Geteuid())
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	// A copy of haul and a spec nobody may read and run.
	pub, err := os.MkdirTemp("", "haul-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pub) })
	if err := os.Chmod(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(pub, "haul")
	copyFile(t, haulBin, bin, 0o755)
	pubSpec := filepath.Join(pub, "job.yaml")
	copyFile(t, spec, pubSpec, 0o644)
	for _, args := range [][]string{{"job", "submit", pubSpec}, {"job", "list"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = pub
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + pub, "HAUL_SERVER=" + s2.url(), "HAUL_DATA=" + data}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if err == nil || !strings.Contains(out.String(), "unauthenticated") {
			t.Errorf("haul %s as nobody: %v, %s; want refused as unauthenticated", strings.Join(args, " "), err, out.String())
		}
	}
}

// TestListenBeyondLoopbackNeedsTLS: `haul up` on a non-loopback address
// without TLS refuses to start, saying how to configure it.
func TestListenBeyondLoopbackNeedsTLS(t *testing.T) {
	t.Parallel()
	_, port, _ := net.SplitHostPort(freePort(t))
	for _, listen := range []string{"0.0.0.0:" + port, ":" + port} {
		r := haul(t, nil, "up", "--listen", listen, "--data", t.TempDir())
		if r.code == 0 || !strings.Contains(r.stderr, "--tls-cert") || !strings.Contains(r.stderr, "--tls-key") {
			t.Errorf("haul up --listen %s without TLS: exit %d, %s; want refused naming --tls-cert and --tls-key", listen, r.code, r.stderr)
		}
	}
	r := haul(t, nil, "up", "--help")
	if !strings.Contains(r.stdout, "--tls-cert") || !strings.Contains(r.stdout, "beyond loopback") {
		t.Errorf("haul up --help does not say that listening beyond loopback needs TLS:\n%s", r.stdout)
	}
}

// TestTLS: `haul up` with a certificate serves HTTPS; a job runs end to end
// through the CLI with --ca (the workers poll over TLS, trusting the same
// certificate), and a client that does not trust the certificate fails to
// verify it.
func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := selfSigned(t, certFile, keyFile)
	addr := freePort(t)
	data := t.TempDir()
	s := &upServer{t: t, addr: addr, data: data, https: true, log: &syncBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(haulBin, "up", "--listen", addr, "--data", data, "--log-level", "warn", "--tls-cert", certFile, "--tls-key", keyFile)
	s.cmd.Dir = repoRoot(t)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(s.stop)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get(s.url() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				if resp.ProtoMajor != 2 {
					t.Errorf("HTTPS served %s, want HTTP/2", resp.Proto)
				}
				break
			}
		}
		select {
		case <-s.exited:
			t.Fatalf("haul up exited: %s", s.log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("haul up not ready after 30s: %s", s.log)
		}
	}
	s.readAdminToken()

	spec := writeSpec(t, "name: over-tls\ntasks:\n  - {key: a, command: [sh, -c, \"echo secure\"]}\n  - {key: b, command: [sh, -c, \"echo b\"], after: [a]}\n")
	r := haul(t, []string{"HAUL_SERVER="}, "run", spec, "--server", s.url(), "--ca", certFile)
	if r.code != 0 {
		t.Fatalf("haul run over TLS with --ca: exit %d: %s\nserver: %s", r.code, r.stderr, s.log)
	}
	id := strings.SplitN(strings.TrimSpace(r.stdout), "\n", 2)[0]
	r = haul(t, []string{"HAUL_SERVER=" + s.url(), "HAUL_CA=" + certFile}, "task", "logs", id, "a")
	if r.code != 0 || !strings.Contains(r.stdout, "secure") {
		t.Errorf("haul task logs with HAUL_CA: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}

	// Without the certificate trusted: refused by the client, naming why.
	r = haul(t, []string{"HAUL_SERVER=" + s.url(), "HAUL_CA="}, "job", "get", id)
	if r.code == 0 || !strings.Contains(r.stderr, "certificate") {
		t.Errorf("haul job get without --ca: exit %d, %s; want a certificate verification failure", r.code, r.stderr)
	}
	// Plain HTTP to the TLS port gets no API answer.
	resp, err := http.Get("http://" + addr + "/healthz")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("plain HTTP to the TLS port: %d %s, want refused", resp.StatusCode, body)
		}
	}
	// Trusting the certificate is not enough: the API wants a token.
	c := apiv1connect.NewJobServiceClient(hc, s.url())
	if _, err := c.GetJob(context.Background(), connect.NewRequest(&apiv1.GetJobRequest{JobId: id})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("API client over TLS without a token: %v, want unauthenticated", err)
	}
	if _, err := s.client().GetJob(context.Background(), connect.NewRequest(&apiv1.GetJobRequest{JobId: id})); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("API client with the token but not the CA: %v, want a certificate error", err)
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and localhost
// and its key, and returns a pool that trusts it.
func selfSigned(t *testing.T, certFile, keyFile string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "haul e2e"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to, mode); err != nil {
		t.Fatal(err)
	}
}
