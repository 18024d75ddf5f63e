package consume

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stratadev/strata/internal/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

var migrations = migrate.Set{Component: "consume", Files: migrationFiles, Table: "kafka_consume_migrations"}

// Migrate creates or upgrades the consumers' tables, kafka_consumers and
// kafka_offsets, in schema (SchemaDefault when empty). It is idempotent and
// safe to call from many processes at once; consumers call it when they
// start.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string, logger *slog.Logger) error {
	if schema == "" {
		schema = SchemaDefault
	}
	if logger == nil {
		logger = slog.Default()
	}
	_, err := migrations.Run(ctx, pool, schema, expander(schema), logger)
	return err
}

func expander(schema string) func(string) string {
	quoted := pgx.Identifier{schema}.Sanitize()
	return func(sql string) string { return strings.ReplaceAll(sql, "{{schema}}", quoted) }
}

// State is what a consumer is doing.
type State string

const (
	StateRunning  State = "running"  // consuming
	StateRetrying State = "retrying" // waiting to try a transient error again
	StateStalled  State = "stalled"  // stopped at a message, which Status names
	StateStopped  State = "stopped"  // Run returned
)

// Kinds of consumers in [ConsumerStatus].
const (
	KindReadModel = "read model"
	KindCommands  = "commands"
)

// ConsumerStatus is what [Status] reports about a consumer group.
type ConsumerStatus struct {
	Group string
	Kind  string // KindReadModel or KindCommands
	State State
	// Failure says what went wrong: the transient error being retried, or
	// why the consumer stalled. Empty when running.
	Failure string
	// At names the message a stalled consumer stopped at; nil otherwise.
	At *Position
	// Attempts counts the retries of the current transient error.
	Attempts int
	// Rejected counts the messages whose command the domain rejected;
	// DeadLettered those moved to the dead-letter topic.
	Rejected, DeadLettered int64
	UpdatedAt              time.Time
	// Partitions are the partitions the group consumed, by topic and
	// partition.
	Partitions []PartitionStatus
}

// Position names a message.
type Position struct {
	Topic     string
	Partition int32
	Offset    int64
}

func (p Position) String() string {
	return fmt.Sprintf("topic %s partition %d offset %d", p.Topic, p.Partition, p.Offset)
}

// PartitionStatus is where a group is in one partition.
type PartitionStatus struct {
	Topic     string
	Partition int32
	// NextOffset is the offset of the next message to consume.
	NextOffset int64
	// HighWatermark is the partition's end when NextOffset was written:
	// Kafka's high watermark, less the commit marker of the transaction
	// of the last message read, which takes an offset but is never
	// delivered. Lag is HighWatermark - NextOffset, at least 0.
	HighWatermark, Lag int64
	UpdatedAt          time.Time
}

// ErrUnknownGroup means [Status] found no consumer of the group.
var ErrUnknownGroup = errors.New("consume: unknown consumer group")

// Status reports the state of the consumer group in schema (SchemaDefault
// when empty): running, retrying a transient error or stalled at a
// message, with the reason, and its offset and lag in each partition. It
// returns an error wrapping [ErrUnknownGroup] when no consumer of the group
// ever ran there.
func Status(ctx context.Context, pool *pgxpool.Pool, schema, group string) (ConsumerStatus, error) {
	if schema == "" {
		schema = SchemaDefault
	}
	expand := expander(schema)
	st := ConsumerStatus{Group: group}
	var topic *string
	var partition *int32
	var offset *int64
	err := pool.QueryRow(ctx, expand(`SELECT kind, state, failure, failed_topic, failed_partition, failed_offset,
		attempts, rejected, dead_lettered, updated_at FROM {{schema}}.kafka_consumers WHERE consumer_group = $1`), group).
		Scan(&st.Kind, &st.State, &st.Failure, &topic, &partition, &offset, &st.Attempts, &st.Rejected, &st.DeadLettered, &st.UpdatedAt)
	var pgErr *pgconn.PgError
	if errors.Is(err, pgx.ErrNoRows) || errors.As(err, &pgErr) && pgErr.Code == pgerrcode.UndefinedTable {
		// No such group, or no consumer ever ran in the schema.
		return ConsumerStatus{}, fmt.Errorf("consume: status of group %s in schema %s: %w", group, schema, ErrUnknownGroup)
	}
	if err != nil {
		return ConsumerStatus{}, fmt.Errorf("consume: status of group %s in schema %s: %w", group, schema, err)
	}
	if topic != nil && partition != nil && offset != nil {
		st.At = &Position{Topic: *topic, Partition: *partition, Offset: *offset}
	}
	rows, err := pool.Query(ctx, expand(`SELECT topic, partition, next_offset, high_watermark, updated_at
		FROM {{schema}}.kafka_offsets WHERE consumer_group = $1 ORDER BY topic, partition`), group)
	if err != nil {
		return ConsumerStatus{}, fmt.Errorf("consume: offsets of group %s in schema %s: %w", group, schema, err)
	}
	st.Partitions, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (PartitionStatus, error) {
		var p PartitionStatus
		err := row.Scan(&p.Topic, &p.Partition, &p.NextOffset, &p.HighWatermark, &p.UpdatedAt)
		p.Lag = max(p.HighWatermark-p.NextOffset, 0)
		return p, err
	})
	if err != nil {
		return ConsumerStatus{}, fmt.Errorf("consume: offsets of group %s in schema %s: %w", group, schema, err)
	}
	return st, nil
}

// statusWriter keeps a consumer's row of kafka_consumers.
type statusWriter struct {
	pool   *pgxpool.Pool
	expand func(string) string
	group  string
	kind   string
}

// set records state with failure (empty for none), the message a stalled
// consumer stopped at, and the attempts of a retry.
func (s statusWriter) set(ctx context.Context, state State, failure string, at *Position, attempts int) error {
	var topic *string
	var partition *int32
	var offset *int64
	if at != nil {
		topic, partition, offset = &at.Topic, &at.Partition, &at.Offset
	}
	_, err := s.pool.Exec(ctx, s.expand(`INSERT INTO {{schema}}.kafka_consumers AS c
			(consumer_group, kind, state, failure, failed_topic, failed_partition, failed_offset, attempts)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (consumer_group) DO UPDATE SET kind = excluded.kind, state = excluded.state, failure = excluded.failure,
			failed_topic = excluded.failed_topic, failed_partition = excluded.failed_partition,
			failed_offset = excluded.failed_offset, attempts = excluded.attempts, updated_at = now()`),
		s.group, s.kind, string(state), failure, topic, partition, offset, attempts)
	if err != nil {
		return fmt.Errorf("consume: record state %s of group %s: %w", state, s.group, err)
	}
	return nil
}

// count adds to the rejected and dead-lettered counts, through db: the
// pool, or the transaction of the batch they belong to.
func (s statusWriter) count(ctx context.Context, db interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, rejected, deadLettered int) error {
	if rejected == 0 && deadLettered == 0 {
		return nil
	}
	_, err := db.Exec(ctx, s.expand(`UPDATE {{schema}}.kafka_consumers
		SET rejected = rejected + $2, dead_lettered = dead_lettered + $3, updated_at = now() WHERE consumer_group = $1`),
		s.group, rejected, deadLettered)
	if err != nil {
		return fmt.Errorf("consume: count the outcomes of group %s: %w", s.group, err)
	}
	return nil
}

// Groups lists the consumer groups that ever ran in schema (SchemaDefault
// when empty), by name; none when no consumer ever ran there.
func Groups(ctx context.Context, pool *pgxpool.Pool, schema string) ([]string, error) {
	if schema == "" {
		schema = SchemaDefault
	}
	rows, err := pool.Query(ctx, expander(schema)(`SELECT consumer_group FROM {{schema}}.kafka_consumers ORDER BY 1`))
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == pgerrcode.UndefinedTable { // no consumer ever migrated here
			return nil, nil
		}
		return nil, fmt.Errorf("consume: consumer groups in schema %s: %w", schema, err)
	}
	groups, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("consume: consumer groups in schema %s: %w", schema, err)
	}
	return groups, nil
}
