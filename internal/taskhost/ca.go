package taskhost

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
)

// CAEnv names the PEM file of the certificates to trust for the server's
// TLS certificate, besides the system's (the local backend sets it for
// its taskhosts; the CLI reads it too, as --ca).
const CAEnv = "HAUL_CA"

// CAPEMEnv holds the PEM certificates themselves, for worker pods (the
// kube backend sets it from the server's certificate).
const CAPEMEnv = "HAUL_CA_PEM"

// CAPool returns the system's certificate pool with the PEM certificates
// of file added; an error names the file when it holds none.
func CAPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	return caPoolPEM(pem, file)
}

func caPoolPEM(pem []byte, from string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA %s: no PEM certificate in it", from)
	}
	return pool, nil
}

// CAClient returns an HTTP client (HTTP/2 over TLS, or HTTP/1.1) that
// trusts the certificates in file besides the system's.
func CAClient(file string) (*http.Client, error) {
	pool, err := CAPool(file)
	if err != nil {
		return nil, err
	}
	return poolClient(pool), nil
}

// CAClientPEM is CAClient with the certificates given, not a file.
func CAClientPEM(pem string) (*http.Client, error) {
	pool, err := caPoolPEM([]byte(pem), CAPEMEnv)
	if err != nil {
		return nil, err
	}
	return poolClient(pool), nil
}

func poolClient(pool *x509.CertPool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	tr.ForceAttemptHTTP2 = true
	return &http.Client{Transport: tr}
}
