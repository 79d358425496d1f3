package cli

import (
	"fmt"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

// webhookKeyCmd is `haul team webhook-key TEAM`.
func (a *app) webhookKeyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "webhook-key TEAM",
		Short: "Show the key a team's webhook events are signed with (team admins)",
		Long: `Print, in hex, the key the team's webhook events are signed with: each
POST carries X-Haul-Signature: sha256=<hex HMAC-SHA256(key, body)>, where
key is the bytes this hex stands for (docs/job-spec.md, "Webhooks", shows
how to check it). The team's admins and platform admins may read it; every
read is audited. The key is derived from the deployment's key: it is the
same on every server and does not change.`,
		Example: "  haul team webhook-key ml > webhook.key",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.adminClient().GetWebhookKey(cmd.Context(), connect.NewRequest(&apiv1.GetWebhookKeyRequest{Team: args[0]}))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(resp.Msg)
			}
			_, err = fmt.Fprintln(a.stdout, resp.Msg.KeyHex)
			return err
		},
	}
}
