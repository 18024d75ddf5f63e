package localkafka

import (
	"encoding/base64"
	"testing"
)

// One random ID in 64 would start with "-", and the storage tool would
// refuse it as an unknown option.
func TestClusterID(t *testing.T) {
	t.Parallel()
	for range 10000 {
		id := clusterID()
		if id[0] == '-' {
			t.Fatalf("clusterID() = %q: starts with -", id)
		}
		b, err := base64.RawURLEncoding.DecodeString(id)
		if err != nil || len(b) != 16 {
			t.Fatalf("clusterID() = %q: decodes to %d bytes (%v), want 16", id, len(b), err)
		}
	}
}
