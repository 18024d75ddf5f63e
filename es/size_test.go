package es_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stratadev/strata/es"
)

func TestEventSize(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		e    es.EventData
		want int
	}{
		{es.EventData{Type: "T", Data: []byte(`{}`)}, 3},
		// {"a":"b"} is 9 bytes.
		{es.EventData{Type: "T", Data: []byte(`{}`), Metadata: es.Metadata{"a": "b"}}, 12},
		// {"a":"b","cc":"dd"} is 19 bytes.
		{es.EventData{Type: "T", Data: []byte(`{}`), Metadata: es.Metadata{"a": "b", "cc": "dd"}}, 22},
	} {
		if got := es.EventSize(c.e); got != c.want {
			t.Errorf("EventSize(%+v) = %d; want %d", c.e, got, c.want)
		}
	}
}

func TestSizeLimitsCheck(t *testing.T) {
	t.Parallel()
	ev := func(n int) es.EventData {
		return es.EventData{Type: "T", Data: []byte(`"` + strings.Repeat("x", n-3) + `"`)}
	}
	l := es.SizeLimits{MaxEventSize: 100, MaxAppendSize: 250}
	for _, c := range []struct {
		name   string
		events []es.EventData
		want   *es.InvalidEventError // nil: accepted
		text   string
	}{
		{"at the limits", []es.EventData{ev(100), ev(100), ev(50)}, nil, ""},
		{"event over", []es.EventData{ev(10), ev(101)}, &es.InvalidEventError{Stream: "s", Index: 1, Type: "T", Size: 101, Limit: 100},
			`es: append to "s": event 1 (type "T"): event is 101 bytes; the limit is 100 (MaxEventSize)`},
		{"append over", []es.EventData{ev(100), ev(100), ev(51)}, &es.InvalidEventError{Stream: "s", Index: -1, Size: 251, Limit: 250},
			`es: append to "s": the 3 events are 251 bytes together; the limit is 250 (MaxAppendSize)`},
	} {
		err := l.Check("s", c.events)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s: Check = %v; want nil", c.name, err)
			}
			continue
		}
		ie, ok := errors.AsType[*es.InvalidEventError](err)
		if !ok || !errors.Is(err, es.ErrInvalidEvent) {
			t.Errorf("%s: Check = %v; want an *es.InvalidEventError", c.name, err)
			continue
		}
		got := *ie
		got.Reason = ""
		if got != *c.want || err.Error() != c.text {
			t.Errorf("%s: Check = %+v (%q); want %+v (%q)", c.name, got, err, *c.want, c.text)
		}
	}
	if err := (es.SizeLimits{}).Check("s", []es.EventData{ev(1 << 20)}); err != nil {
		t.Errorf("zero SizeLimits: Check = %v; want no limit", err)
	}
	if err := (es.SizeLimits{MaxEventSize: -1, MaxAppendSize: -2}).Validate("x: Config"); err == nil ||
		!strings.Contains(err.Error(), "x: Config.MaxEventSize is -1") || !strings.Contains(err.Error(), "x: Config.MaxAppendSize is -2") {
		t.Errorf("Validate of negative limits = %v; want both named", err)
	}
}
