package gateway_test

import (
	"context"
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

// GetWebhookKey: the team's admins and platform admins read the team's
// key; members, viewers and other teams' admins do not; every call is
// audited, and no entry holds the key.
func TestGetWebhookKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newAdminEnv(t)
	_, err := e.client(e.root).GetWebhookKey(ctx, connect.NewRequest(&apiv1.GetWebhookKeyRequest{Team: "perception"}))
	wantCode(t, "no webhook key configured", err, connect.CodeUnimplemented)

	keyOf := func(team string) []byte { return []byte(strings.Repeat(team[:1], 32)) }
	e.admin.WithWebhookKey(keyOf)
	padm := e.create(t, e.root, &apiv1.CreateTokenRequest{Subject: "pat@example.com", Teams: map[string]string{"perception": "admin"}})
	member := e.create(t, e.root, &apiv1.CreateTokenRequest{Subject: "mo@example.com", Teams: map[string]string{"perception": "member"}})
	other := e.create(t, e.root, &apiv1.CreateTokenRequest{Subject: "ia@example.com", Teams: map[string]string{"infra": "admin"}})

	for _, tc := range []struct{ who, tok string }{{"platform admin", e.root}, {"team admin", padm.Token}} {
		resp, err := e.client(tc.tok).GetWebhookKey(ctx, connect.NewRequest(&apiv1.GetWebhookKeyRequest{Team: "perception"}))
		if err != nil {
			t.Fatalf("%s: %v", tc.who, err)
		}
		if want := hex.EncodeToString(keyOf("perception")); resp.Msg.KeyHex != want {
			t.Errorf("%s: key %q, want %q", tc.who, resp.Msg.KeyHex, want)
		}
	}
	for _, tc := range []struct{ who, tok string }{{"member", member.Token}, {"another team's admin", other.Token}} {
		_, err := e.client(tc.tok).GetWebhookKey(ctx, connect.NewRequest(&apiv1.GetWebhookKeyRequest{Team: "perception"}))
		wantCode(t, tc.who, err, connect.CodePermissionDenied)
	}
	_, err = e.client(e.root).GetWebhookKey(ctx, connect.NewRequest(&apiv1.GetWebhookKeyRequest{Team: "Not A Team"}))
	wantCode(t, "bad team name", err, connect.CodeInvalidArgument)
	_, err = e.client("").GetWebhookKey(ctx, connect.NewRequest(&apiv1.GetWebhookKeyRequest{Team: "perception"}))
	wantCode(t, "no token", err, connect.CodeUnauthenticated)

	au, err := e.client(e.root).ListAudit(ctx, connect.NewRequest(&apiv1.ListAuditRequest{Team: "perception"}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range au.Msg.Entries {
		if a.Action != "GetWebhookKey" {
			continue
		}
		got = append(got, a.Subject+" "+a.Outcome+" "+a.Object)
		if strings.Contains(a.String(), hex.EncodeToString(keyOf("perception"))) || strings.Contains(a.String(), string(keyOf("perception"))) {
			t.Errorf("audit entry holds the key: %v", a)
		}
	}
	for _, want := range []string{"root ok webhook-key/perception", "pat@example.com ok webhook-key/perception",
		"mo@example.com denied webhook-key/perception", "ia@example.com denied webhook-key/perception"} {
		if !slices.Contains(got, want) {
			t.Errorf("audit lacks %q: %q", want, got)
		}
	}
}
