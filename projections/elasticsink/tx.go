package elasticsink

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

// Tx is what a handler writes documents through. Writes are buffered and
// folded: each document gets one action per batch, the last state the
// batch's events gave it, with the version of the last event that wrote
// it. They are sent when the batch ends (see [NewWorker]) or when a
// handler calls [Tx.Flush]. A Tx also carries the PostgreSQL transaction
// that will commit the checkpoint ([Tx.Postgres]).
type Tx struct {
	sink  *Sink
	pg    *pgsink.Tx
	index string // the generation's index; empty for the alias

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

func (s *Sink) newTx(ptx *pgsink.Tx, tg target) *Tx {
	return &Tx{sink: s, pg: ptx, index: tg.index, docs: make(map[docKey]*pending)}
}

// Postgres returns the PostgreSQL transaction that commits the checkpoint,
// for a handler that also keeps rows next to it.
func (tx *Tx) Postgres() *pgsink.Tx { return tx.pg }

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
	v, err := tx.sink.cfg.Version(ev.Record.Position)
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
	if err := tx.resolveUpdates(ctx); err != nil {
		return err
	}
	acts := make([]action, 0, len(tx.order))
	for _, k := range tx.order {
		p := tx.docs[k]
		a := action{index: k.index, id: k.id, version: p.version}
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
	return tx.sink.bulk(ctx, acts, tx.index == "")
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
	found, err := tx.sink.mget(ctx, keys)
	if err != nil {
		return err
	}
	for _, k := range keys {
		p := tx.docs[k]
		doc, ok := found[k]
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
