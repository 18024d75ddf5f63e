// Package kafkatest gives tests a real Apache Kafka broker.
//
// A test package runs its tests through [Run] from TestMain, around the
// PostgreSQL setup when it needs both:
//
//	func TestMain(m *testing.M) { os.Exit(kafkatest.Run(m, pgtest.Run)) }
//
// and each test takes clients and a topic of its own:
//
//	topic := kafkatest.Topic(t, 3)
//	client := kafkatest.Client(t, kgo.DefaultProduceTopic(topic))
//
// The broker is the one named by TEST_KAFKA_URL (a bootstrap address such
// as 127.0.0.1:9092). When that is unset, Run starts a throwaway one (see
// [Start]) for the test binary; strata's own `make test` starts one for
// all packages instead. When no broker can be had, the tests that need one
// skip with one line saying why (or fail under CI=true or
// STRATA_REQUIRE_SERVERS=1, see [pgtest.Required]); STRATA_SKIP_KAFKA=1
// skips them without trying.
//
// A test that kills and restarts a broker starts one of its own with
// [Start] and reaches it with [ClientOf].
package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/internal/servertest"
)

const (
	// EnvURL names the test broker's bootstrap address.
	EnvURL = "TEST_KAFKA_URL"
	// EnvSkip skips the tests that need Kafka when set to 1.
	EnvSkip = "STRATA_SKIP_KAFKA"
)

var server = &servertest.Server{
	Package: "kafkatest", What: "Kafka broker", EnvURL: EnvURL, EnvSkip: EnvSkip,
	StartTimeout: 3 * time.Minute, NotInstalled: ErrNotInstalled,
	Start: func(ctx context.Context) (string, func() error, error) {
		srv, err := Start(ctx, ServerConfig{})
		if err != nil {
			return "", nil, err
		}
		return srv.URL(), srv.Stop, nil
	},
}

// Run starts a throwaway broker when TEST_KAFKA_URL is unset (and
// STRATA_SKIP_KAFKA is not 1), runs next (pgtest.Run, or m.Run when nil),
// stops the broker and returns next's exit code.
func Run(m *testing.M, next func(*testing.M) int) int { return server.Run(m, next) }

// URL returns the broker's bootstrap address. It skips the test when
// STRATA_SKIP_KAFKA=1 and fails it when there is no broker.
func URL(t testing.TB) string {
	t.Helper()
	return server.URL(t)
}

// Client returns a client of the test broker with opts, closed when the
// test ends.
func Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return ClientOf(t, URL(t), opts...)
}

// ClientOf is [Client] for another bootstrap address, such as that of a
// broker the test started itself.
func ClientOf(t testing.TB, url string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(url)}, opts...)...)
	if err != nil {
		t.Fatalf("kafkatest: client for %s: %v", url, err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Admin returns an admin client of the test broker, closed when the test
// ends.
func Admin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(Client(t))
}

// Topic creates a topic with a name unique to the test (see [Name]) and
// the given number of partitions on the test broker, and deletes it when
// the test ends.
func Topic(t testing.TB, partitions int) string {
	t.Helper()
	return TopicOn(t, Admin(t), partitions)
}

// TopicOn is [Topic] through adm, such as an admin client of a broker the
// test started itself.
func TopicOn(t testing.TB, adm *kadm.Client, partitions int) string {
	t.Helper()
	topic := Name(t)
	if _, err := adm.CreateTopic(t.Context(), int32(partitions), 1, nil, topic); err != nil {
		t.Fatalf("kafkatest: create topic %s: %v", topic, err)
	}
	if err := waitForTopic(t.Context(), adm, topic, partitions); err != nil {
		t.Fatalf("kafkatest: topic %s: %v", topic, err)
	}
	t.Cleanup(func() {
		// t.Context is done by now; the broker may be gone too.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if _, err := adm.DeleteTopic(ctx, topic); err != nil {
			t.Logf("kafkatest: delete topic %s: %v", topic, err)
		}
	})
	return topic
}

// Name returns a name unique to the test, valid as a topic name, a
// transactional ID or a consumer group: "t-" + the test name's letters and
// digits + a random suffix.
func Name(t testing.TB) string {
	var b strings.Builder
	b.WriteString("t-")
	for _, r := range strings.ToLower(t.Name()) {
		if b.Len() >= 40 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	var suffix [6]byte
	rand.Read(suffix[:])
	b.WriteByte('-')
	b.WriteString(hex.EncodeToString(suffix[:]))
	return b.String()
}

// waitForTopic waits until the broker's metadata shows topic with its
// partitions, each with a leader: a topic is created before the metadata
// every client reads says so, and a client that looks in between (another
// client, or the code under test) finds no such topic.
func waitForTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		td, err := adm.ListTopics(ctx, topic)
		if err == nil {
			d := td[topic]
			ready := d.Err == nil && len(d.Partitions) == partitions
			for _, p := range d.Partitions {
				ready = ready && p.Err == nil && p.Leader >= 0
			}
			if ready {
				return nil
			}
			err = fmt.Errorf("%d of %d partitions, %v", len(d.Partitions), partitions, d.Err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not in the metadata with a leader for every partition after 30s: %v", err)
		case <-tick.C:
		}
	}
}
