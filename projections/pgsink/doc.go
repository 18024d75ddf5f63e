// Package pgsink keeps PostgreSQL read models for projections: each batch's
// read-model changes and the projection's checkpoint commit in one
// transaction, so every event takes effect exactly once, whatever crashes.
//
// A projection writes through the [*Tx] it is handed, naming its tables
// with [Tx.Table] (so that [Sink.Rebuild] can build a new generation beside
// the live one) and batching its writes with [Tx.Upsert], which infers the
// SQL types of the columns from the Go types of the values, adds to
// counters (the Add field of [Upsert]) and folds rows whose key repeats:
//
//	type ordersByProduct struct{}
//
//	func (ordersByProduct) Name() string      { return "orders_by_product" }
//	func (ordersByProduct) Handles() []string { return []string{"LineItemAdded"} }
//	func (ordersByProduct) Tables() []string  { return []string{"orders_by_product"} }
//
//	func (ordersByProduct) Setup(ctx context.Context, tx *pgsink.Tx) error {
//		_, err := tx.Exec(ctx, `CREATE TABLE `+tx.Table("orders_by_product").Sanitize()+
//			` (product_id text, order_id text, PRIMARY KEY (product_id, order_id))`)
//		return err
//	}
//
//	func (ordersByProduct) HandleBatch(ctx context.Context, tx *pgsink.Tx, events []projections.Event) error {
//		var products, orders []string
//		for _, ev := range events {
//			e := ev.Data.(order.LineItemAdded)
//			products, orders = append(products, e.ProductID), append(orders, ev.Record.Stream)
//		}
//		_, err := tx.Upsert(ctx, pgsink.Upsert{
//			Table:   tx.Table("orders_by_product"),
//			Columns: []string{"product_id", "order_id"},
//			Key:     []string{"product_id", "order_id"},
//		}, products, orders)
//		return err
//	}
//
// Run it with a worker made by [NewWorker] on the sink ([Workers] makes one
// for each of several projections); the caller owns the pool:
//
//	sink := pgsink.New(pool, pgsink.Config{})
//	if _, err := sink.Migrate(ctx); err != nil { ... }
//	if _, err := sink.EnsureTables(ctx, ordersByProduct{}); err != nil { ... } // at every start
//	w := pgsink.NewWorker(store, registry, sink, ordersByProduct{}, projections.Config{})
//	err := w.Run(ctx) // nil on a clean stop
//
// The sink is also a [projections.Locker]: workers of the same projection
// in any number of processes take turns through an advisory lock, and a
// standby takes over within about a second of the holder's death. It is a
// [projections.CheckpointWatcher] through LISTEN/NOTIFY, so
// [projections.WaitFor] wakes up as soon as a batch commits, an idle worker
// notices a [Sink.Reset] at once, and a [projections.Runner] a resume.
// All watchers of all sinks on one pool, and the subscriptions of pgstore
// stores on it, share one listening connection, opened outside the pool
// while any of them listens, and opened again with backoff when it breaks
// (then every watcher is signalled, since a change may have been missed).
// The sink holds all of its leases on one connection of its own, opened
// outside the pool while it holds any (application_name is the pool's
// followed by " leases", or "strata leases") and pinged every
// [Config].LeaseCheck: when that connection ends, every lease on it is
// lost at once, and its workers take them again on a new one. A standby
// looks on the pool first and does not connect while another process
// holds the lease. So a process running any number of projections on one
// sink uses the pool's connections, one listening connection per pool and
// one lease connection per sink while it holds leases.
// [Sink.Rebuild] builds a projection's tables anew, blue/green, while the
// live ones serve, and reports its progress in events on a store that
// counts them ([projections.ProgressMeter]); [Sink.Verify] builds them into
// shadow tables and compares them with the live ones at the same checkpoint,
// reporting any [Drift]; [Sink.ResetProjection] moves a checkpoint back
// without applying an event twice to the same rows (it empties the tables,
// or refuses). (pgstore's Store.HeldBackReason makes [projections.ReadStatus]
// say which transaction holds readers of a pgstore log back; the sink does
// not import the store.) [Sink.Projections], [Sink.DeadLetters],
// [Sink.RetryDeadLetter], [Sink.DeleteDeadLetters], [Sink.DeleteCheckpoint]
// and [Sink.SchemaVersion] are what tools such as the strata CLI need of the
// sink's tables, which are its own. [Sink.Migrate] returns a [MigrateResult]
// (what it applied, the version after); [Sink.MigrateTx] migrates in the
// caller's transaction, and [MigrationSQL] gives the SQL, recorded in
// pgsink_migrations, to teams that manage their schema with their own tool. Package pgsinktest tests
// a projection in isolation: given events, then rows.
//
// A batch holds its projection's checkpoint with a transaction-level
// advisory lock (pg_advisory_xact_lock, its first key derived from the
// sink's schema, its second hashtext of the projection's name), not with a
// row lock, and reads the checkpoint row without FOR UPDATE: a row lock
// would give the batch's transaction an ID at once, and pgstore's readers
// wait for every transaction with an ID (every projection, subscription and
// consistency wait of the database would wait for the slowest batch). The
// transaction gets an ID only when it writes: for a PostgreSQL read model
// in its handler, and otherwise when it moves the checkpoint just before it
// commits. Whatever else writes a checkpoint ([Sink.SetState] and so
// pauses and resumes, [Sink.SetRetrying], [Sink.Reset],
// [Sink.ResetProjection], [Sink.DeleteCheckpoint], a rebuild's start and
// swap, [Sink.DeleteRebuildCheckpoint]) takes the same lock first, and
// [Sink.HoldCheckpoint] holds it without writing, so each waits for the
// batch in flight and the next batch sees what it wrote. A batch moves its
// checkpoint only from where it found it, and fails with a
// [projections.CheckpointMovedError] otherwise.
//
// A sink that writes its read model elsewhere can keep its checkpoints,
// leases and dead letters here: [Sink.ApplyTx], [Sink.BeginTx] and
// [Sink.EnsureMigrated] hand it the transaction as a pgx.Tx, which makes a
// *Sink an elasticsink.Keeper without either package importing the other.
package pgsink
