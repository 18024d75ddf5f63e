// Package projections runs projections: workers that read the global log of
// an [es.Store] from a checkpoint, hand batches of decoded events to a
// handler and advance the checkpoint, so that a read model follows the log.
//
// The package imports no database driver. A [Sink] keeps checkpoints and
// applies batches; projections/pgsink keeps a PostgreSQL read model and its
// checkpoint in one transaction, so each event takes effect exactly once.
//
//	sink := pgsink.New(pool, pgsink.Config{})            // the caller owns pool
//	w := projections.NewWorker(store, registry, sink, orderViews{}, projections.Config{})
//	err := w.Run(ctx)                                     // nil on a clean stop
//
// A batch holds at most [Config.BatchSize] events. Left at 0, it is what
// the sink advises when it is a [BatchSizer] (an Elasticsearch sink
// advises batches that fill its concurrent bulk requests), and
// [BatchSizeDefault] otherwise.
//
// # Guarantees
//
//   - Events reach the handler in log order, each once per committed batch;
//     the batch and the checkpoint move together (see [Sink.Apply]).
//   - An event whose type the projection does not declare in
//     [Projection.Handles], and that the registry does not upcast into a
//     declared type, is skipped and the checkpoint moves past it. A
//     declared event that does not decode (an old event whose upcaster
//     fails counts as declared), or that the handler fails on,
//     follows the [ErrorPolicy]: the projection stops, marked
//     [StateStalled] at that event ([PolicyStop], the default), or the event is
//     parked as a dead letter and the projection continues
//     ([PolicyDeadLetter]). The [Failure] names stream, version, position,
//     type and error.
//   - Transient errors (those [Sink.Transient] names, and handler errors
//     with a Transient() bool method that says so, see [IsTransient]) are
//     retried with exponential backoff and jitter, from the last committed
//     checkpoint.
//   - When the sink implements [Locker], one worker per projection applies
//     events at a time; the others wait and take over when it stops.
//
// # Reading ahead
//
// A worker reads and decodes the next page of the log (Config.BatchSize
// events) while it applies the current batch, so the database's work on
// the read overlaps with the sink's; it holds at most that one page
// beyond the batch in flight. The page read ahead starts after the last
// event of the page before, exactly where a read after that batch would,
// and is dropped when the worker stops, loses its lease, is paused or
// finds its checkpoint moved: it then reads again from the checkpoint.
//
// # Running many projections
//
// A [Runner] runs the workers of one process and keeps a failure where it
// happened: a projection that stalls stays stalled, is logged once and
// reported by [Runner.Health], and every other worker keeps running; a
// projection stalled at start does not keep the others from starting; the
// runner starts a stalled worker again when an operator resumes the
// projection ([Resume]); any other failure of a worker is retried with
// backoff. Run blocks until its context ends:
//
//	r := projections.NewRunner(projections.RunnerConfig{})
//	r.Add(orderViews, ordersByProduct) // *Worker of any sink
//	go r.Run(ctx)
//	http.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
//		fmt.Fprintln(w, r.Health()) // "ok", or "degraded: order_view stalled at ..."
//	})
//
// A worker with nothing to apply notices when its checkpoint is moved (a
// reset) or its projection paused, and starts over from the checkpoint at
// once: on the signal of a [CheckpointWatcher] sink, or within
// Config.PollInterval.
//
// [WaitFor] waits until a projection has reached a position: the consistency
// token of a command result, for read-your-writes; [WaitForAll] waits for
// several under one bound. When the bound expires first, a [*BehindError]
// names the projection that was behind. [ReadStatus] reports
// state, checkpoint, head and lag. The lag counts every committed event the
// projection has yet to apply, those that an open transaction hides from
// readers included ([es.BacklogReporter]); it is exact on a store that
// counts ([es.Counter]), and elsewhere a lower bound beyond [LagCountLimit],
// flagged as Status.LagEstimated.
//
// A worker records metrics through Config.MeterProvider, with the
// projection's name ([AttrProjection]) as an attribute: events applied,
// batches and their duration, retries, dead letters, and gauges of its lag
// in events and in seconds and of its state ([AttrState]), which read the
// worker's memory rather than the database (see docs/observability.md).
//
// What the sinks' rebuilds and verifications share lives here, so that no
// sink depends on another: their progress ([RebuildProgress], measured by a
// [ProgressMeter]), the names of the checkpoints they run under
// ([RebuildSuffix], [VerifySuffix]), [ErrVerifyRunning] and the kinds of
// difference a verification finds ([DiffKind]).
package projections
