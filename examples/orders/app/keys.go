package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/examples/orders/httpapi"
)

// idempotencyKeys is the table of the Idempotency-Keys the API has seen.
const idempotencyKeys = "orders_idempotency_keys"

// keys is the API's [httpapi.Keys] in PostgreSQL: one row per key, with
// the fingerprint of the request that used it first.
type keys struct {
	pool  *pgxpool.Pool
	table string // sanitized
}

// setup creates the table if it is missing, one process at a time.
func (k *keys) setup(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, k.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))`,
			"orders/setup/"+k.table); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+k.table+` (
			key         text        PRIMARY KEY,
			fingerprint text        NOT NULL,
			answer      jsonb,
			created_at  timestamptz NOT NULL DEFAULT now())`)
		return err
	})
	if err != nil {
		return fmt.Errorf("app: create the table of idempotency keys: %w", err)
	}
	return nil
}

// Claim implements [httpapi.Keys].
func (k *keys) Claim(ctx context.Context, key, fingerprint string) (string, *httpapi.Accepted, error) {
	// A concurrent first use of the key commits between the insert and
	// the read of one statement's snapshot; the second try sees it.
	for range 3 {
		var (
			bound  string
			answer *httpapi.Accepted
		)
		err := k.pool.QueryRow(ctx, `WITH ins AS (
				INSERT INTO `+k.table+` (key, fingerprint) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING RETURNING fingerprint, answer)
			SELECT fingerprint, answer FROM ins UNION ALL SELECT fingerprint, answer FROM `+k.table+` WHERE key = $1 LIMIT 1`,
			key, fingerprint).Scan(&bound, &answer)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return "", nil, fmt.Errorf("claim idempotency key: %w", err)
		}
		return bound, answer, nil
	}
	return "", nil, fmt.Errorf("claim idempotency key: %w", pgx.ErrNoRows)
}

// Save implements [httpapi.Keys].
func (k *keys) Save(ctx context.Context, key string, a httpapi.Accepted) error {
	if _, err := k.pool.Exec(ctx, `UPDATE `+k.table+` SET answer = $2 WHERE key = $1 AND answer IS NULL`, key, a); err != nil {
		return fmt.Errorf("save the answer of idempotency key: %w", err)
	}
	return nil
}
