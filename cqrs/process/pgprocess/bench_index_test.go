package pgprocess_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratadev/strata/cqrs/process/pgprocess"
)

// BenchmarkOrderProcess found the dispatcher sorting every pending command
// of a follower batch on each dispatch: they share next_attempt_at (the
// batch's now()), and the pending index had no other column. The
// dispatcher's query, on 1,000 pending commands of one batch, must be
// served in its order by the index, with no sort.
func TestDispatchOrderNeedsNoSort(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	outbox := pgxIdent(e.sink.Schema(), pgprocess.OutboxTable)
	if _, err := e.pool.Exec(t.Context(), `INSERT INTO `+outbox+` (process, id, step, seq, command_id, command_type, command)
		SELECT 'checkout', g::text, 1, 0, 'checkout/' || g || '/1/0', 'pgprocess_test.CapturePayment', '{}'
		FROM generate_series(1, 1000) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(t.Context(), `ANALYZE `+outbox); err != nil {
		t.Fatal(err)
	}
	// The dispatcher's claim (loops.go, dispatchBatch).
	rows, err := e.pool.Query(t.Context(), `EXPLAIN SELECT id, step, seq, command_id
		FROM `+outbox+` WHERE process = $1 AND status = 'pending' AND next_attempt_at <= now()
		ORDER BY next_attempt_at, id, step, seq LIMIT 64`, "checkout")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if strings.Contains(text, "Sort") || !strings.Contains(text, pgprocess.OutboxTable+"_pending") {
		t.Errorf("plan of the dispatcher's query:\n%s\nwant an index scan of %s_pending and no sort", text, pgprocess.OutboxTable)
	}
}

// The deadline loop's query, on 1,000 due deadlines, is served in its
// order by the pending index, with no sort: a tiebreaker in its ORDER BY
// sorted every due deadline on each batch.
func TestFireOrderNeedsNoSort(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	schema := e.sink.Schema()
	for _, sql := range []string{
		`INSERT INTO ` + pgxIdent(schema, pgprocess.InstancesTable) + ` (process, id, state, status, step)
			SELECT 'checkout', g::text, '{}', 'running', 1 FROM generate_series(1, 1000) g`,
		`INSERT INTO ` + pgxIdent(schema, pgprocess.DeadlinesTable) + ` (process, id, name, step, due_at)
			SELECT 'checkout', g::text, 'payment', 1, now() - g * interval '1 ms' FROM generate_series(1, 1000) g`,
		`ANALYZE ` + pgxIdent(schema, pgprocess.InstancesTable) + `, ` + pgxIdent(schema, pgprocess.DeadlinesTable),
	} {
		if _, err := e.pool.Exec(t.Context(), sql); err != nil {
			t.Fatal(err)
		}
	}
	// The deadline loop's query (loops.go, fireBatch).
	rows, err := e.pool.Query(t.Context(), `EXPLAIN SELECT d.name, d.step, d.due_at, i.id, i.state
		FROM `+pgxIdent(schema, pgprocess.DeadlinesTable)+` d JOIN `+pgxIdent(schema, pgprocess.InstancesTable)+` i
			ON i.process = d.process AND i.id = d.id
		WHERE d.process = $1 AND d.status = 'pending' AND d.due_at <= now()
		ORDER BY d.due_at LIMIT 64 FOR UPDATE OF i SKIP LOCKED`, "checkout")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if strings.Contains(text, "Sort") || !strings.Contains(text, pgprocess.DeadlinesTable+"_pending") {
		t.Errorf("plan of the deadline loop's query:\n%s\nwant an index scan of %s_pending and no sort", text, pgprocess.DeadlinesTable)
	}
}
