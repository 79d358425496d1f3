package oidctest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"
)

func post(t *testing.T, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, m
}

// TestDeviceFlow walks RFC 8628 against the issuer: pending, too fast
// (slow_down), approved (an ID token, once), denied and expired codes.
func TestDeviceFlow(t *testing.T) {
	iss := New(t)
	iss.DeviceInterval = 100 * time.Millisecond
	iss.LogInAs(map[string]any{"sub": "u1", "email": "ann@example.com"})
	resp, err := http.Get(iss.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var disc map[string]any
	json.NewDecoder(resp.Body).Decode(&disc)
	resp.Body.Close()
	if disc["device_authorization_endpoint"] != iss.URL+"/device" {
		t.Fatalf("discovery: %v", disc)
	}
	code, auth := post(t, iss.URL+"/device", url.Values{"client_id": {"cli"}})
	if code != 200 || auth["user_code"] == "" || auth["verification_uri"] == "" {
		t.Fatalf("device authorization: %d %v", code, auth)
	}
	dc := auth["device_code"].(string)
	poll := func() (int, map[string]any) {
		return post(t, iss.URL+"/token", url.Values{"grant_type": {deviceGrant}, "device_code": {dc}, "client_id": {"cli"}})
	}
	if _, m := poll(); m["error"] != "authorization_pending" {
		t.Fatalf("first poll: %v", m)
	}
	if _, m := poll(); m["error"] != "slow_down" {
		t.Fatalf("a poll at once: %v; want slow_down", m)
	}
	if got := iss.UserCodes(); len(got) != 1 || got[0] != auth["user_code"] {
		t.Fatalf("user codes %v", got)
	}
	if !iss.Approve(auth["user_code"].(string)) {
		t.Fatal("approve failed")
	}
	time.Sleep(5200 * time.Millisecond)
	code, m := poll()
	if code != 200 || m["id_token"] == nil {
		t.Fatalf("approved poll: %d %v", code, m)
	}
	if _, m := poll(); m["error"] != "invalid_grant" {
		t.Fatalf("a used device code: %v", m)
	}

	// Denied, then expired.
	_, auth = post(t, iss.URL+"/device", url.Values{"client_id": {"cli"}})
	dc = auth["device_code"].(string)
	iss.Deny(auth["user_code"].(string))
	if _, m := poll(); m["error"] != "access_denied" {
		t.Fatalf("denied: %v", m)
	}
	iss.DeviceTTL = 50 * time.Millisecond
	_, auth = post(t, iss.URL+"/device", url.Values{"client_id": {"cli"}})
	dc = auth["device_code"].(string)
	time.Sleep(100 * time.Millisecond)
	if _, m := poll(); m["error"] != "expired_token" {
		t.Fatalf("expired: %v", m)
	}
}
