package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/internal/backoff"
)

// Worker runs one projection: it follows the log from the projection's
// checkpoint and applies batches through its [Sink].
type Worker[Tx any] struct {
	store   es.Store
	reg     *es.Registry
	sink    Sink[Tx]
	proj    Projection[Tx]
	name    string
	handles map[string]bool
	cfg     Config
	tracer  trace.Tracer
	metrics *workerMetrics

	pos      es.Position // the committed checkpoint, while running
	retries  int         // consecutive transient failures
	retrying bool        // a transient error is recorded (RetryRecorder)

	applied atomic.Int64 // events handed to the handler and committed
	state   atomic.Value // WorkerState
}

// NewWorker returns a worker for p. When cfg.BatchSize is 0 and sink is a
// [BatchSizer], the worker takes the sink's advice. It panics if cfg is invalid (see
// [Config.Validate]), or if an argument is nil or p has no name: those are
// programming errors.
func NewWorker[Tx any](store es.Store, reg *es.Registry, sink Sink[Tx], p Projection[Tx], cfg Config) *Worker[Tx] {
	if store == nil || reg == nil || sink == nil || p == nil {
		panic("projections: NewWorker: nil argument")
	}
	if p.Name() == "" {
		panic("projections: NewWorker: projection has an empty name")
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	handles := make(map[string]bool)
	for _, t := range p.Handles() {
		handles[t] = true
	}
	if bs, ok := sink.(BatchSizer); ok && cfg.BatchSize == 0 {
		cfg.BatchSize = max(bs.BatchSize(), 0)
	}
	cfg = cfg.withDefaults()
	w := &Worker[Tx]{
		store: store, reg: reg, sink: sink, proj: p, name: p.Name(),
		handles: handles, cfg: cfg, tracer: cfg.TracerProvider.Tracer(TracerName),
	}
	w.metrics = newWorkerMetrics(cfg.MeterProvider, w)
	return w
}

// Name returns the projection's name.
func (w *Worker[Tx]) Name() string { return w.name }

// Applied returns how many events this worker has handed to the handler in
// batches that committed.
func (w *Worker[Tx]) Applied() int64 { return w.applied.Load() }

// Checkpoints returns the worker's sink, which keeps its checkpoint.
func (w *Worker[Tx]) Checkpoints() Checkpoints { return w.sink }

// State reports what [Worker.Run] is doing: [WorkerStarting],
// [WorkerRunning], [WorkerStandby] (another worker holds the lease) or
// [WorkerPaused]; and once it returned, [WorkerStalled] or [WorkerStopped].
// It is WorkerStopped before the first Run.
func (w *Worker[Tx]) State() WorkerState {
	if s, ok := w.state.Load().(WorkerState); ok {
		return s
	}
	return WorkerStopped
}

func (w *Worker[Tx]) setState(s WorkerState) { w.state.Store(s) }

// errRestart asks Run to read the checkpoint again and resubscribe.
var errRestart = errors.New("projections: restart from the checkpoint")

// errChanged asks Run to start over at once: someone else changed the
// checkpoint (a reset, a pause) while the worker was idle.
var errChanged = errors.New("projections: checkpoint changed")

// Run applies the projection until ctx ends, and returns nil then. The batch
// in flight when ctx ends is finished (within Config.ShutdownTimeout). Run
// returns a [*StalledError] when the projection stalls, under
// [PolicyStop], or is stalled already. Transient errors are retried.
//
// When the sink is a [Locker], Run first waits for the projection's lease,
// and waits again if it loses it.
//
// While it has nothing to apply, Run notices when someone else moves the
// checkpoint (projections reset) or pauses the projection, and starts over
// from the checkpoint at once: on the signal of a [CheckpointWatcher] sink,
// or by reading the checkpoint every Config.PollInterval.
func (w *Worker[Tx]) Run(ctx context.Context) error {
	w.setState(WorkerStarting)
	err := w.run(ctx)
	if errors.Is(err, ErrStalled) {
		w.setState(WorkerStalled)
	} else {
		w.setState(WorkerStopped)
	}
	return err
}

func (w *Worker[Tx]) run(ctx context.Context) error {
	log := w.cfg.Logger.With(slog.String("projection", w.name))
	for ctx.Err() == nil {
		lease, err := w.acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		err = w.runLeased(ctx, lease)
		if lease != nil {
			if rerr := lease.Release(context.WithoutCancel(ctx)); rerr != nil {
				log.WarnContext(ctx, "projections: release lease", slog.Any("error", rerr))
			}
		}
		switch {
		case ctx.Err() != nil:
			if errors.Is(err, ErrStalled) {
				return err
			}
			return nil
		case err == nil:
			// The lease was lost or the projection is paused: start over.
			w.retries = 0
		case errors.Is(err, ErrStalled):
			return err
		case errors.Is(err, errChanged):
			log.InfoContext(ctx, "projections: restarting from the checkpoint", slog.Any("reason", err))
			w.retries = 0
		case errors.Is(err, errRestart), errors.Is(err, ErrCheckpointMoved), w.transient(err):
			if w.transient(err) {
				w.recordRetry(ctx, err)
				w.metrics.retries.Add(ctx, 1, w.metrics.attrs)
			}
			log.InfoContext(ctx, "projections: restarting from the checkpoint", slog.Any("reason", err))
			if !w.backoff(ctx) {
				return nil
			}
		default:
			return fmt.Errorf("projections: run %s: %w", w.name, err)
		}
	}
	return nil
}

// acquire waits for the lease, when the sink has leases.
func (w *Worker[Tx]) acquire(ctx context.Context) (Lease, error) {
	locker, ok := w.sink.(Locker)
	if !ok {
		return nil, nil
	}
	waiting := false
	for {
		lease, got, err := locker.TryLock(ctx, w.name)
		switch {
		case err != nil && ctx.Err() == nil && w.transient(err):
			if !w.backoff(ctx) {
				return nil, ctx.Err()
			}
			continue
		case err != nil:
			return nil, fmt.Errorf("projections: lease of %s: %w", w.name, err)
		case got:
			w.cfg.Logger.InfoContext(ctx, "projections: lease taken", slog.String("projection", w.name))
			return lease, nil
		}
		if !waiting {
			waiting = true
			w.setState(WorkerStandby)
			w.cfg.Logger.InfoContext(ctx, "projections: another worker holds the lease; standing by", slog.String("projection", w.name))
		}
		if !backoff.Sleep(ctx, w.cfg.PollInterval) {
			return nil, ctx.Err()
		}
	}
}

type subMsg struct {
	items []item
	err   error
}

// item is a record of the log as the worker sees it: decoded by the
// subscription's goroutine, so that decoding the next page overlaps with
// applying the current one.
type item struct {
	ev      Event
	handled bool  // the projection declares the type
	err     error // decoding failed
}

// decode turns recs into items.
func (w *Worker[Tx]) decode(recs []es.Record) []item {
	items := make([]item, len(recs))
	for i := range recs {
		it := &items[i]
		it.ev.Record = recs[i]
		rec := recs[i]
		if !w.handles[rec.Type] {
			// An older type is handled when its upcasters turn it into
			// a handled one. One whose upcaster fails cannot be told
			// apart, so it follows the error policy: never a silent skip.
			up, err := w.reg.Upcasted(rec)
			if err == nil && !w.handles[up.Type] {
				continue
			}
			if err != nil {
				it.handled, it.err = true, err
				continue
			}
			rec = up // decoded below without running the upcasters again
		}
		it.handled = true
		it.ev.Data, it.err = w.reg.Decode(rec)
	}
	return items
}

// runLeased applies the projection while the lease holds. It returns nil
// when the lease is lost or the projection is paused, and errRestart or
// another error when it must start over.
func (w *Worker[Tx]) runLeased(ctx context.Context, lease Lease) error {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if lease != nil {
		defer w.cancelOnLost(ctx, lease, cancel)()
	}
	// Watch before reading the checkpoint, so that no change after the
	// read goes unnoticed.
	changed, stopWatch := w.watch(lctx)
	defer stopWatch()
	// Polled while idle, too: a watch may lose signals (its connection
	// breaks), and not every sink has one.
	idle := time.NewTicker(w.cfg.PollInterval)
	defer idle.Stop()

	from, ok, err := w.start(lctx)
	if !ok {
		return err
	}
	w.metrics.read.reset(from, w.cfg.BatchSize)
	msgs, stopSub := w.subscribe(lctx, from)
	defer stopSub()
	in := &intake[Tx]{w: w, msgs: msgs, changed: changed, idle: idle.C}
	for {
		batch, err := in.next(lctx)
		if err != nil || batch == nil {
			return err
		}
		if err := w.process(lctx, batch); err != nil {
			if errors.Is(err, ErrPaused) {
				// The batch in flight committed; wait, then start over
				// from the checkpoint.
				return w.waitPaused(lctx)
			}
			return err
		}
		w.retries = 0
		if lctx.Err() != nil {
			return nil
		}
	}
}

// cancelOnLost calls cancel when lease is lost, until the returned
// function is called.
func (w *Worker[Tx]) cancelOnLost(ctx context.Context, lease Lease, cancel context.CancelFunc) (stop func()) {
	done := make(chan struct{})
	go func() {
		select {
		case <-lease.Lost():
			w.cfg.Logger.WarnContext(ctx, "projections: lease lost", slog.String("projection", w.name))
			cancel()
		case <-done:
		}
	}()
	return func() { close(done) }
}

// watch returns the signals of a [CheckpointWatcher] sink for the
// projection, and a function that stops watching. The channel is nil when
// the sink cannot watch.
func (w *Worker[Tx]) watch(ctx context.Context) (changed <-chan struct{}, stop func()) {
	if cw, ok := w.sink.(CheckpointWatcher); ok {
		if ch, stop, err := cw.WatchCheckpoint(ctx, w.name); err == nil {
			return ch, stop
		}
	}
	return nil, func() {}
}

// start reads the checkpoint and returns where to go on from, with ok
// set. A stalled projection returns its [*StalledError]; a paused one
// waits until it is resumed (or ctx ends) and returns with ok unset, to
// start over from the checkpoint.
func (w *Worker[Tx]) start(ctx context.Context) (from es.Position, ok bool, err error) {
	cp, err := w.sink.Checkpoint(ctx, w.name)
	if err != nil {
		return es.Position{}, false, fmt.Errorf("read checkpoint: %w", err)
	}
	switch cp.State {
	case StateStalled:
		f := Failure{}
		if cp.Failure != nil {
			f = *cp.Failure
		}
		return es.Position{}, false, &StalledError{Projection: w.name, Failure: f}
	case StatePaused:
		return es.Position{}, false, w.waitPaused(ctx)
	}
	w.pos = cp.Position
	w.setState(WorkerRunning)
	// A record left by a worker that stopped while retrying is cleared too.
	w.retrying = w.retrying || (cp.Failure != nil && cp.Failure.Retrying)
	w.recordRetry(ctx, nil)
	return cp.Position, true, nil
}

// subscribe reads the log after from, decoded, in a goroutine that sends
// what it reads on msgs until it meets an error or stop is called. stop
// waits for the goroutine to end. msgs is unbuffered: while the worker
// applies a batch, the goroutine reads and decodes the next page and waits
// to hand it over, which bounds the read-ahead to one page (see "Reading
// ahead" in the package documentation).
func (w *Worker[Tx]) subscribe(ctx context.Context, from es.Position) (msgs <-chan subMsg, stop func()) {
	subCtx, stopSub := context.WithCancel(ctx)
	ch := make(chan subMsg)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(ch)
		for recs, err := range w.store.Subscribe(subCtx, es.SubscribeOptions{After: from, BatchSize: w.cfg.BatchSize}) {
			m := subMsg{err: err}
			if err == nil {
				m.items = w.decode(recs)
				w.metrics.read.readPage(recs)
			}
			select {
			case ch <- m:
			case <-subCtx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	})
	return ch, func() {
		stopSub()
		for range ch {
		}
		wg.Wait()
	}
}

// intake gathers the events of a leased run into batches.
type intake[Tx any] struct {
	w       *Worker[Tx]
	msgs    <-chan subMsg
	changed <-chan struct{}  // the sink's signals; nil without a watch
	idle    <-chan time.Time // polls the checkpoint while there is nothing to do
	pending []item
}

// next waits for events and returns the next batch: at most BatchSize
// events, once BatchWait has passed or BatchSize events are there. It
// returns nil when ctx ends first, or the error of a look at the
// checkpoint while idle.
func (in *intake[Tx]) next(ctx context.Context) ([]item, error) {
	for len(in.pending) == 0 {
		if _, err := in.recv(ctx, true, nil); err != nil || ctx.Err() != nil {
			return nil, err
		}
	}
	cfg := in.w.cfg
	if len(in.pending) < cfg.BatchSize && cfg.BatchWait > 0 {
		timer := time.NewTimer(cfg.BatchWait)
		defer timer.Stop()
		for len(in.pending) < cfg.BatchSize {
			got, err := in.recv(ctx, false, timer.C)
			if err != nil {
				return nil, err
			}
			if !got {
				break
			}
		}
	}
	if ctx.Err() != nil {
		return nil, nil // nothing in flight yet
	}
	n := min(len(in.pending), cfg.BatchSize)
	batch := in.pending[:n:n]
	in.pending = in.pending[n:]
	return batch, nil
}

// recv takes what the subscription sends next into pending and reports
// whether it got events. Blocking, it waits for events, and looks at the
// checkpoint when the sink signals a change or the idle ticker fires; not
// blocking, it gives up when timeout fires.
func (in *intake[Tx]) recv(ctx context.Context, block bool, timeout <-chan time.Time) (bool, error) {
	if block {
		select {
		case m, ok := <-in.msgs:
			return in.w.take(ctx, &in.pending, m, ok)
		case <-in.changed:
			return false, in.w.checkIdle(ctx)
		case <-in.idle:
			return false, in.w.checkIdle(ctx)
		case <-ctx.Done():
			return false, nil
		}
	}
	select {
	case m, ok := <-in.msgs:
		return in.w.take(ctx, &in.pending, m, ok)
	case <-timeout:
		return false, nil
	case <-ctx.Done():
		return false, nil
	}
}

// checkIdle reads the checkpoint while the worker has nothing to apply, and
// returns an error that wraps errChanged when it is no longer where the
// worker left it, or no longer running.
func (w *Worker[Tx]) checkIdle(ctx context.Context) error {
	cp, err := w.sink.Checkpoint(ctx, w.name)
	switch {
	case ctx.Err() != nil:
		return nil
	case err != nil:
		return fmt.Errorf("read checkpoint: %w", err)
	case cp.Position != w.pos:
		return fmt.Errorf("%w: moved to %s while the worker was idle at %s", errChanged, cp.Position, w.pos)
	case cp.State == StatePaused:
		// Wait holding the lease, as a pause between batches does.
		if err := w.waitPaused(ctx); err != nil || ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("%w: the projection was paused", errChanged)
	case cp.State == StateStalled:
		return fmt.Errorf("%w: the projection is %s", errChanged, cp.State)
	}
	return nil
}

// take adds a subscription message to pending.
func (w *Worker[Tx]) take(ctx context.Context, pending *[]item, m subMsg, ok bool) (bool, error) {
	if !ok {
		if ctx.Err() != nil {
			return false, nil
		}
		return false, fmt.Errorf("%w: subscription ended", errRestart)
	}
	if m.err != nil {
		return false, fmt.Errorf("%w: subscription: %w", errRestart, m.err)
	}
	if len(*pending) == 0 {
		*pending = m.items
	} else {
		*pending = append(*pending, m.items...)
	}
	return true, nil
}

// process applies items, which follow the checkpoint w.pos, in as few
// batches as the error policy allows. The work is finished even when ctx
// ends, unless that takes longer than the shutdown timeout.
func (w *Worker[Tx]) process(ctx context.Context, items []item) error {
	actx, done := w.inFlight(ctx)
	defer done()
	for i := 0; i < len(items); {
		var (
			bad    error
			j      = i
			events = make([]Event, 0, len(items)-i)
		)
		for ; j < len(items); j++ {
			it := &items[j]
			if !it.handled {
				continue
			}
			if it.err != nil {
				bad = it.err
				break
			}
			events = append(events, it.ev)
		}
		if j > i {
			if err := w.applySegment(ctx, actx, events, items[j-1].ev.Record.Position); err != nil {
				return err
			}
		}
		if bad != nil {
			if err := w.fail(ctx, actx, items[j].ev.Record, bad); err != nil {
				return err
			}
		}
		i = j + 1
	}
	return nil
}

// inFlight returns a context for the batch in flight: it outlives ctx by at
// most the shutdown timeout.
func (w *Worker[Tx]) inFlight(ctx context.Context) (context.Context, func()) {
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var (
		mu    sync.Mutex
		timer *time.Timer
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		timer = time.AfterFunc(w.cfg.ShutdownTimeout, cancel)
	})
	return actx, func() {
		stop()
		mu.Lock()
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		cancel()
	}
}

// handlerError marks an error returned by the projection's handler.
type handlerError struct{ err error }

func (e *handlerError) Error() string { return e.err.Error() }
func (e *handlerError) Unwrap() error { return e.err }

// applySegment applies events as one batch that moves the checkpoint to
// to. If the handler fails on a batch of several events, it applies them one
// at a time to find the event at fault and hands that to the error policy.
func (w *Worker[Tx]) applySegment(ctx, actx context.Context, events []Event, to es.Position) error {
	err := w.apply(ctx, actx, ApplyParams{Projection: w.name, From: w.pos, To: to, Events: events})
	var herr *handlerError
	if !errors.As(err, &herr) {
		return err
	}
	if len(events) == 1 {
		return w.fail(ctx, actx, events[0].Record, herr.err)
	}
	for k, ev := range events {
		upTo := ev.Record.Position
		if k == len(events)-1 {
			upTo = to
		}
		err := w.apply(ctx, actx, ApplyParams{Projection: w.name, From: w.pos, To: upTo, Events: events[k : k+1]})
		if errors.As(err, &herr) {
			err = w.fail(ctx, actx, ev.Record, herr.err)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// apply runs one batch through the sink, retrying transient errors. A
// handler error that is not transient comes back as a *handlerError.
func (w *Worker[Tx]) apply(ctx, actx context.Context, p ApplyParams) error {
	for {
		var herr error
		start := time.Now()
		err := w.sink.Apply(actx, p, func(hctx context.Context, tx Tx) error {
			hctx, span := w.startBatch(hctx, p)
			herr = w.proj.HandleBatch(hctx, tx, p.Events)
			endBatch(span, herr)
			return herr
		})
		switch {
		case err == nil:
			w.pos = p.To
			w.applied.Add(int64(len(p.Events)))
			w.metrics.batch(actx, len(p.Events), time.Since(start))
			w.metrics.read.processedTo(p.To)
			w.recordRetry(actx, nil)
			return nil
		case actx.Err() != nil:
			return fmt.Errorf("apply batch to %s: %w", p.To, actx.Err())
		case herr != nil && !w.transient(herr) && !errors.Is(herr, context.Canceled):
			return &handlerError{herr}
		case errors.Is(err, ErrCheckpointMoved), errors.Is(err, ErrPaused):
			return err
		case w.transient(err) || herr != nil:
			w.recordRetry(actx, err)
			w.metrics.retries.Add(actx, 1, w.metrics.attrs)
			w.cfg.Logger.WarnContext(ctx, "projections: transient error; retrying",
				slog.String("projection", w.name), slog.String("to", p.To.String()), slog.Any("error", err))
			if !w.backoff(ctx) {
				return fmt.Errorf("apply batch to %s: %w", p.To, err)
			}
		default:
			return fmt.Errorf("apply batch to %s: %w", p.To, err)
		}
	}
}

// fail applies the error policy to rec.
func (w *Worker[Tx]) fail(ctx, actx context.Context, rec es.Record, cause error) error {
	f := failureOf(rec, cause)
	log := w.cfg.Logger.With(slog.String("projection", w.name), slog.String("stream", f.Stream),
		slog.Int64("version", f.Version), slog.String("position", f.Position.String()),
		slog.String("type", f.Type), slog.String("error", f.Error))
	if w.cfg.ErrorPolicy == PolicyDeadLetter {
		err := w.apply(ctx, actx, ApplyParams{
			Projection: w.name, From: w.pos, To: rec.Position,
			DeadLetters: []DeadLetter{{Projection: w.name, Record: rec, Failure: f}},
		})
		if err != nil {
			return err
		}
		w.metrics.deadLetters.Add(actx, 1, w.metrics.attrs)
		log.WarnContext(ctx, "projections: event parked as a dead letter")
		return nil
	}
	for {
		err := w.sink.SetState(actx, w.name, StateStalled, &f)
		if err == nil {
			break
		}
		if !w.transient(err) || !w.backoff(ctx) {
			return fmt.Errorf("mark %s stalled at %s: %w", w.name, f, err)
		}
	}
	log.ErrorContext(ctx, "projections: projection stalled")
	return &StalledError{Projection: w.name, Failure: f}
}

// RetryRecorder is implemented by sinks that can record the transient
// error a worker is retrying, so that status shows it while it lasts
// ([StateRetrying] and [Status.LastError]).
type RetryRecorder interface {
	// SetRetrying records f, whose Retrying is set, as the last error of
	// the projection if it is running; with f nil it clears such a record.
	SetRetrying(ctx context.Context, projection string, f *Failure) error
}

// recordRetry records err as the transient error being retried, or clears
// the record when err is nil, when the sink is a RetryRecorder.
func (w *Worker[Tx]) recordRetry(ctx context.Context, err error) {
	// The process's own view (Worker.State, Runner.Health) follows on every
	// sink; the stored record only where the sink keeps one.
	if err != nil {
		w.setState(WorkerRetrying)
	} else if w.State() == WorkerRetrying {
		w.setState(WorkerRunning)
	}
	rr, ok := w.sink.(RetryRecorder)
	if !ok || (err == nil && !w.retrying) {
		return
	}
	var f *Failure
	if err != nil {
		f = &Failure{Position: w.pos, Error: err.Error(), At: time.Now().UTC(), Retrying: true}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if rerr := rr.SetRetrying(ctx, w.name, f); rerr != nil {
		w.cfg.Logger.DebugContext(ctx, "projections: record the error being retried", slog.String("projection", w.name), slog.Any("error", rerr))
		return
	}
	w.retrying = err != nil
}

// backoff waits before the next retry: exponential, with jitter. It
// reports false when ctx ended first.
func (w *Worker[Tx]) backoff(ctx context.Context) bool {
	w.retries++
	return backoff.Backoff{Min: w.cfg.RetryMin, Max: w.cfg.RetryMax}.Wait(ctx, w.retries-1)
}

// transient reports whether err is worth retrying: the sink says so, or the
// error itself does (see [IsTransient]).
func (w *Worker[Tx]) transient(err error) bool {
	return w.sink.Transient(err) || IsTransient(err)
}
