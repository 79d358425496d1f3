package blob

import (
	"net/url"
	"strings"
	"testing"
)

func TestRegisterDispatchesScheme(t *testing.T) {
	var got *url.URL
	Register("zzfake", func(u *url.URL) (Store, error) {
		got = u
		return NewFS(t.TempDir())
	})
	t.Cleanup(func() {
		registry.mu.Lock()
		delete(registry.openers, "zzfake")
		registry.mu.Unlock()
	})
	if _, err := Open("zzfake://bucket/pre?x=1"); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Host != "bucket" || got.Path != "/pre" || got.Query().Get("x") != "1" {
		t.Fatalf("opener got %v", got)
	}
	_, err := Open("nope://x")
	if err == nil || !strings.Contains(err.Error(), `unsupported scheme "nope" (supported: file, zzfake)`) {
		t.Fatalf("Open of an unknown scheme: %v", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("registering a scheme twice did not panic")
			}
		}()
		Register("zzfake", func(*url.URL) (Store, error) { return nil, nil })
	}()
}

func TestOpenUnknownSchemeListsSupported(t *testing.T) {
	_, err := Open("gs://bucket")
	if err == nil || !strings.Contains(err.Error(), "supported: file") {
		t.Fatalf("Open(gs://bucket): %v", err)
	}
}
