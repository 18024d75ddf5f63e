package estest_test

import (
	"bytes"
	"context"
	"errors"
	"iter"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/estest"
	"github.com/stratadev/strata/es/memstore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// gatedCluster is shared by every gated store of the test binary, so that
// appends held open in one subtest hold back readers in the others.
var gatedCluster = newCluster()

func holdAppend(ctx context.Context, s es.Store, stream string, expected es.ExpectedVersion, events ...es.EventData) (func() error, error) {
	return s.(*gatedStore).hold(ctx, stream, expected, events...)
}

// TestGatedStore runs the whole suite, out-of-order commits included,
// against a store that commits out of position order the way PostgreSQL
// does, and holds readers back correctly.
func TestGatedStore(t *testing.T) {
	t.Parallel()
	estest.Run(t, func(*testing.T) es.Store { return newGatedStore(gatedCluster) }, estest.Config{HoldAppend: holdAppend})
}

// A mutant is a store with one bug, and the subtest of the suite that must
// catch it.
type mutant struct {
	name  string
	fails string // the subtest, below the suite's root, that must fail
	run   func(t *testing.T)
}

var mutants = []mutant{
	{
		name:  "NaiveReadAll",
		fails: "OutOfOrderCommit/HeldAppendHoldsBackReaders",
		run: func(t *testing.T) {
			estest.Run(t, func(*testing.T) es.Store {
				s := newGatedStore(newCluster())
				s.naiveReadAll = true
				return s
			}, estest.Config{HoldAppend: holdAppend})
		},
	},
	{
		name:  "NaiveSubscribe",
		fails: "OutOfOrderCommit/HeldAppendHoldsBackReaders",
		run: func(t *testing.T) {
			estest.Run(t, func(*testing.T) es.Store {
				s := newGatedStore(newCluster())
				s.naiveSubscribe = true
				return s
			}, estest.Config{HoldAppend: holdAppend})
		},
	},
	{
		name:  "StaleConflictActual",
		fails: "Concurrency/OneWinnerPerVersion",
		run: runMutant(func(s *wrapped) {
			s.append = func(ctx context.Context, stream string, expected es.ExpectedVersion, events ...es.EventData) (es.AppendResult, error) {
				res, err := s.Store.Append(ctx, stream, expected, events...)
				if vc, ok := errors.AsType[*es.VersionConflictError](err); ok && vc.Actual > 0 {
					// The version read before the winner committed.
					if v, exact := expected.Version(); exact {
						vc.Actual = v
					}
				}
				return res, err
			}
		}),
	},
	{
		name:  "IgnoresEventIDs",
		fails: "Append/IdempotentExact",
		run: runMutant(func(s *wrapped) {
			s.append = func(ctx context.Context, stream string, expected es.ExpectedVersion, events ...es.EventData) (es.AppendResult, error) {
				events = append([]es.EventData(nil), events...)
				for i := range events {
					events[i].ID = [16]byte{}
				}
				return s.Store.Append(ctx, stream, expected, events...)
			}
		}),
	},
	{
		name:  "MissingStreamIsEmpty",
		fails: "ReadStream/NotFound",
		run: runMutant(func(s *wrapped) {
			s.readStream = func(ctx context.Context, stream string, opts es.ReadStreamOptions) ([]es.Record, error) {
				recs, err := s.Store.ReadStream(ctx, stream, opts)
				if errors.Is(err, es.ErrStreamNotFound) {
					return nil, nil
				}
				return recs, err
			}
		}),
	},
	{
		name:  "BackwardsIgnoresFrom",
		fails: "ReadStream/Options",
		run: runMutant(func(s *wrapped) {
			s.readStream = func(ctx context.Context, stream string, opts es.ReadStreamOptions) ([]es.Record, error) {
				if opts.Direction == es.Backwards {
					opts.From = 0
				}
				return s.Store.ReadStream(ctx, stream, opts)
			}
		}),
	},
	{
		name:  "ReadAllIgnoresLimit",
		fails: "ReadAll/Paging",
		run: runMutant(func(s *wrapped) {
			s.readAll = func(ctx context.Context, after es.Position, _ int) ([]es.Record, error) {
				return s.Store.ReadAll(ctx, after, 0)
			}
		}),
	},
	{
		name:  "SubscribeRepeatsBatches",
		fails: "Subscribe/CatchUpThenLive",
		run: runMutant(func(s *wrapped) {
			s.subscribe = func(ctx context.Context, opts es.SubscribeOptions) iter.Seq2[[]es.Record, error] {
				return func(yield func([]es.Record, error) bool) {
					for batch, err := range s.Store.Subscribe(ctx, opts) {
						if !yield(batch, err) {
							return
						}
						if !yield(batch, err) { // every page twice
							return
						}
					}
				}
			}
		}),
	},
	{
		name:  "SubscribeStopsWhenCaughtUp",
		fails: "Subscribe/CatchUpThenLive",
		run: runMutant(func(s *wrapped) {
			s.subscribe = func(ctx context.Context, opts es.SubscribeOptions) iter.Seq2[[]es.Record, error] {
				return func(yield func([]es.Record, error) bool) {
					after := opts.After
					for {
						batch, err := s.Store.ReadAll(ctx, after, opts.BatchSize)
						if err != nil || len(batch) == 0 {
							return
						}
						if !yield(batch, nil) {
							return
						}
						after = batch[len(batch)-1].Position
					}
				}
			}
		}),
	},
	{
		name:  "SubscribeYieldsCancel",
		fails: "Subscribe/ContextCanceled",
		run: runMutant(func(s *wrapped) {
			s.subscribe = func(ctx context.Context, opts es.SubscribeOptions) iter.Seq2[[]es.Record, error] {
				return func(yield func([]es.Record, error) bool) {
					for batch, err := range s.Store.Subscribe(ctx, opts) {
						if !yield(batch, err) {
							return
						}
					}
					yield(nil, ctx.Err())
				}
			}
		}),
	},
	{
		name:  "CountIncludesAfter",
		fails: "ReadAll/Count",
		run: func(t *testing.T) {
			estest.Run(t, func(*testing.T) es.Store { return inclusiveCount{memstore.New()} }, estest.Config{})
		},
	},
	{
		name:  "EventSizeUnchecked",
		fails: "Size/EventOverLimit",
		run: func(t *testing.T) {
			estest.Run(t, func(*testing.T) es.Store { return memstore.New() }, estest.Config{
				NewLimited: func(*testing.T, es.SizeLimits) es.Store { return memstore.New() },
			})
		},
	},
	{
		name:  "AppendSizeUnchecked",
		fails: "Size/AppendOverLimit",
		run: func(t *testing.T) {
			estest.Run(t, func(*testing.T) es.Store { return memstore.New() }, estest.Config{
				NewLimited: func(_ *testing.T, l es.SizeLimits) es.Store {
					return memstore.New(memstore.Config{MaxEventSize: l.MaxEventSize})
				},
			})
		},
	},
	{
		name:  "SnapshotOverwritesNewer",
		fails: "KeepsNewest",
		run: func(t *testing.T) {
			estest.RunSnapshots(t, func(*testing.T) es.SnapshotStore { return &lastWriteWins{snaps: make(map[string]es.Snapshot)} })
		},
	},
}

// TestMutants checks that the suite catches each mutant's bug: it runs the
// subtest that must fail in a child process and expects it to fail.
func TestMutants(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suite in child processes")
	}
	t.Parallel()
	for _, m := range mutants {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			pattern := "^TestMutant$/^" + m.name + "$"
			for _, part := range strings.Split(m.fails, "/") {
				pattern += "/^" + part + "$"
			}
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run="+pattern, "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), "ESTEST_MUTANT="+m.name)
			out, err := cmd.CombinedOutput()
			want := "--- FAIL: TestMutant/" + m.name + "/" + m.fails + " "
			var exit *exec.ExitError
			switch {
			case err == nil:
				t.Fatalf("the suite passed the mutant %s; %s should have failed:\n%s", m.name, m.fails, out)
			case !errors.As(err, &exit):
				t.Fatalf("run the mutant %s: %v", m.name, err)
			case !strings.Contains(string(out), want):
				t.Fatalf("the mutant %s failed, but not in %s:\n%s", m.name, m.fails, out)
			}
		})
	}
}

// TestMutant runs the suite against a mutant in the child processes of
// TestMutants.
func TestMutant(t *testing.T) {
	name := os.Getenv("ESTEST_MUTANT")
	if name == "" {
		t.Skip("runs in the child processes of TestMutants")
	}
	for _, m := range mutants {
		if m.name == name {
			t.Run(m.name, m.run)
		}
	}
}

// wrapped is a memstore whose methods a mutant may replace.
type wrapped struct {
	es.Store
	append     func(ctx context.Context, stream string, expected es.ExpectedVersion, events ...es.EventData) (es.AppendResult, error)
	readStream func(ctx context.Context, stream string, opts es.ReadStreamOptions) ([]es.Record, error)
	readAll    func(ctx context.Context, after es.Position, limit int) ([]es.Record, error)
	subscribe  func(ctx context.Context, opts es.SubscribeOptions) iter.Seq2[[]es.Record, error]
}

func runMutant(mutate func(*wrapped)) func(t *testing.T) {
	return func(t *testing.T) {
		estest.Run(t, func(*testing.T) es.Store {
			s := &wrapped{Store: memstore.New()}
			s.append, s.readStream, s.readAll, s.subscribe = s.Store.Append, s.Store.ReadStream, s.Store.ReadAll, s.Store.Subscribe
			mutate(s)
			return s
		}, estest.Config{})
	}
}

func (s *wrapped) Append(ctx context.Context, stream string, expected es.ExpectedVersion, events ...es.EventData) (es.AppendResult, error) {
	return s.append(ctx, stream, expected, events...)
}

func (s *wrapped) ReadStream(ctx context.Context, stream string, opts es.ReadStreamOptions) ([]es.Record, error) {
	return s.readStream(ctx, stream, opts)
}

func (s *wrapped) ReadAll(ctx context.Context, after es.Position, limit int) ([]es.Record, error) {
	return s.readAll(ctx, after, limit)
}

func (s *wrapped) Subscribe(ctx context.Context, opts es.SubscribeOptions) iter.Seq2[[]es.Record, error] {
	return s.subscribe(ctx, opts)
}

// lastWriteWins keeps the snapshot saved last, even an older one.
type lastWriteWins struct {
	mu    sync.Mutex
	snaps map[string]es.Snapshot
}

func (s *lastWriteWins) LoadSnapshot(_ context.Context, stream string) (es.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.snaps[stream]
	if !ok {
		return es.Snapshot{}, es.ErrSnapshotNotFound
	}
	snap.Data = bytes.Clone(snap.Data)
	return snap, nil
}

func (s *lastWriteWins) SaveSnapshot(_ context.Context, snap es.Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap.Data = bytes.Clone(snap.Data)
	s.snaps[snap.Stream] = snap
	return nil
}

// inclusiveCount counts the event at the position after as well.
type inclusiveCount struct{ *memstore.Store }

func (s inclusiveCount) CountEvents(ctx context.Context, after, upTo es.Position) (int64, error) {
	n, err := s.Store.CountEvents(ctx, after, upTo)
	if n > 0 && !after.IsZero() {
		n++
	}
	return n, err
}
