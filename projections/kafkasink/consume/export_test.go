package consume

import (
	"github.com/google/uuid"

	"github.com/stratadev/strata/projections/kafkasink"
)

// MessageForTest is a message of group with ce_id id at offset.
func MessageForTest(group string, id uuid.UUID, offset int64) Message {
	return Message{Envelope: kafkasink.Envelope{ID: id}, Offset: offset, group: group}
}
