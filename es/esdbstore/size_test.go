package esdbstore_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/esdbstore"
)

// With the default Config the store refuses, before sending it, an event
// that a server with its default --max-append-size (1 MiB) would refuse
// with an error that names no event, and says how large it is.
func TestDefaultSizeLimitIsUnderTheServers(t *testing.T) {
	t.Parallel()
	if esdbstore.MaxAppendSizeDefault >= 1<<20 || esdbstore.MaxEventSizeDefault > esdbstore.MaxAppendSizeDefault {
		t.Fatalf("MaxAppendSizeDefault %d, MaxEventSizeDefault %d; want both under the server's 1 MiB",
			esdbstore.MaxAppendSizeDefault, esdbstore.MaxEventSizeDefault)
	}
	ctx := t.Context()
	s := newTestServerStore(t)
	data := []byte(`"` + strings.Repeat("x", 1<<20) + `"`)
	_, err := s.Append(ctx, "big", es.NoStream, es.EventData{Type: "T", Data: data})
	ie, ok := errors.AsType[*es.InvalidEventError](err)
	if !ok || ie.Stream != "big" || ie.Index != 0 || ie.Size != len(data)+1 || ie.Limit != esdbstore.MaxEventSizeDefault {
		t.Fatalf("append of a 1 MiB event: %v; want an InvalidEventError for event 0 of big, %d bytes against %d",
			err, len(data)+1, esdbstore.MaxEventSizeDefault)
	}
	if _, err := s.ReadStream(ctx, "big", es.ReadStreamOptions{}); !errors.Is(err, es.ErrStreamNotFound) {
		t.Errorf("ReadStream(big) after the refused append: %v; want not found", err)
	}
	// Two events that fit one by one but not together.
	half := es.EventData{Type: "T", Data: data[:esdbstore.MaxAppendSizeDefault/2]}
	half.Data = append(append([]byte(nil), half.Data...), '"')
	_, err = s.Append(ctx, "big", es.NoStream, half, half)
	if ie, ok := errors.AsType[*es.InvalidEventError](err); !ok || ie.Index != -1 || ie.Limit != esdbstore.MaxAppendSizeDefault {
		t.Fatalf("append of two halves over the limit: %v; want an InvalidEventError for the append against %d", err, esdbstore.MaxAppendSizeDefault)
	}
}
