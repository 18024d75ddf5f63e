package localelastic_test

import (
	"errors"
	"os"
	"testing"

	"github.com/stratadev/strata/internal/localelastic"
)

func TestStartStop(t *testing.T) {
	if os.Getenv("STRATA_SKIP_ELASTIC") == "1" {
		t.Skip("STRATA_SKIP_ELASTIC=1")
	}
	if os.Getenv("TEST_ELASTICSEARCH_URL") != "" {
		t.Skip("TEST_ELASTICSEARCH_URL is set: the run has a server (withelastic started it with Start), and a second one costs ~40s")
	}
	if _, err := localelastic.FindHome(); errors.Is(err, localelastic.ErrNotInstalled) {
		t.Fatal(err)
	}
	srv, err := localelastic.Start(t.Context(), localelastic.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := localelastic.Healthy(t.Context(), srv.URL()); err != nil {
		t.Errorf("health: %v", err)
	}
	dir := srv.Dir()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after Stop: %v", dir, err)
	}
	if err := localelastic.Healthy(t.Context(), srv.URL()); err == nil {
		t.Error("still healthy after Stop")
	}
}
