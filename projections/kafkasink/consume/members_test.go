package consume_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/internal/pgtest"
	"github.com/stratadev/strata/projections/kafkasink/consume"
	"github.com/stratadev/strata/projections/kafkasink/kafkatest"
)

// members asks for the members of groups and fails the test on an error.
func members(t *testing.T, url string, groups ...string) map[string]int {
	t.Helper()
	got, err := consume.Members(t.Context(), []string{url}, groups)
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	return got
}

func checkMembers(t *testing.T, when string, got, want map[string]int) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: Members = %v; want %v", when, got, want)
		return
	}
	for g, w := range want {
		if n, ok := got[g]; !ok || n != w {
			t.Errorf("%s: Members[%s] = %d (present %t); want %d", when, g, n, ok, w)
		}
	}
}

// A running read model is a member of its group, and is no longer once
// Run returned; a group that never ran has 0 members; asking for no group
// asks nothing.
func TestMembers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []kgo.Opt
	}{
		{"classic", nil},
		// The KIP-848 protocol, which DescribeGroups does not describe.
		{"server side balancer", []kgo.Opt{kgo.ServerSideBalancer(), kgo.Balancers(kgo.RangeBalancer())}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newReadModelEnv(t, 1)
			unknown := kafkatest.Name(t) + "-unknown"
			checkMembers(t, "before Run", members(t, e.url, e.group, unknown), map[string]int{e.group: 0, unknown: 0})

			b := listen(t, e.model)
			stop := running(t, e.readModel(t, e.config(tc.opts...), e.model).Run)
			// A committed batch means the group assigned the partition to
			// the consumer: it is a member.
			produce(t, producer(t, e.url), input{id: uuid.New(), key: "k", amount: 1}.record(e.topic))
			b.waitFor(t, ends(t, e.topic), 60*time.Second)
			checkMembers(t, "while Run runs", members(t, e.url, e.group, unknown), map[string]int{e.group: 1, unknown: 0})

			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			// A member that stops cleanly leaves the group at once.
			checkMembers(t, "after Run returned", members(t, e.url, e.group), map[string]int{e.group: 0})
		})
	}
}

func TestMembersNoGroups(t *testing.T) {
	t.Parallel()
	// No group: no I/O, so even brokers that do not exist answer.
	got, err := consume.Members(t.Context(), []string{"127.0.0.1:1"}, nil)
	if err != nil || len(got) != 0 {
		t.Errorf("Members of no group = %v, %v; want an empty map and no error", got, err)
	}
}

// Brokers that cannot be reached are an error that names them, at once
// rather than after retries.
func TestMembersUnreachable(t *testing.T) {
	t.Parallel()
	port, err := kafkatest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now()
	got, err := consume.Members(ctx, []string{addr}, []string{"some-group"})
	took := time.Since(start)
	var me *consume.MembersError
	if !errors.As(err, &me) || !errors.Is(err, consume.ErrMembersUnknown) {
		t.Fatalf("Members on a closed port = %v, %v; want a *MembersError wrapping ErrMembersUnknown", got, err)
	}
	if len(me.Brokers) != 1 || me.Brokers[0] != addr || !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q (Brokers %v); want it to name %s", err, me.Brokers, addr)
	}
	if took > 10*time.Second {
		t.Errorf("Members on a closed port took %v; want it to fail at once", took)
	}

	_, err = consume.Members(ctx, nil, []string{"some-group"})
	if !errors.Is(err, consume.ErrMembersUnknown) {
		t.Errorf("Members without brokers = %v; want ErrMembersUnknown", err)
	}
}

// On a broker where no consumer group was ever made, the group coordinator
// is not ready at first (its internal topic is made on the first request
// for it): Members waits for it and answers 0, rather than failing, which
// made `strata consumers` show MEMBERS "?" on a fresh cluster.
func TestMembersFreshBroker(t *testing.T) {
	t.Parallel()
	kafkatest.URL(t) // skips with the others under STRATA_SKIP_KAFKA=1
	srv, err := kafkatest.Start(t.Context(), kafkatest.ServerConfig{})
	if errors.Is(err, kafkatest.ErrNotInstalled) && !pgtest.Required() {
		t.Skip(err) // TEST_KAFKA_URL names a broker, but this test needs a fresh one
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	got, err := consume.Members(t.Context(), []string{srv.URL()}, []string{"never-made"})
	if err != nil || len(got) != 1 || got["never-made"] != 0 {
		t.Errorf("Members on a fresh broker = %v, %v; want never-made: 0", got, err)
	}
}
