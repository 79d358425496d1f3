package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// pool is a small connection pool of pgx connections.
//
// pgxpool would do, but it needs github.com/jackc/puddle/v2, which the
// module does not list; this pool covers what the store needs: a bound on
// open connections, reuse of idle ones (and with them pgx's per-connection
// statement cache), and dropping connections that broke or were left in a
// transaction.
type pool struct {
	cfg   *pgx.ConnConfig
	slots chan struct{} // holds a token per connection handed out

	mu     sync.Mutex
	idle   []*pgx.Conn
	closed bool
}

var errClosed = errors.New("store is closed")

// poolMaxConnsParam is the URL parameter (as in pgxpool) that bounds the
// number of connections.
const poolMaxConnsParam = "pool_max_conns"

func newPool(cfg *pgx.ConnConfig, maxConns int) (*pool, error) {
	if v, ok := cfg.RuntimeParams[poolMaxConnsParam]; ok {
		delete(cfg.RuntimeParams, poolMaxConnsParam)
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s=%q: want a positive integer", poolMaxConnsParam, v)
		}
		maxConns = n
	}
	return &pool{cfg: cfg, slots: make(chan struct{}, maxConns)}, nil
}

// acquire returns an idle connection or a new one, waiting while all are
// in use.
func (p *pool) acquire(ctx context.Context) (*pgx.Conn, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return nil, errClosed
	}
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if !c.IsClosed() {
			p.mu.Unlock()
			return c, nil
		}
	}
	p.mu.Unlock()
	c, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return c, nil
}

// release returns a connection to the pool, or closes it if it broke, is
// inside a transaction, or the pool is closed.
func (p *pool) release(c *pgx.Conn) {
	defer func() { <-p.slots }()
	p.mu.Lock()
	keep := !p.closed && !c.IsClosed() && c.PgConn().TxStatus() == 'I'
	if keep {
		p.idle = append(p.idle, c)
	}
	p.mu.Unlock()
	if !keep {
		closeConn(c)
	}
}

// close closes the idle connections; the ones in use are closed when
// released. It is idempotent.
func (p *pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		closeConn(c)
	}
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// withConn runs fn on a pooled connection.
func (p *pool) withConn(ctx context.Context, fn func(c *pgx.Conn) error) error {
	c, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	defer p.release(c)
	return fn(c)
}

// withTx runs fn in a transaction, committed if fn returns nil and rolled
// back otherwise.
func (p *pool) withTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return p.withConn(ctx, func(c *pgx.Conn) error {
		return pgx.BeginFunc(ctx, c, fn)
	})
}
