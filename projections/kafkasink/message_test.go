package kafkasink_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/projections/kafkasink"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	t.Parallel()
	rec := es.Record{
		ID: uuid.MustParse("0190a4b8-0000-7000-8000-000000000001"), Stream: "order-1", Version: 3,
		Position: es.Position{Commit: 7, Prepare: 42}, RecordedAt: time.Date(2026, 11, 29, 9, 0, 0, 123, time.UTC),
		Metadata: es.Metadata{es.MetaCorrelationID: "c", es.MetaCausationID: "k", es.MetaTraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
	}
	want := kafkasink.EnvelopeOf(rec, "order.placed.v1", "orders")
	got, err := kafkasink.ParseHeaders(want.Headers())
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("ParseHeaders(Headers()) = %+v; want %+v", got, want)
	}
}

func TestParseHeadersErrors(t *testing.T) {
	t.Parallel()
	good := kafkasink.Envelope{ID: uuid.New(), Type: "t", Source: "s"}.Headers()
	with := func(key, value string) []kgo.RecordHeader {
		var hs []kgo.RecordHeader
		for _, h := range good {
			if h.Key != key {
				hs = append(hs, h)
			}
		}
		if value != "" {
			hs = append(hs, kgo.RecordHeader{Key: key, Value: []byte(value)})
		}
		return hs
	}
	for _, tc := range []struct {
		name    string
		headers []kgo.RecordHeader
		header  string
	}{
		{"no id", with(kafkasink.HeaderID, ""), kafkasink.HeaderID},
		{"bad id", with(kafkasink.HeaderID, "42"), kafkasink.HeaderID},
		{"no type", with(kafkasink.HeaderType, ""), kafkasink.HeaderType},
		{"no source", with(kafkasink.HeaderSource, ""), kafkasink.HeaderSource},
		{"other spec", with(kafkasink.HeaderSpecVersion, "0.3"), kafkasink.HeaderSpecVersion},
		{"bad time", with(kafkasink.HeaderTime, "yesterday"), kafkasink.HeaderTime},
		{"bad version", with(kafkasink.HeaderStreamVersion, "-1"), kafkasink.HeaderStreamVersion},
		{"bad position", with(kafkasink.HeaderPosition, "x"), kafkasink.HeaderPosition},
		{"twice", append(with(kafkasink.HeaderType, "a"), kgo.RecordHeader{Key: kafkasink.HeaderType, Value: []byte("b")}), kafkasink.HeaderType},
		{"none", nil, kafkasink.HeaderID},
	} {
		_, err := kafkasink.ParseHeaders(tc.headers)
		he, ok := errors.AsType[*kafkasink.HeaderError](err)
		if !ok || !errors.Is(err, kafkasink.ErrBadHeaders) || he.Header != tc.header {
			t.Errorf("%s: ParseHeaders error %v; want a HeaderError for %s", tc.name, err, tc.header)
		}
	}
	if e, err := kafkasink.ParseHeaders(append(good, kgo.RecordHeader{Key: "x-other", Value: []byte("1")})); err != nil || e.ContentType != kafkasink.ContentTypeJSON {
		t.Errorf("ParseHeaders with an unknown header = %+v, %v; want it ignored", e, err)
	}
}
