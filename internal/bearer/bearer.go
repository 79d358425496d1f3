// Package bearer adds an API token to every request of an HTTP client: the
// public Go client and in-process callers of a server (haul bench, tests)
// share it.
package bearer

import "net/http"

// Client returns a copy of c (nil: http.DefaultClient) that sends token as
// `Authorization: Bearer` on every request, on a clone of the request.
func Client(c *http.Client, token string) *http.Client {
	if c == nil {
		c = http.DefaultClient
	}
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	cc := *c
	cc.Transport = transport{token: token, next: next}
	return &cc
}

type transport struct {
	token string
	next  http.RoundTripper
}

func (t transport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.next.RoundTrip(r)
}
