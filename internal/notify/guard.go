package notify

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// A webhook is a URL any member of a team writes in a spec, and the
// notifier calls it from inside the deployment. Unless the operator allows
// it (Config.AllowPrivate), the notifier connects only to public
// addresses: never to loopback, private (RFC 1918, fc00::/7), link-local
// (169.254.0.0/16, where clouds serve instance credentials; fe80::/10),
// shared (100.64.0.0/10), unspecified or multicast ones. The check is made
// on the address actually dialled, after name resolution, so a name that
// resolves to an internal address (or changes to one) is refused too.
// Environment proxies are not used: the check must see the receiver.

// ErrPrivateAddress is the refusal of a webhook that leads to an internal
// address.
type ErrPrivateAddress struct{ Addr netip.Addr }

func (e ErrPrivateAddress) Error() string {
	return fmt.Sprintf("the webhook's address %s is internal (loopback, private or link-local): refused; an operator may allow internal receivers with --webhook-allow-private", e.Addr)
}

// internal reports whether a is an address a webhook may not reach by
// default.
func internal(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() ||
		netip.MustParsePrefix("100.64.0.0/10").Contains(a) || netip.MustParsePrefix("0.0.0.0/8").Contains(a)
}

// guardedTransport is an HTTP transport that dials public addresses only.
func guardedTransport(timeout time.Duration) *http.Transport {
	d := &net.Dialer{
		Timeout: timeout,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("webhook address %q: %w", address, err)
			}
			if internal(ap.Addr()) {
				return ErrPrivateAddress{ap.Addr().Unmap()}
			}
			return nil
		},
	}
	return &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		TLSHandshakeTimeout: timeout,
		MaxIdleConns:        16,
		IdleConnTimeout:     90 * time.Second,
	}
}
