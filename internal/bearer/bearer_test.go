package bearer

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Every request carries the token; the caller's request and client are
// left as they were.
func TestClient(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.Header.Get("Authorization")))
	}))
	defer srv.Close()
	base := srv.Client()
	c := Client(base, "t0k")
	req, _ := http.NewRequest("GET", srv.URL, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b [64]byte
	n, _ := resp.Body.Read(b[:])
	if got := string(b[:n]); got != "Bearer t0k" {
		t.Errorf("the server saw Authorization %q", got)
	}
	if req.Header.Get("Authorization") != "" || base.Transport == c.Transport {
		t.Error("the caller's request or client was changed")
	}
}
