package kafkasink

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/projections"
)

// Tx is a batch's Kafka transaction, as a handler sees it. The messages it
// publishes are sent as they come and become visible to read_committed
// consumers when the batch commits, with the checkpoint; a batch that
// fails publishes none of them. Handlers must not keep it after they
// return.
type Tx struct {
	sink   *Sink
	client *kgo.Client
	ctx    context.Context

	mu  sync.Mutex
	err error // the first failed produce
	n   int
}

// Message is a message for [Tx.PublishMessage].
type Message struct {
	// Topic is one of [Config.Topics]. Required.
	Topic string
	// Event is the source event. Its ID becomes the message's ce_id, and
	// its stream, version, position, time and metadata the other headers
	// (see [EnvelopeOf]).
	Event projections.Event
	// Type is the integration event's type, e.g. "order.placed.v1".
	// Required.
	Type string
	// Key is the message's key, which picks its partition: messages with
	// one key stay in order. Defaults to the source event's stream ID.
	Key []byte
	// Value is the integration event, encoded as ContentType says.
	Value []byte
	// ContentType is the value's media type. Defaults to
	// "application/json".
	ContentType string
	// Headers are added after the CloudEvents ones. Defaults to none.
	Headers []kgo.RecordHeader
}

// Publish publishes the integration event value (JSON) of type typ, made
// from ev, to topic, keyed by ev's stream so that the messages of one
// aggregate stay in order in one partition. It fails only when topic is
// not one of [Config.Topics] or typ is empty: it sends the message in the
// background. A worker made with [NewWorker] waits for the batch's
// messages when the handler is done, and fails the handler when Kafka
// refused one for what it is (too large); other failures to send fail the
// batch after the handler.
func (tx *Tx) Publish(topic string, ev projections.Event, typ string, value []byte) error {
	return tx.PublishMessage(Message{Topic: topic, Event: ev, Type: typ, Value: value})
}

// PublishMessage is [Tx.Publish] with a key, content type or headers of
// the handler's choice.
func (tx *Tx) PublishMessage(m Message) error {
	if _, ok := tx.sink.topics[m.Topic]; !ok {
		return fmt.Errorf("kafkasink: publish %s of event %s@%d: topic %q is not in Config.Topics",
			m.Type, m.Event.Record.Stream, m.Event.Record.Version, m.Topic)
	}
	if m.Type == "" {
		return fmt.Errorf("kafkasink: publish event %s@%d to %s: no integration event type",
			m.Event.Record.Stream, m.Event.Record.Version, m.Topic)
	}
	env := EnvelopeOf(m.Event.Record, m.Type, tx.sink.cfg.Source)
	env.ContentType = cmpOr(m.ContentType, ContentTypeJSON)
	key := m.Key
	if key == nil {
		key = []byte(m.Event.Record.Stream)
	}
	tx.produce(&kgo.Record{Topic: m.Topic, Key: key, Value: m.Value, Headers: append(env.Headers(), m.Headers...)})
	return nil
}

// Published returns how many messages the handler published in the batch.
func (tx *Tx) Published() int {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.n
}

func (tx *Tx) produce(r *kgo.Record) {
	tx.mu.Lock()
	tx.n++
	tx.mu.Unlock()
	tx.client.Produce(tx.ctx, r, func(r *kgo.Record, err error) {
		if err == nil {
			return
		}
		tx.mu.Lock()
		defer tx.mu.Unlock()
		if tx.err == nil {
			if errors.Is(err, kerr.TopicAuthorizationFailed) {
				tx.err = &TopicError{Topic: r.Topic, Reason: "may not write to it (the principal needs Write)", Err: err}
			} else {
				tx.err = fmt.Errorf("produce to %s: %w", r.Topic, err)
			}
		}
	})
}

// refusedRecord reports whether err says Kafka refused a record for
// what it is (too large, invalid): sending it again will not help.
func refusedRecord(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) ||
		errors.Is(err, kerr.InvalidRecord) || errors.Is(err, kerr.CorruptMessage)
}

// flush waits until the messages published so far are sent, and returns
// the error of one Kafka refused for what it is, so that the handler
// fails with it. Other failures fail the batch after the handler.
func (tx *Tx) flush(ctx context.Context) error {
	if err := tx.client.Flush(ctx); err != nil {
		return nil // the batch fails with it after the handler
	}
	if err := tx.failed(); refusedRecord(err) {
		return fmt.Errorf("kafkasink: %w", err)
	}
	return nil
}

// failed returns the first failed produce, if any.
func (tx *Tx) failed() error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.err
}
