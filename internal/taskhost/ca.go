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

// CAPool returns the system's certificate pool with the PEM certificates
// of file added; an error names the file when it holds none.
func CAPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", file)
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
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	tr.ForceAttemptHTTP2 = true
	return &http.Client{Transport: tr}, nil
}
