package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// maxStartAttempts bounds the retries of a server whose port another
// process took between our pick and its bind.
const maxStartAttempts = 5

// addrInUse is what etcd and kube-apiserver log when a port is taken.
const addrInUse = "address already in use"

// credentials are the files the API server authenticates with.
type credentials struct {
	token     string // bearer token of the system:masters user
	tokenFile string // --token-auth-file
	saKey     string // service-account signing key (PKCS#1 PEM)
	saPub     string // its public key (PKIX PEM)
}

// writeCredentials writes a random admin token and a service-account key
// pair into dir. The key is generated here so that no openssl is needed.
func writeCredentials(dir string) (credentials, error) {
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return credentials{}, fmt.Errorf("generate token: %w", err)
	}
	creds := credentials{
		token:     hex.EncodeToString(raw[:]),
		tokenFile: filepath.Join(dir, "tokens.csv"),
		saKey:     filepath.Join(dir, "sa.key"),
		saPub:     filepath.Join(dir, "sa.pub"),
	}
	// token,user,uid,"group1,group2"
	line := creds.token + ",kubetest-admin,kubetest-admin,system:masters\n"
	if err := os.WriteFile(creds.tokenFile, []byte(line), 0o600); err != nil {
		return credentials{}, fmt.Errorf("write token file: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return credentials{}, fmt.Errorf("generate service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return credentials{}, fmt.Errorf("encode service-account public key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(creds.saKey, keyPEM, 0o600); err != nil {
		return credentials{}, fmt.Errorf("write service-account key: %w", err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	if err := os.WriteFile(creds.saPub, pubPEM, 0o644); err != nil {
		return credentials{}, fmt.Errorf("write service-account public key: %w", err)
	}
	return creds, nil
}

// startEtcd starts etcd on two free loopback ports (client, peer), retrying
// on new ports when one was taken, and returns its client URL once it
// answers as the member this cluster started.
func (c *Cluster) startEtcd(ctx context.Context, binDir string, ports portPicker) (string, error) {
	var raw [6]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("generate etcd name: %w", err)
	}
	name := "kubetest-" + hex.EncodeToString(raw[:])
	dataDir := filepath.Join(c.dir, "etcd")
	logPath := filepath.Join(c.dir, "etcd.log")
	for attempt := 1; ; attempt++ {
		p, err := ports(2)
		if err != nil {
			return "", err
		}
		clientURL := "http://127.0.0.1:" + strconv.Itoa(p[0])
		peerURL := "http://127.0.0.1:" + strconv.Itoa(p[1])
		if err := os.RemoveAll(dataDir); err != nil { // left by a failed attempt
			return "", fmt.Errorf("clear etcd data directory: %w", err)
		}
		proc, err := startProcess("etcd", filepath.Join(binDir, "etcd"), []string{
			"--name=" + name,
			"--data-dir=" + dataDir,
			"--listen-client-urls=" + clientURL,
			"--advertise-client-urls=" + clientURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=" + name + "=" + peerURL,
			"--log-level=warn",
			"--unsafe-no-fsync",
		}, logPath)
		if err != nil {
			return "", err
		}
		c.etcd = proc
		err = waitEtcd(ctx, proc, clientURL, name)
		if err == nil {
			c.log.Debug("kubetest: etcd ready", "url", clientURL, "attempt", attempt)
			return clientURL, nil
		}
		stopErr := proc.stop(stopGrace)
		if !errors.Is(err, errPortTaken) || attempt == maxStartAttempts {
			return "", fmt.Errorf("start etcd (attempt %d, log %s): %w (stop: %v)\netcd log tail:\n%s",
				attempt, logPath, err, stopErr, proc.logTail())
		}
		c.log.Warn("kubetest: etcd port taken, retrying on new ports", "ports", p, "attempt", attempt)
	}
}

// waitEtcd polls etcd's member list until it names our member. Another
// etcd on the port (a lost bind race) names another member.
func waitEtcd(ctx context.Context, proc *process, clientURL, name string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		if proc.exited() {
			if proc.logContains(addrInUse) {
				return errPortTaken
			}
			return fmt.Errorf("etcd exited: %v", proc.waitErr)
		}
		members, err := etcdMembers(ctx, client, clientURL)
		if err == nil {
			for _, m := range members {
				if m == name {
					return nil
				}
			}
			return fmt.Errorf("%w: etcd at %s has members %v, not %s", errPortTaken, clientURL, members, name)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd not ready: %w (last error: %v)", ctx.Err(), err)
		case <-proc.done:
		case <-ticker.C:
		}
	}
}

// etcdMembers lists member names through etcd's JSON gateway.
func etcdMembers(ctx context.Context, client *http.Client, clientURL string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, clientURL+"/v3/cluster/member/list", bytes.NewReader([]byte("{}")))
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("member list: %s: %s", resp.Status, body)
	}
	var list struct {
		Members []struct {
			Name string `json:"name"`
		} `json:"members"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("member list: %w", err)
	}
	names := make([]string, 0, len(list.Members))
	for _, m := range list.Members {
		names = append(names, m.Name)
	}
	return names, nil
}

// startAPIServer starts kube-apiserver on a free loopback port, retrying on
// a new port when it was taken, waits for /readyz, and fills in c.URL,
// c.config and c.kubeconfig.
func (c *Cluster) startAPIServer(ctx context.Context, binDir string, ports portPicker, etcdURL string, creds credentials) error {
	certDir := filepath.Join(c.dir, "certs")
	logPath := filepath.Join(c.dir, "kube-apiserver.log")
	for attempt := 1; ; attempt++ {
		p, err := ports(1)
		if err != nil {
			return err
		}
		url := "https://127.0.0.1:" + strconv.Itoa(p[0])
		// The server writes a fresh self-signed certificate at each start;
		// one left by a failed attempt must not be taken for the new one.
		if err := os.RemoveAll(certDir); err != nil {
			return fmt.Errorf("clear certificate directory: %w", err)
		}
		proc, err := startProcess("kube-apiserver", filepath.Join(binDir, "kube-apiserver"), []string{
			"--etcd-servers=" + etcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(p[0]),
			"--cert-dir=" + certDir,
			"--token-auth-file=" + creds.tokenFile,
			"--authorization-mode=AlwaysAllow",
			"--service-account-issuer=https://kubernetes.default.svc",
			"--service-account-key-file=" + creds.saPub,
			"--service-account-signing-key-file=" + creds.saKey,
			"--service-cluster-ip-range=10.96.0.0/16",
			// No controller manager runs: nothing would create the
			// "default" service account that this plugin requires.
			"--disable-admission-plugins=ServiceAccount",
			"--enable-priority-and-fairness=false",
			// Do not maintain the "kubernetes" service's endpoints.
			"--endpoint-reconciler-type=none",
			"--v=1",
		}, logPath)
		if err != nil {
			return err
		}
		c.apiserver = proc
		caData, err := waitAPIServer(ctx, proc, url, creds.token, certDir)
		if err == nil {
			c.URL = url
			c.config = &rest.Config{
				Host:            url,
				BearerToken:     creds.token,
				TLSClientConfig: rest.TLSClientConfig{CAData: caData},
				// Tests create objects in bursts; the default (5 QPS) would
				// make them slow.
				QPS:   1000,
				Burst: 2000,
			}
			return c.writeKubeconfig(caData, creds.token)
		}
		stopErr := proc.stop(stopGrace)
		if !errors.Is(err, errPortTaken) || attempt == maxStartAttempts {
			return fmt.Errorf("start kube-apiserver (attempt %d, log %s): %w (stop: %v)\nkube-apiserver log tail:\n%s",
				attempt, logPath, err, stopErr, proc.logTail())
		}
		c.log.Warn("kubetest: kube-apiserver port taken, retrying on a new port", "port", p[0], "attempt", attempt)
	}
}

// waitAPIServer polls /readyz until it answers "ok", then checks that the
// server on the port is ours: it must present the certificate ours wrote to
// certDir. It returns that certificate bundle for clients to trust.
func waitAPIServer(ctx context.Context, proc *process, url, token, certDir string) ([]byte, error) {
	// The certificate does not exist before the server starts, so readiness
	// is polled without verification; the identity check follows.
	insecure := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
	defer insecure.CloseIdleConnections()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	var last string
	for {
		if proc.exited() {
			if proc.logContains(addrInUse) {
				return nil, errPortTaken
			}
			return nil, fmt.Errorf("kube-apiserver exited: %v", proc.waitErr)
		}
		ok, status, err := readyz(ctx, insecure, url, token)
		switch {
		case err != nil:
			last = err.Error()
		case ok:
			return checkIdentity(ctx, url, token, certDir)
		default:
			last = status
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("kube-apiserver /readyz not ok: %w (last answer: %s)", ctx.Err(), last)
		case <-proc.done:
		case <-ticker.C:
		}
	}
}

// readyz asks url/readyz once.
func readyz(ctx context.Context, client *http.Client, url, token string) (ok bool, status string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
	if err != nil {
		return false, "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return false, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return false, "", err
	}
	return resp.StatusCode == http.StatusOK && string(body) == "ok",
		fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body)), nil
}

// checkIdentity verifies that url serves the certificate in certDir.
func checkIdentity(ctx context.Context, url, token, certDir string) ([]byte, error) {
	caData, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	if err != nil {
		return nil, fmt.Errorf("read the API server's certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caData) {
		return nil, fmt.Errorf("no certificate in %s", filepath.Join(certDir, "apiserver.crt"))
	}
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	defer client.CloseIdleConnections()
	ok, status, err := readyz(ctx, client, url, token)
	if err != nil {
		var unknownAuthority x509.UnknownAuthorityError
		if errors.As(err, &unknownAuthority) {
			return nil, fmt.Errorf("%w: the server at %s presents another certificate", errPortTaken, url)
		}
		return nil, fmt.Errorf("verify the API server's certificate: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("kube-apiserver /readyz not ok after verification: %s", status)
	}
	return caData, nil
}

// writeKubeconfig writes c.dir/kubeconfig with one context, KubeconfigContext.
func (c *Cluster) writeKubeconfig(caData []byte, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[KubeconfigContext] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthorityData: caData}
	cfg.AuthInfos[KubeconfigContext] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[KubeconfigContext] = &clientcmdapi.Context{Cluster: KubeconfigContext, AuthInfo: KubeconfigContext}
	cfg.CurrentContext = KubeconfigContext
	path := filepath.Join(c.dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	c.kubeconfig = path
	return nil
}
