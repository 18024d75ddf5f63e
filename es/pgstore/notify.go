package pgstore

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Notifications
//
// Subscribers wait for a NOTIFY on the store's channel. PostgreSQL
// serializes the commits of all transactions that notify (PreCommit_Notify
// takes one global lock and holds it until the commit is done), and a
// notification costs the committing backend as much as the rest of a small
// append. So appends made with [Store.Append] notify only when a subscriber
// listens and no other append in flight is going to.
// After inserting, such an append
//
//  1. tries to take its stream's lock among (notifyLock, 18…33) exclusively,
//     until it commits. A listening subscriber holds all sixteen in shared
//     mode, so getting it means that nobody listens: the append does not
//     notify, and is done;
//  2. otherwise takes its stream's lock among (notifyLock, 2…17) in shared
//     mode, until it commits, to mark itself as in flight (sixteen locks
//     rather than one, so that concurrent appends do not queue on one);
//  3. tries to take (notifyLock, 1) exclusively, until it commits, and
//     notifies only if it got it. If it did not, the holder is another
//     append that has inserted, has not committed yet, and will notify when
//     it does.
//
// A subscriber takes its sixteen locks before it listens, which waits for
// the appends in flight that found nobody listening; it reads the log after
// that, so it sees their events.
//
// An append that left notifying to another (step 3) may commit after that
// one, so a subscriber woken by the notification may read too early. Before
// it goes back to waiting, a subscriber therefore checks that the locks
// (notifyLock, 2…17) are free, i.e. that no such append is in flight, and
// only then that no committed event is pending; otherwise it looks again
// within milliseconds. Both checks run in that order in one batch, so an
// append that commits between them is seen by the second. The append took
// its in-flight lock before it found the right to notify taken, hence
// before the notifying append committed, hence before the subscriber woke
// up and checked.
//
// Two cases are left to the poll, PollInterval later: late, never skipped.
// The notifying append's commit fails after it took the lock; or a
// subscriber's server process, woken by some other notification at that
// very moment, delivers the notifying append's notification in the instant
// between its commit and the release of its locks (PostgreSQL signals
// listeners only after the locks are released, so this takes another
// notifier's signal), and an append left notifying to it in that instant.
// [Store.AppendTx] and [Store.Import] always notify.

// appendsIdle reports whether no append is in flight and no committed event
// after the position after is pending, checked in that order. See above.
func (s *Store) appendsIdle(ctx context.Context, after uint64, afterPrepare int64) (idle bool, err error) {
	batch := &pgx.Batch{}
	var free, pending bool
	batch.Queue(s.q.appendsIdle).QueryRow(func(row pgx.Row) error { return row.Scan(&free) })
	batch.Queue(s.q.pending, after, afterPrepare).QueryRow(func(row pgx.Row) error { return row.Scan(&pending) })
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return false, err
	}
	return free && !pending, nil
}
