package pgsink

import (
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
)

// NewWorker returns a worker that runs p on s, reading the log of store
// and decoding its events through reg, as elasticsink.NewWorker does for
// Elasticsearch projections:
//
//	runner.Add(pgsink.NewWorker(store, reg, sink, ordersByProduct{}, projections.Config{}))
//
// A [Rebuildable], or any other interface value that holds a projection,
// is accepted as it is: no conversion to projections.Sink[*Tx] or
// projections.Projection[*Tx] is needed. It panics like
// projections.NewWorker, and when s is nil.
func NewWorker(store es.Store, reg *es.Registry, s *Sink, p projections.Projection[*Tx], cfg projections.Config) *projections.Worker[*Tx] {
	if s == nil {
		panic("pgsink: NewWorker: nil sink")
	}
	return projections.NewWorker[*Tx](store, reg, s, p, cfg)
}

// Workers returns a worker for each of ps, made with [NewWorker] and the
// same cfg, ready for projections.Runner.Add:
//
//	runner.Add(pgsink.Workers(store, reg, sink, projections.Config{}, orderViews{}, ordersByProduct{})...)
//
// ps may be a slice of any projection type, []Rebuildable for one.
func Workers[P projections.Projection[*Tx]](store es.Store, reg *es.Registry, s *Sink, cfg projections.Config, ps ...P) []projections.Runnable {
	ws := make([]projections.Runnable, len(ps))
	for i, p := range ps {
		ws[i] = NewWorker(store, reg, s, p, cfg)
	}
	return ws
}
