package cli

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/kafkasink"
)

// kafkaWorker is the worker of a Kafka projection as projections run
// supervises it. A worker whose producer was fenced (kafkasink.ErrFenced)
// must not simply be started again: a new producer would fence the
// worker that fenced it, which would then do the same. So, when fenced:
//
//   - if another worker holds the projection's lease, it took over
//     legitimately: this one says so and stands by for the lease, as a
//     second 'projections run' does;
//   - if nobody holds the lease, the producer that fenced this one does
//     not take it here: a process with another schema or database
//     publishes the projection with the same transactional ID. Taking
//     turns with it would fence each other forever, so this worker stays
//     stopped until the command ends, and says why.
type kafkaWorker struct {
	*projections.Worker[*kafkasink.Tx]
	leases projections.Locker // the keeper's leases
	sink   *kafkasink.Sink
	app    *app

	fenced atomic.Pointer[kafkasink.FencedError] // set when it stopped for good
}

func (k *kafkaWorker) Run(ctx context.Context) error {
	name := k.Name()
	for {
		err := k.Worker.Run(ctx)
		var fe *kafkasink.FencedError
		if ctx.Err() != nil || !errors.As(err, &fe) {
			return err
		}
		l, held, lerr := k.leases.TryLock(ctx, name)
		if lerr != nil {
			return err // the runner starts it again after a backoff
		}
		if !held {
			fmt.Fprintf(k.app.cfg.Stderr, "%s: %s: another worker took over publishing it (its producer fenced this one's, transactional ID %s); this one stands by\n",
				k.app.cfg.Name, name, fe.TransactionalID)
			continue
		}
		if rerr := l.Release(context.WithoutCancel(ctx)); rerr != nil {
			return errors.Join(err, rerr)
		}
		k.fenced.Store(fe)
		fmt.Fprintf(k.app.cfg.Stderr, "%s: %s: fenced by another producer with transactional ID %s that does not hold its lease in schema %s "+
			"(a process with another schema or database publishes it to the same cluster); not running it again here, "+
			"which would fence that one back: stop the other, then run it again\n",
			k.app.cfg.Name, name, fe.TransactionalID, k.app.flags.schema)
		<-ctx.Done()
		return nil
	}
}

// State reports a worker that stopped for good after a fence as stopped.
func (k *kafkaWorker) State() projections.WorkerState {
	if k.fenced.Load() != nil {
		return projections.WorkerStopped
	}
	return k.Worker.State()
}

// republish moves the checkpoint of a Kafka projection to pos with
// Sink.Republish, so that its workers publish the events after pos again.
func (a *app) republish(ctx context.Context, c *conn, p KafkaProjection, pos es.Position) (from es.Position, err error) {
	s, err := c.kafkaSink()
	if err != nil {
		return es.Position{}, err
	}
	name := p.name()
	cp, err := c.sink.Checkpoint(ctx, name)
	if err != nil {
		return es.Position{}, a.explain(err)
	}
	if err := s.Republish(ctx, name, pos); err != nil {
		if errors.Is(err, kafkasink.ErrLeaseHeld) {
			return es.Position{}, fmt.Errorf("not republishing %s: a worker of it is running (it holds the lease); stop its 'projections run', then try again: %w", name, err)
		}
		return es.Position{}, a.explain(err)
	}
	return cp.Position, nil
}

// rebuildNeedsRepublish is the refusal of a rebuild of a Kafka projection
// without --republish: a usage error, since the flag says it all.
func (a *app) rebuildNeedsRepublish(name string) error {
	return usagef("not rebuilding %s: a Kafka projection has no tables to rebuild; rebuilding it means publishing every event "+
		"of the log again from the start, which its consumers see a second time with the same ce_id (they must deduplicate on it); "+
		"to do that, stop its workers (republishing needs the projection's lease) and run '%s projections rebuild %s --republish'",
		name, a.cfg.Name, name)
}

// resetNeedsRepublish is the refusal of a reset backwards of a Kafka
// projection without --republish.
func (a *app) resetNeedsRepublish(name string, from, to es.Position) error {
	again := fmt.Sprintf("'%s projections reset %s --to %s --republish'", a.cfg.Name, name, to)
	if to.IsZero() {
		again = fmt.Sprintf("'%s projections reset %s --republish'", a.cfg.Name, name)
	}
	return fmt.Errorf("not resetting %s from %s back to %s: it is a Kafka projection, whose checkpoint in Kafka is authoritative, "+
		"so a reset in PostgreSQL alone would be undone when its worker starts; moving it back means publishing the events after %s again, "+
		"which its consumers see a second time with the same ce_id (they must deduplicate on it); to do that, stop its workers "+
		"(republishing needs the projection's lease) and run %s",
		name, from, positionText(to), positionText(to), again)
}

// rebuildKafka publishes a Kafka projection again from the start of the
// log: projections rebuild --republish.
func (a *app) rebuildKafka(ctx context.Context, p KafkaProjection) error {
	if err := a.needKafka(); err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	name := p.name()
	from, err := a.republish(ctx, c, p, es.Start)
	if err != nil {
		return err
	}
	if a.format() == formatJSON {
		return a.writeJSON(map[string]any{"name": name, "from": from, "to": es.Start, "republish": true})
	}
	fmt.Fprintf(a.stdout(), "republish %s: checkpoint %s -> the start; its workers now publish every event of the log again, with the same ce_id ('%s projections run %s')\n",
		name, from, a.cfg.Name, name)
	return nil
}

// resetKafka moves the checkpoint of a Kafka projection with
// Sink.Republish: the Kafka checkpoint is authoritative, so a reset of
// the keeper's copy alone would be undone. Backwards needs republish.
func (a *app) resetKafka(ctx context.Context, c *conn, p KafkaProjection, pos es.Position, republish bool) error {
	name := p.name()
	cp, err := c.sink.Checkpoint(ctx, name)
	if err != nil {
		return a.explain(err)
	}
	if pos.Before(cp.Position) && !republish {
		return a.resetNeedsRepublish(name, cp.Position, pos)
	}
	if err := a.needKafka(); err != nil {
		return err
	}
	from, err := a.republish(ctx, c, p, pos)
	if err != nil {
		return err
	}
	if a.format() == formatJSON {
		return a.writeJSON(map[string]any{"name": name, "from": from, "to": pos, "republish": pos.Before(from)})
	}
	w := a.stdout()
	fmt.Fprintf(w, "reset %s: checkpoint %s -> %s", name, from, pos)
	if pos.Before(from) {
		fmt.Fprintf(w, "; its workers publish the events after it again, with the same ce_id ('%s projections run %s')\n", a.cfg.Name, name)
	} else {
		fmt.Fprintln(w, "; its workers go on from there")
	}
	return nil
}
