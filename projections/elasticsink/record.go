package elasticsink

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

var migrations = migrate.Set{Component: "elasticsink", Files: migrationFiles, Table: "elasticsink_migrations"}

// Migrate creates or upgrades the PostgreSQL sink's tables and the one the
// Elasticsearch sink keeps next to them, elasticsink_checkpoints (external
// versions and index identities), in the PostgreSQL sink's schema. It is
// idempotent and safe to call from many processes at once. The sink calls
// it on first use when it has not been called.
func (s *Sink) Migrate(ctx context.Context) error {
	if err := s.pg.EnsureMigrated(ctx); err != nil {
		return err
	}
	if _, err := migrations.Run(ctx, s.pg.Pool(), s.pg.Schema(), s.expand, s.cfg.Logger); err != nil {
		return err
	}
	s.mu.Lock()
	s.migrated = true
	s.mu.Unlock()
	return nil
}

// migrateOnce runs Migrate unless it has succeeded in this process.
func (s *Sink) migrateOnce(ctx context.Context) error {
	s.mu.Lock()
	done := s.migrated
	s.mu.Unlock()
	if done {
		return nil
	}
	return s.Migrate(ctx)
}

func (s *Sink) expand(sql string) string {
	return strings.ReplaceAll(sql, "{{schema}}", pgx.Identifier{s.pg.Schema()}.Sanitize())
}

// indexID names one concrete index: a name can be created again after a
// delete, on this cluster or on a new one; a UUID cannot.
type indexID struct {
	Index string `json:"index"`
	UUID  string `json:"uuid"`
}

func (id indexID) String() string { return id.Index + " (uuid " + id.UUID + ")" }

// record is what the sink keeps with a checkpoint.
type record struct {
	version int64
	indices map[string]indexID
	// blank is set when the record was there before the batch and named
	// no index: the checkpoint has moved only past batches that wrote no
	// document, so any index holds the documents of the events before it.
	blank bool
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// heldRecord reads name's record in tx, whose caller holds the checkpoint
// of name (a batch of it, or [Keeper.HoldCheckpoint]): no other batch or
// handover writes the record until the caller's transaction ends. It takes
// no row lock and writes nothing, so that a batch's transaction gets no ID
// while it waits on Elasticsearch (see pgsink): [Sink.saveRecord] creates
// the record when there is none.
func (s *Sink) heldRecord(ctx context.Context, tx pgx.Tx, name string) (record, error) {
	// Not found: made by this batch, so blank is false (the checkpoint
	// may be older).
	rec, _, err := s.readRecord(ctx, tx, name)
	return rec, err
}

// readRecord reads name's record; found is false when there is none.
func (s *Sink) readRecord(ctx context.Context, q querier, name string) (rec record, found bool, err error) {
	var raw []byte
	err = q.QueryRow(ctx, s.expand(`SELECT version, indices FROM {{schema}}.elasticsink_checkpoints WHERE name = $1`), name).
		Scan(&rec.version, &raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return record{indices: map[string]indexID{}}, false, nil
	}
	if err == nil {
		err = json.Unmarshal(raw, &rec.indices)
	}
	if err != nil {
		return rec, false, fmt.Errorf("elasticsink: read the record of %s: %w", name, err)
	}
	if rec.indices == nil {
		rec.indices = map[string]indexID{}
	}
	rec.blank = len(rec.indices) == 0
	return rec, true, nil
}

// saveRecord writes name's record in tx.
func (s *Sink) saveRecord(ctx context.Context, tx pgx.Tx, name string, rec record) error {
	raw, err := json.Marshal(rec.indices)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, s.expand(`INSERT INTO {{schema}}.elasticsink_checkpoints (name, version, indices)
		VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET version = excluded.version, indices = excluded.indices`),
		name, rec.version, raw); err != nil {
		return fmt.Errorf("elasticsink: save the record of %s: %w", name, err)
	}
	return nil
}

// resolve returns the concrete index behind alias (or the index of that
// name); found is false when there is none.
func (s *Sink) resolve(ctx context.Context, alias string) (id indexID, found bool, err error) {
	ctx, cancel := s.small(ctx, "resolve "+alias)
	defer cancel()
	get := s.client.Indices.GetSettings
	res, err := get(get.WithIndex(alias), get.WithName("index.uuid"), get.WithContext(ctx))
	if err != nil {
		return id, false, timedOut(ctx, err)
	}
	defer drain(res.Body)
	if res.StatusCode == http.StatusNotFound {
		return id, false, nil
	}
	if err := check(res, nil, "resolve "+alias); err != nil {
		return id, false, timedOut(ctx, err)
	}
	var out map[string]struct {
		Settings struct {
			Index struct {
				UUID string `json:"uuid"`
			} `json:"index"`
		} `json:"settings"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return id, false, timedOut(ctx, err)
	}
	names := slices.Sorted(maps.Keys(out))
	if len(names) != 1 {
		return id, false, fmt.Errorf("elasticsink: resolve %s: it names %d indices %v; want one", alias, len(names), names)
	}
	return indexID{Index: names[0], UUID: out[names[0]].Settings.Index.UUID}, true, nil
}

// errAliasMoving means the alias points at the generation a rebuild is
// swapping in, and the live checkpoint has not been handed over yet.
var errAliasMoving = errors.New("elasticsink: a rebuild is swapping the index in; retrying")

// guard checks the indices one live batch writes against the record of its
// checkpoint, and names the concrete index to write for each alias.
type guard struct {
	sink *Sink
	name string      // the checkpoint's
	from es.Position // where the batch starts
	rec  *record
	main string     // the projection's own alias, when known
	proj Projection // to create the index of a new projection, when known

	resolved map[string]string
}

// index returns the concrete index to write for alias, recording it when
// the checkpoint has none yet.
func (g *guard) index(ctx context.Context, alias string) (string, error) {
	if idx, ok := g.resolved[alias]; ok {
		return idx, nil
	}
	got, found, err := g.sink.resolve(ctx, alias)
	if err != nil {
		return "", err
	}
	want, recorded := g.rec.indices[alias]
	switch {
	case recorded && found && got == want:
	case g.from == es.Start || g.rec.blank || (!recorded && g.main != "" && alias != g.main):
		// A projection that starts from the start of the log, or whose
		// checkpoint has moved only past batches that wrote no document,
		// fills any index; an alias a projection writes besides its own
		// is adopted when first seen.
		if !found {
			if g.proj == nil || alias != g.main {
				return "", &ItemError{Index: alias, Action: "resolve", Status: http.StatusNotFound, Type: "index_not_found_exception",
					Reason: "no index behind the alias; create it with Sink.EnsureIndex"}
			}
			if _, err := g.sink.EnsureIndex(ctx, g.proj); err != nil {
				return "", err
			}
			if got, found, err = g.sink.resolve(ctx, alias); err != nil {
				return "", err
			} else if !found {
				return "", fmt.Errorf("elasticsink: resolve %s: missing right after it was created", alias)
			}
		}
		g.rec.indices[alias] = got
	default:
		if found && recorded {
			if moving, err := g.sink.swapping(ctx, alias, got.Index); err != nil || moving {
				return "", cmpOr(err, errAliasMoving)
			}
		}
		lost := &IndexLostError{Projection: g.name, Alias: alias, Checkpoint: g.from}
		if recorded {
			lost.Want = want.String()
		}
		if found {
			lost.Got = got.String()
		}
		return "", lost
	}
	if g.resolved == nil {
		g.resolved = map[string]string{}
	}
	g.resolved[alias] = got.Index
	return got.Index, nil
}

func cmpOr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// swapping reports whether index is a generation of alias that a rebuild
// has built and not finished swapping in.
func (s *Sink) swapping(ctx context.Context, alias, index string) (bool, error) {
	gens, err := s.generations(ctx, alias)
	if err != nil {
		return false, err
	}
	m, ok := gens[index]
	return ok && m.Rebuild, nil
}

// checkIndex compares the index behind alias with the one name's
// checkpoint, at from, belongs to, without writing.
func (s *Sink) checkIndex(ctx context.Context, name, alias string, from es.Position) error {
	if from == es.Start {
		return nil
	}
	if err := s.migrateOnce(ctx); err != nil {
		return err
	}
	rec, _, err := s.readRecord(ctx, s.pg.Pool(), name)
	if err != nil {
		return err
	}
	g := &guard{sink: s, name: name, from: from, rec: &rec, main: alias}
	_, err = g.index(ctx, alias)
	if errors.Is(err, errAliasMoving) {
		return nil // a batch waits for the swap
	}
	return err
}

// adoptGeneration hands the index a rebuild built over to the live
// checkpoint, once the alias points at it: the live record names it, and
// its versions go on from the higher of the two counters.
func (s *Sink) adoptGeneration(ctx context.Context, name, cpName, alias, index string) error {
	id, found, err := s.resolve(ctx, index)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("elasticsink: rebuild %s: the new generation %s is gone", name, index)
	}
	// Both checkpoints are held, so that no batch of either writes its
	// record meanwhile.
	_, release, err := s.pg.HoldCheckpoint(ctx, name)
	if err != nil {
		return err
	}
	defer release()
	_, releaseGen, err := s.pg.HoldCheckpoint(ctx, cpName)
	if err != nil {
		return err
	}
	defer releaseGen()
	return pgx.BeginFunc(ctx, s.pg.Pool(), func(tx pgx.Tx) error {
		live, err := s.heldRecord(ctx, tx, name)
		if err != nil {
			return err
		}
		gen, _, err := s.readRecord(ctx, tx, cpName)
		if err != nil {
			return err
		}
		live.version = max(live.version, gen.version)
		live.indices[alias] = id
		if err := s.saveRecord(ctx, tx, name, live); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, s.expand(`DELETE FROM {{schema}}.elasticsink_checkpoints WHERE name = $1`), cpName)
		return err
	})
}

// forgetRecord deletes name's record: a new generation numbers its events
// from 1.
func (s *Sink) forgetRecord(ctx context.Context, name string) error {
	_, release, err := s.pg.HoldCheckpoint(ctx, name)
	if err != nil {
		return err
	}
	defer release()
	if _, err := s.pg.Pool().Exec(ctx, s.expand(`DELETE FROM {{schema}}.elasticsink_checkpoints WHERE name = $1`), name); err != nil {
		return fmt.Errorf("elasticsink: delete the record of %s: %w", name, err)
	}
	return nil
}
