package pgsink

import (
	"context"
	"fmt"
	"strings"
)

// EnsureTables creates the tables of p with [Rebuildable.Setup] when none of
// them exists yet, and reports whether it did. It is safe to call at every
// start of every process: concurrent calls for one projection take turns
// through a transaction-level advisory lock, and only the first creates.
// When some of p's tables exist and others do not, it creates nothing and
// says which are missing: Setup would fail on the ones that exist, and a
// rebuild (or dropping the rest) is the way out.
func (s *Sink) EnsureTables(ctx context.Context, p Rebuildable) (created bool, err error) {
	tables := p.Tables()
	if len(tables) == 0 {
		return false, fmt.Errorf("pgsink: ensure the tables of %s: it names no tables", p.Name())
	}
	err = s.BeginFunc(ctx, func(ctx context.Context, tx *Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))`,
			"strata/setup/"+s.cfg.ReadSchema+"/"+p.Name()); err != nil {
			return err
		}
		var missing, present []string
		for _, t := range tables {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT pg_catalog.to_regclass($1) IS NOT NULL`, tx.Table(t).Sanitize()).Scan(&exists); err != nil {
				return err
			}
			if exists {
				present = append(present, t)
			} else {
				missing = append(missing, t)
			}
		}
		switch {
		case len(missing) == 0:
			return nil
		case len(present) > 0:
			return fmt.Errorf("some of its tables exist (%s) and others do not (%s); rebuild the projection, or drop the rest",
				strings.Join(present, ", "), strings.Join(missing, ", "))
		}
		if err := p.Setup(ctx, tx); err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("pgsink: ensure the tables of %s: %w", p.Name(), err)
	}
	return created, nil
}
