package consume_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/stratadev/strata/projections/kafkasink/consume"
)

// Validate reports every problem at once, naming each field.
func TestConfigValidate(t *testing.T) {
	t.Parallel()
	err := consume.Config{BatchSize: -1, MaxValueBytes: -1, ErrorPolicy: 9}.Validate()
	if err == nil {
		t.Fatal("Validate of an empty Config returned nil")
	}
	for _, field := range []string{"Config.Brokers", "Config.Group", "Config.Topics", "Config.Pool", "Config.ErrorPolicy",
		"Config.BatchSize", "Config.MaxValueBytes"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Validate: %v\nwant it to name %s", err, field)
		}
	}
	if _, err := consume.NewReadModel(consume.Config{}, nil); err == nil {
		t.Error("NewReadModel with an empty Config returned no error")
	}
	if _, err := consume.NewCommands(consume.Config{}, nil, nil); err == nil || !strings.Contains(err.Error(), "bus is nil") {
		t.Errorf("NewCommands with nothing returned %v; want it to name the bus too", err)
	}
}

// A message's command ID depends on the group and the message's ce_id
// only: the same on every delivery, different in another group.
func TestMessageCommandID(t *testing.T) {
	t.Parallel()
	id := uuid.New()
	a := consume.MessageForTest("billing", id, 3)
	again := consume.MessageForTest("billing", id, 17) // redelivered elsewhere
	other := consume.MessageForTest("shipping", id, 3)
	if a.CommandID() != again.CommandID() {
		t.Errorf("command IDs %s and %s of the same message in the same group differ", a.CommandID(), again.CommandID())
	}
	if a.CommandID() == other.CommandID() {
		t.Errorf("command ID %s is the same in two groups", a.CommandID())
	}
	if _, err := uuid.Parse(a.CommandID()); err != nil {
		t.Errorf("command ID %q is not a UUID: %v", a.CommandID(), err)
	}
	if consume.MessageForTest("billing", uuid.New(), 3).CommandID() == a.CommandID() {
		t.Error("two messages got the same command ID")
	}
}
