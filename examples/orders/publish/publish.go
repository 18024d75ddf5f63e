// Package publish is the order service's publishing projection: it maps
// the service's domain events to the integration events of
// examples/orders/contract and publishes them to Kafka with
// projections/kafkasink, each batch and its checkpoint in one Kafka
// transaction, so that a read_committed consumer sees every event once.
package publish

import (
	"cmp"
	"context"
	"fmt"

	"github.com/stratadev/strata/examples/orders/contract"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/kafkasink"
)

// Name is the projection's name, and so its checkpoint's and its Kafka
// transactional ID's.
const Name = "order_events"

// Source is the ce_source of the messages.
const Source = "orders"

// TransactionalIDPrefix starts the transactional ID of the projection's
// producer, which also keys its checkpoint in Kafka: one per service, so
// that services sharing a cluster keep apart.
const TransactionalIDPrefix = "orders-"

// Topics are the topics the projection publishes to, with the partitions
// the sink creates them with.
func Topics() []kafkasink.Topic {
	return []kafkasink.Topic{{Name: contract.Topic, Partitions: 4}}
}

// OrderEvents is the projection. Topic defaults to contract.Topic.
type OrderEvents struct{ Topic string }

// Config returns the sink configuration of the order service's publishing:
// its source, its transactional ID prefix, its topics (created when
// missing), and brokers (nil: from the CLI's --kafka-brokers).
func Config(brokers []string) kafkasink.Config {
	return kafkasink.Config{Brokers: brokers, Source: Source, TransactionalIDPrefix: TransactionalIDPrefix,
		Topics: Topics(), CreateTopics: true}
}

func (OrderEvents) Name() string      { return Name }
func (OrderEvents) Handles() []string { return contract.Published() }

// HandleBatch publishes each event's integration event, keyed by the
// order's stream so that one order's messages stay in order.
func (p OrderEvents) HandleBatch(_ context.Context, tx *kafkasink.Tx, events []projections.Event) error {
	topic := cmp.Or(p.Topic, contract.Topic)
	for _, ev := range events {
		typ, value, ok, err := contract.FromDomain(ev.Data)
		if err != nil {
			return fmt.Errorf("publish %s@%d: %w", ev.Record.Stream, ev.Record.Version, err)
		}
		if !ok {
			continue
		}
		if err := tx.Publish(topic, ev, typ, value); err != nil {
			return err
		}
	}
	return nil
}
