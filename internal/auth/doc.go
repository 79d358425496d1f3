// Package auth decides who may do what in haul. It is the one place that
// answers "may this caller do this to that object", so that every RPC asks
// the same question the same way.
//
// # Identities
//
// Every call carries a bearer token. An Identity is what a token proves:
//
//   - a person or a service account (a CI pipeline), by a token the server
//     issued (random, stored only as its SHA-256 hash, with an expiry,
//     listable and revocable) or by an OIDC ID token from the issuer the
//     operator configured, whose claims map to the user and their teams;
//   - a task, by the token in its HAUL_TOKEN: scoped to one attempt of one
//     task, it may read its own job and add tasks to it, and stops working
//     when the attempt ends;
//   - a worker, by the secret it was started with: it may speak the taskhost
//     protocol for itself only (checked by the runner, not here).
//
// # Teams and roles
//
// A team is a namespace: every job belongs to one. Within a team a caller
// is a viewer (read its jobs, tasks and logs), a member (also submit,
// cancel, retry and add tasks) or an admin (also manage the team's tokens).
// A platform admin may do everything in every team, list the audit log and
// manage clusters and quotas. Roles are ordered: each includes the one
// below.
//
// # Decisions
//
// Allow(id, action, obj) is a pure function of the identity, the action
// and the object's team (and job, for task tokens): no I/O, no clock. An
// error it returns wraps ErrDenied and names what was missing; callers map
// it to permission_denied. Listing filters by Visible(id, team).
//
// The decision core (auth.go, context.go) imports only the standard
// library. Around it: tokens.go makes and parses issued tokens, oidc.go
// verifies OIDC ID tokens (github.com/coreos/go-oidc), and authn.go is the
// server's Authenticator over the store's token records.
package auth
