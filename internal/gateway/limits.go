package gateway

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/spec"
	"github.com/haul-dev/haul/internal/store"
)

// PollReadMaxBytes bounds one request of the taskhost protocol (a worker's
// Poll): its results carry only short strings (keys, reasons, messages,
// usage), so a few MiB is plenty.
const PollReadMaxBytes = 4 << 20

// readSlack is what a request may hold beyond its spec: the other fields
// and the encoding's framing.
const readSlack = 1 << 20

// ReadMaxBytes is the most a JobService request may take once decoded
// (and decompressed): the spec limit, as base64 in the JSON encoding of the
// Connect protocol, plus room for the other fields. It is what Bounded
// applies to the gateway's handler.
func ReadMaxBytes(lim spec.Limits) int64 {
	if lim.MaxSpecBytes <= 0 {
		lim.MaxSpecBytes = spec.DefaultLimits().MaxSpecBytes
	}
	return int64(lim.MaxSpecBytes)/3*4 + 4 + readSlack
}

// ReadMaxBytes is the read limit of this gateway's requests.
func (g *Gateway) ReadMaxBytes() int64 { return ReadMaxBytes(g.cfg.Limits) }

// Bounded wraps a generated Connect handler constructor so that every
// request it serves is bounded in memory before it is decoded:
//
//   - a message over maxBytes, after decompression, is refused with
//     resource_exhausted (connect.WithReadMaxBytes);
//   - a compressed body stops decompressing at maxBytes: the gzip reader
//     fails there instead of inflating a small bomb to its full size only
//     to count what it throws away;
//   - the body is not read past maxBytes plus framing on the wire
//     (http.MaxBytesReader), so a client cannot hold a handler reading
//     gigabytes it will refuse anyway.
//
// Use it as mux.Handle(gateway.Bounded(n, apiv1connect.NewJobServiceHandler)(gw)).
func Bounded[S any](maxBytes int64, newHandler func(S, ...connect.HandlerOption) (string, http.Handler)) func(S, ...connect.HandlerOption) (string, http.Handler) {
	return func(svc S, opts ...connect.HandlerOption) (string, http.Handler) {
		opts = append([]connect.HandlerOption{
			connect.WithReadMaxBytes(int(maxBytes)),
			connect.WithCompression("gzip",
				func() connect.Decompressor { return &limitedGzip{max: maxBytes} },
				func() connect.Compressor { return gzip.NewWriter(io.Discard) }),
		}, opts...)
		path, h := newHandler(svc, opts...)
		return path, LimitBody(h, maxBytes+readSlack)
	}
}

// LimitBody refuses to read a request body past n bytes: reads past it
// fail with *http.MaxBytesError, which Connect answers as
// resource_exhausted.
func LimitBody(h http.Handler, n int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, n)
		h.ServeHTTP(w, r)
	})
}

// errDecompressedTooLarge is the error a limited gzip reader returns past
// its limit; Connect passes a *connect.Error through as it is.
func errDecompressedTooLarge(max int64) error {
	return connect.NewError(connect.CodeResourceExhausted,
		fmt.Errorf("the request decompresses to more than the limit of %d bytes", max))
}

// limitedGzip is a gzip decompressor that fails as soon as it has produced
// more than max bytes. Connect's own limit reads one byte past its maximum
// and then discards the rest of the stream to count it, which for a gzip
// bomb (1,000:1) means inflating gigabytes for nothing.
type limitedGzip struct {
	r   gzip.Reader
	max int64
	n   int64
	src io.Reader
}

func (z *limitedGzip) Read(p []byte) (int, error) {
	if z.n >= z.max {
		// At the limit: the stream may still end here.
		var one [1]byte
		k, err := z.r.Read(one[:])
		if k > 0 {
			return 0, errDecompressedTooLarge(z.max)
		}
		return 0, err
	}
	if rem := z.max - z.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	k, err := z.r.Read(p)
	z.n += int64(k)
	return k, err
}

func (z *limitedGzip) Close() error { return z.r.Close() }

func (z *limitedGzip) Reset(src io.Reader) error {
	z.n = 0
	return z.r.Reset(src)
}

// storeError answers a failed store call: not found names what is missing;
// a write the store refused for what it holds (store.ErrRejected) is the
// caller's to fix (invalid_argument when the caller sent the data,
// failed_precondition otherwise); anything else means the store cannot be
// reached or is failing, which is worth retrying: unavailable, naming the
// cause.
func storeError(err error, what, id string) error {
	return storeErrorCode(err, what, id, connect.CodeFailedPrecondition)
}

func storeErrorCode(err error, what, id string, rejected connect.Code) error {
	var ce *connect.Error
	switch {
	case errors.As(err, &ce):
		return ce
	case errors.Is(err, store.ErrNotFound):
		return connect.NewError(connect.CodeNotFound, fmt.Errorf("%s %s not found", what, id))
	case errors.Is(err, store.ErrRejected):
		return connect.NewError(rejected, fmt.Errorf("%s %s: %w", what, id, err))
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("store: %w", err))
	}
	return unavailable(err)
}

// unavailable is the answer when the store fails for a reason other than
// the data: the database is down, restarting or unreachable. Clients retry
// unavailable.
func unavailable(err error) error {
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("store unavailable: %w; retry", err))
}

// specError answers a spec that does not compile: resource_exhausted when
// it is over one of the limits (spec.ErrTooLarge), invalid_argument
// otherwise. The message lists every problem.
func specError(err error) error {
	if errors.Is(err, spec.ErrTooLarge) {
		return connect.NewError(connect.CodeResourceExhausted, err)
	}
	return connect.NewError(connect.CodeInvalidArgument, err)
}
