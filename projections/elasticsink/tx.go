package elasticsink

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// Tx is what a handler writes documents through. Writes are buffered and
// folded: each document gets one action per batch, the last state the
// batch's events gave it, with the version of the last event that wrote
// it. They are sent when the batch ends (see [NewWorker]) or when a
// handler calls [Tx.Flush]. A Tx also carries the PostgreSQL transaction
// that will commit the checkpoint ([Tx.Postgres]).
type Tx struct {
	sink  *Sink
	pg    pgx.Tx
	index string // the generation's index; empty for the aliases
	guard *guard // resolves and checks the aliases; nil for a generation

	versions map[es.Position]int64 // of the batch's events, unless Config.Version is set

	docs  map[docKey]*pending
	order []docKey
}

type docKey struct{ index, id string }

type opKind uint8

const (
	opIndex  opKind = iota + 1 // source holds the document
	opDelete                   // the document is gone
	opUpdate                   // merges wait for the stored document
)

type pending struct {
	kind    opKind
	source  []byte         // opIndex, encoded
	doc     map[string]any // opIndex after a merge, decoded
	merges  []map[string]any
	version int64
}

func (s *Sink) newTx(ptx pgx.Tx, tg target) *Tx {
	return &Tx{sink: s, pg: ptx, index: tg.index, docs: make(map[docKey]*pending)}
}

// Postgres returns the PostgreSQL transaction that commits the checkpoint,
// for a handler that also keeps rows next to it: the transaction the
// [Keeper] handed to the batch. With a *pgsink.Sink as the keeper it is a
// *pgsink.Tx, whose Table names the read-model tables:
//
//	ptx, ok := tx.Postgres().(*pgsink.Tx)
func (tx *Tx) Postgres() pgx.Tx { return tx.pg }

// target returns the index to write for alias: the alias itself, or the
// generation being rebuilt.
func (tx *Tx) target(alias string) string {
	if tx.index != "" {
		return tx.index
	}
	return alias
}

func (tx *Tx) slot(alias, id string, ev projections.Event) (*pending, int64, error) {
	if alias == "" || id == "" {
		return nil, 0, fmt.Errorf("elasticsink: write for event %s@%d: empty index or document ID", ev.Record.Stream, ev.Record.Version)
	}
	v, err := tx.version(ev)
	if err != nil {
		return nil, 0, err
	}
	k := docKey{tx.target(alias), id}
	p := tx.docs[k]
	if p == nil {
		p = &pending{}
		tx.docs[k] = p
		tx.order = append(tx.order, k)
	}
	return p, v, nil
}

// version returns the external version of the documents ev writes.
func (tx *Tx) version(ev projections.Event) (int64, error) {
	if tx.sink.cfg.Version != nil {
		return tx.sink.cfg.Version(ev.Record.Position)
	}
	v, ok := tx.versions[ev.Record.Position]
	if !ok {
		return 0, fmt.Errorf("elasticsink: write for event %s@%d: not an event of the batch being applied", ev.Record.Stream, ev.Record.Version)
	}
	return v, nil
}

// concrete returns k with the alias replaced by the index the guard
// resolved it to.
func (tx *Tx) concrete(k docKey) docKey {
	if tx.guard != nil {
		if idx, ok := tx.guard.resolved[k.index]; ok {
			k.index = idx
		}
	}
	return k
}

// Index writes the whole document id of the projection's index (named by
// its alias), as caused by ev: doc is encoded with encoding/json (a
// json.RawMessage is sent as it is).
func (tx *Tx) Index(ev projections.Event, alias, id string, doc any) error {
	src, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("elasticsink: encode document %s/%s: %w", alias, id, err)
	}
	p, v, err := tx.slot(alias, id, ev)
	if err != nil {
		return err
	}
	*p = pending{kind: opIndex, source: src, version: max(p.version, v)}
	return nil
}

// Update merges fields into document id, as caused by ev: fields (a struct
// or map, encoded with encoding/json) must encode to a JSON object, whose
// members replace the document's, objects merged recursively, like the
// update API's partial documents. A document that does not exist stays
// absent. Elasticsearch's update action takes no external version, so the
// stored document is read (in real time) when the batch is sent, merged and
// written back with ev's version.
func (tx *Tx) Update(ev projections.Event, alias, id string, fields any) error {
	b, err := json.Marshal(fields)
	if err != nil {
		return fmt.Errorf("elasticsink: encode update of %s/%s: %w", alias, id, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return fmt.Errorf("elasticsink: update of %s/%s: fields must encode to a JSON object", alias, id)
	}
	p, v, err := tx.slot(alias, id, ev)
	if err != nil {
		return err
	}
	p.version = max(p.version, v)
	switch p.kind {
	case opDelete:
		// Absent; stays absent.
	case opIndex:
		if p.doc == nil {
			if err := json.Unmarshal(p.source, &p.doc); err != nil || p.doc == nil {
				return fmt.Errorf("elasticsink: update of %s/%s: the document written before is not a JSON object", alias, id)
			}
			p.source = nil
		}
		merge(p.doc, m)
	default:
		p.kind = opUpdate
		p.merges = append(p.merges, m)
	}
	return nil
}

// Delete deletes document id, as caused by ev.
func (tx *Tx) Delete(ev projections.Event, alias, id string) error {
	p, v, err := tx.slot(alias, id, ev)
	if err != nil {
		return err
	}
	*p = pending{kind: opDelete, version: max(p.version, v)}
	return nil
}

// merge sets src's members into dst, merging objects recursively.
func merge(dst, src map[string]any) {
	for k, v := range src {
		if sv, ok := v.(map[string]any); ok {
			if dv, ok := dst[k].(map[string]any); ok {
				merge(dv, sv)
				continue
			}
			v = maps.Clone(sv)
		}
		dst[k] = v
	}
}

// Flush sends the documents written so far and checks every item of the
// responses; see [Sink.Apply]. Handlers need not call it.
func (tx *Tx) Flush(ctx context.Context) error {
	if len(tx.order) == 0 {
		return nil
	}
	if tx.guard != nil {
		for _, k := range tx.order {
			if _, err := tx.guard.index(ctx, k.index); err != nil {
				return err
			}
		}
	}
	if err := tx.resolveUpdates(ctx); err != nil {
		return err
	}
	acts := make([]action, 0, len(tx.order))
	for _, k := range tx.order {
		p := tx.docs[k]
		c := tx.concrete(k)
		a := action{index: c.index, id: c.id, version: p.version}
		switch p.kind {
		case opDelete:
			a.delete = true
		case opIndex:
			a.source = p.source
			if p.doc != nil {
				b, err := json.Marshal(p.doc)
				if err != nil {
					return fmt.Errorf("elasticsink: encode document %s/%s: %w", k.index, k.id, err)
				}
				a.source = b
			}
		default:
			continue // an update of a document that does not exist
		}
		acts = append(acts, a)
	}
	clear(tx.docs)
	tx.order = tx.order[:0]
	return tx.sink.bulk(ctx, acts)
}

// resolveUpdates reads the stored documents that pending updates merge
// into.
func (tx *Tx) resolveUpdates(ctx context.Context) error {
	var keys []docKey
	for _, k := range tx.order {
		if tx.docs[k].kind == opUpdate {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	concrete := make([]docKey, len(keys))
	for i, k := range keys {
		concrete[i] = tx.concrete(k)
	}
	found, err := tx.sink.mget(ctx, concrete)
	if err != nil {
		return err
	}
	for i, k := range keys {
		p := tx.docs[k]
		doc, ok := found[concrete[i]]
		if !ok {
			p.kind = 0 // absent: nothing to write
			continue
		}
		for _, m := range p.merges {
			merge(doc, m)
		}
		*p = pending{kind: opIndex, doc: doc, version: p.version}
	}
	return nil
}
