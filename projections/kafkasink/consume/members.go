package consume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ErrMembersUnknown means the brokers could not say which members the
// consumer groups have: they could not be reached, or refused to describe
// a group. The details are in a [*MembersError].
var ErrMembersUnknown = errors.New("consume: group members unknown")

// MembersError is the error of [Members]: the brokers asked, and why they
// did not answer.
type MembersError struct {
	Brokers []string
	Err     error
}

func (e *MembersError) Error() string {
	return fmt.Sprintf("consume: describe the consumer groups on the brokers %v: %v", e.Brokers, e.Err)
}

// Unwrap returns [ErrMembersUnknown] and the cause.
func (e *MembersError) Unwrap() []error { return []error{ErrMembersUnknown, e.Err} }

// Members asks the Kafka brokers how many members each of groups has: the
// processes whose [ReadModel] or [Commands] consumer is in the group now,
// as Kafka counts them. The result has every group asked for; a group
// with no member, or that Kafka does not know, has 0. opts are added to
// the options of the Kafka client, for TLS, SASL and the like (pass
// [Config.ClientOptions] or the options the consumers use). It describes
// the groups with DescribeGroups, and also with ConsumerGroupDescribe those
// of the KIP-848 protocol (kgo.ServerSideBalancer), which DescribeGroups
// does not know. When the brokers cannot be reached or refuse to answer,
// it returns a [*MembersError] naming them.
//
// This is the consumers' liveness as Kafka sees it, which the state that
// [Status] reads cannot show: a process killed with SIGKILL, or whose
// machine died, never records that it stopped. Kafka removes such a member
// when it has sent no heartbeat for the group's session timeout:
// franz-go's default, 45s, unless kgo.SessionTimeout is in
// [Config.ClientOptions]. Until then the member counts. A member that
// stops cleanly leaves at once, except a static member (kgo.InstanceID),
// which Kafka keeps for the session timeout so that its restart takes its
// place.
func Members(ctx context.Context, brokers, groups []string, opts ...kgo.Opt) (map[string]int, error) {
	out := make(map[string]int, len(groups))
	if len(groups) == 0 {
		return out, nil
	}
	fail := func(err error) (map[string]int, error) {
		return nil, &MembersError{Brokers: slices.Clone(brokers), Err: err}
	}
	if len(brokers) == 0 {
		return fail(errors.New("no brokers"))
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return fail(err)
	}
	defer cl.Close()
	// Ping tries each broker once, so that brokers that are down fail at
	// once rather than after the retries of the describe request.
	if err := cl.Ping(ctx); err != nil {
		return fail(err)
	}
	adm := kadm.NewClient(cl)
	classic, err := whileCoordinatorStarts(ctx, func() (kadm.DescribedGroups, error) {
		d, err := adm.DescribeGroups(ctx, groups...)
		if err == nil {
			err = coordinatorError(d.Error())
		}
		return d, err
	})
	if err != nil {
		return fail(err)
	}
	var others []string // not classic groups, or not known
	for _, g := range groups {
		d, ok := classic[g]
		switch {
		case !ok:
			return fail(fmt.Errorf("group %s: not in the answer", g))
		case errors.Is(d.Err, kerr.GroupIDNotFound):
			// Kafka 4 answers so for a group it does not know, and for a
			// KIP-848 group.
			others = append(others, g)
		case d.Err != nil:
			return fail(fmt.Errorf("group %s: %w", g, d.Err))
		default:
			out[g] = len(d.Members)
		}
	}
	if len(others) == 0 {
		return out, nil
	}
	versions, err := adm.ApiVersions(ctx)
	if err != nil {
		return fail(err)
	}
	if !supportsConsumerGroupDescribe(versions) {
		// No broker knows the KIP-848 protocol: the groups are unknown.
		return out, nil
	}
	next, err := whileCoordinatorStarts(ctx, func() (kadm.DescribedConsumerGroups, error) {
		d, err := adm.DescribeConsumerGroups(ctx, others...)
		if err == nil {
			err = coordinatorError(d.Error())
		}
		return d, err
	})
	if err != nil {
		return fail(err)
	}
	for _, g := range others {
		d, ok := next[g]
		switch {
		case !ok:
			return fail(fmt.Errorf("group %s: not in the answer", g))
		case errors.Is(d.Err, kerr.GroupIDNotFound):
			out[g] = 0
		case d.Err != nil:
			return fail(fmt.Errorf("group %s: %w", g, d.Err))
		default:
			out[g] = len(d.Members)
		}
	}
	return out, nil
}

// supportsConsumerGroupDescribe says whether a broker answers
// ConsumerGroupDescribe, the request that describes KIP-848 groups; when
// none does, there is no such group.
func supportsConsumerGroupDescribe(v kadm.BrokersApiVersions) bool {
	key := kmsg.NewPtrConsumerGroupDescribeRequest().Key()
	some := false
	v.Each(func(b kadm.BrokerApiVersions) {
		if _, _, ok := b.KeyVersions(key); ok && b.Err == nil {
			some = true
		}
	})
	return some
}

// coordinatorWait bounds how long [Members] waits for the group
// coordinator of a broker that is starting, or of a cluster where no group
// was ever made: the first request for a coordinator makes its internal
// topic, __consumer_offsets, which takes a moment.
const coordinatorWait = 10 * time.Second

// whileCoordinatorStarts calls describe until it returns an error other
// than the coordinator's not being ready, for coordinatorWait at most.
func whileCoordinatorStarts[T any](ctx context.Context, describe func() (T, error)) (T, error) {
	deadline := time.Now().Add(coordinatorWait)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		v, err := describe()
		if err == nil || !coordinatorStarting(err) || time.Now().Add(wait).After(deadline) {
			return v, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
	}
}

// coordinatorError returns err when it says the coordinator is not ready,
// and nil otherwise: the errors of single groups are handled group by
// group.
func coordinatorError(err error) error {
	if err != nil && coordinatorStarting(err) {
		return err
	}
	return nil
}

// coordinatorStarting says whether err, or a shard of it, is a group
// coordinator that is not ready yet.
func coordinatorStarting(err error) bool {
	var shards *kadm.ShardErrors
	if errors.As(err, &shards) {
		for _, s := range shards.Errs {
			if coordinatorStarting(s.Err) {
				return true
			}
		}
		return false
	}
	return errors.Is(err, kerr.CoordinatorNotAvailable) || errors.Is(err, kerr.CoordinatorLoadInProgress) ||
		errors.Is(err, kerr.NotCoordinator)
}
