package elasticsink_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependsOnKeeperNotPgsink checks that the sink depends on the [Keeper]
// interface, not on the PostgreSQL sink that implements it.
func TestDependsOnKeeperNotPgsink(t *testing.T) {
	t.Parallel()
	out, err := exec.CommandContext(t.Context(), "go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "github.com/stratadev/strata/projections/pgsink" {
			t.Errorf("elasticsink depends on %s; want only the Keeper interface", dep)
		}
	}
}
