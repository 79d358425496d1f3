package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
)

// DownloadLog serves GET /ui/logs/{job}/{key}/{attempt}: one attempt's whole
// log (stdout and stderr interleaved in the order they were written) as a
// plain-text download, streamed, so the gateway never holds it. Attempt 0
// is the latest. The caller is authenticated from the Authorization header
// (the web session puts the cookie's credential there) and authorized as
// GetLogs is.
func (g *Gateway) DownloadLog(w http.ResponseWriter, r *http.Request) {
	fail := func(err error) {
		code := http.StatusInternalServerError
		if ce := new(connect.Error); errors.As(err, &ce) {
			switch ce.Code() {
			case connect.CodeUnauthenticated:
				code = http.StatusUnauthorized
			case connect.CodePermissionDenied:
				code = http.StatusForbidden
			case connect.CodeNotFound:
				code = http.StatusNotFound
			case connect.CodeInvalidArgument:
				code = http.StatusBadRequest
			case connect.CodeUnavailable:
				code = http.StatusServiceUnavailable
			}
			err = errors.New(ce.Message())
		}
		http.Error(w, err.Error(), code)
	}
	a := &authInterceptor{authn: g.cfg.Auth, log: g.cfg.Logger}
	ctx, err := a.authenticate(r.Context(), "/ui/logs", r.RemoteAddr, r.Header)
	if err != nil {
		fail(err)
		return
	}
	jobID, key, attemptText := r.PathValue("job"), r.PathValue("key"), r.PathValue("attempt")
	attempt, err := strconv.ParseInt(attemptText, 10, 32)
	if err != nil || attempt < 0 {
		fail(connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("attempt %q: want a number (0 for the latest)", attemptText)))
		return
	}
	j, t, err := g.task(ctx, jobID, key, auth.ReadJob, nil)
	if err != nil {
		fail(err)
		return
	}
	n := int32(attempt)
	if n > t.Attempts {
		fail(connect.NewError(connect.CodeNotFound, fmt.Errorf("task %s has %d attempts; attempt %d does not exist", t.Key, t.Attempts, n)))
		return
	}
	if n == 0 {
		n = t.Attempts
	}
	if n == 0 {
		fail(connect.NewError(connect.CodeNotFound, fmt.Errorf("task %s has not started (state %s): no log yet", t.Key, t.State)))
		return
	}
	name := strings.Map(func(r rune) rune {
		if r == '/' || r == '"' || r == '\\' || r < ' ' || r > '~' {
			return '_'
		}
		return r
	}, fmt.Sprintf("%s-%s-%d.log", j.ID, t.Key, n))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	bw := bufio.NewWriterSize(w, 64<<10)
	wrote := false
	emit := func(_ byte, _ int64, data []byte) error {
		wrote = true
		_, err := bw.Write(data)
		return err
	}
	notice, err := g.readLog(ctx, j.ID, t.Index, n, false, func() bool { return true }, func() error { return nil }, emit)
	if err == nil {
		if stored, nerr := g.logNotice(ctx, j.ID, t.Index, n); nerr == nil && stored != "" {
			notice = stored
		}
	}
	if err != nil && !wrote {
		w.Header().Del("Content-Disposition")
		fail(err)
		return
	}
	if err != nil {
		// Headers are gone once bytes are: the body ends with the error.
		fmt.Fprintf(bw, "\n[haul: the log could not be read to its end: %v]\n", err)
	} else if notice != "" {
		fmt.Fprintf(bw, "\n[haul: %s]\n", notice)
	}
	bw.Flush()
}
