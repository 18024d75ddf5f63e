package app

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// PoolMaxConnsDefault is the size of the pool [NewPool] opens. pgxpool's
// own default, the larger of 4 and the number of CPUs, leaves little room
// in a process that serves HTTP reads and runs projection workers on one
// pool: each projection worker holds a connection for the length of a
// batch, and each read or write request one for the length of its
// queries, so on a 2-core machine three workers in a batch would leave
// the reads one connection.
const PoolMaxConnsDefault = 16

// NewPool opens the pool of the example's processes on the database of
// databaseURL. Its size is maxConns, or, when that is 0, the URL's
// pool_max_conns, or else PoolMaxConnsDefault. It fails fast when the
// database cannot be reached.
func NewPool(ctx context.Context, databaseURL string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("app: database URL: %w", err)
	}
	switch {
	case maxConns > 0:
		cfg.MaxConns = maxConns
	case !setsPoolSize(databaseURL):
		cfg.MaxConns = PoolMaxConnsDefault
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "orders"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("app: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("app: connect: %w", err)
	}
	return pool, nil
}

// setsPoolSize reports whether a database URL (or key/value connection
// string) names pool_max_conns itself.
func setsPoolSize(databaseURL string) bool {
	if u, err := url.Parse(databaseURL); err == nil && u.Scheme != "" {
		return u.Query().Has("pool_max_conns")
	}
	return strings.Contains(databaseURL, "pool_max_conns")
}
