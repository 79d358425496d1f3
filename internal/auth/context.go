package auth

import "context"

// Authenticator turns the bearer token of a call into the identity it
// proves: an error wrapping ErrUnauthenticated when it proves none (empty,
// unknown, expired, revoked, badly signed), another error when it cannot
// tell now (the store is away).
type Authenticator interface {
	Authenticate(ctx context.Context, bearer string) (*Identity, error)
}

type ctxKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity ctx carries, or nil.
func FromContext(ctx context.Context) *Identity {
	id, _ := ctx.Value(ctxKey{}).(*Identity)
	return id
}
