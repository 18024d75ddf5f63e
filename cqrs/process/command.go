package process

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/stratadev/strata/cqrs"
)

// ID gives a command the ID that the runtime derives for it. Embed it in
// every command type a process manager sends:
//
//	type ReserveStock struct {
//		process.ID
//		SKU string
//		Qty int
//	}
//
// The runtime sets it before it dispatches the command; the command then
// implements [cqrs.Identified], so that the bus appends its events once
// however often it is dispatched.
type ID struct {
	Value string `json:"command_id,omitempty"`
}

// CommandID implements [cqrs.Identified].
func (id ID) CommandID() string { return id.Value }

// SetCommandID implements [IDSetter].
func (id *ID) SetCommandID(s string) { id.Value = s }

// IDSetter is implemented by a pointer to a command type the runtime can
// give an ID: one that embeds [ID], or that has its own SetCommandID method
// whose ID its CommandID method ([cqrs.Identified]) returns.
type IDSetter interface {
	cqrs.Identified
	SetCommandID(id string)
}

// CommandIDFor returns the ID of the seq-th command (from 0) of the step-th
// decision (from 1) of instance id of process: "process/id/step/seq", with
// "/" and "%" in process and id escaped, so that distinct commands never
// share an ID.
func CommandIDFor(process, id string, step int64, seq int) string {
	return idEscaper.Replace(process) + "/" + idEscaper.Replace(id) + "/" + strconv.FormatInt(step, 10) + "/" + strconv.Itoa(seq)
}

// idEscaper escapes the parts of a command ID.
var idEscaper = strings.NewReplacer("%", "%25", "/", "%2F")

// Commands knows the command types a runtime may have to rebuild from their
// stored JSON, by their [cqrs.CommandName]. The zero value is empty and
// ready to use.
type Commands struct {
	mu    sync.RWMutex
	types map[string]reflect.Type
}

// RegisterCommand registers command type C in c. It panics unless *C
// implements [IDSetter].
func RegisterCommand[C any](c *Commands) {
	var zero C
	if _, ok := any(&zero).(IDSetter); !ok {
		panic(fmt.Sprintf("process: RegisterCommand: *%s does not implement process.IDSetter; embed process.ID", cqrs.CommandName(zero)))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.types == nil {
		c.types = map[string]reflect.Type{}
	}
	c.types[cqrs.CommandName(zero)] = reflect.TypeFor[C]()
}

// Name returns the registered name of cmd's type, or an
// [*UnregisteredCommandError].
func (c *Commands) Name(cmd any) (string, error) {
	name := cqrs.CommandName(cmd)
	c.mu.RLock()
	t, ok := c.types[name]
	c.mu.RUnlock()
	rt := reflect.TypeOf(cmd)
	if rt != nil && rt.Kind() == reflect.Pointer {
		rt = rt.Elem()
	}
	if !ok || rt != t {
		return "", &UnregisteredCommandError{Command: name}
	}
	return name, nil
}

// Decode rebuilds a command of the registered type name from its JSON and
// gives it id. It returns the command as a value of its type.
func (c *Commands) Decode(name string, data []byte, id string) (any, error) {
	c.mu.RLock()
	t, ok := c.types[name]
	c.mu.RUnlock()
	if !ok {
		return nil, &UnregisteredCommandError{Command: name}
	}
	p := reflect.New(t)
	if err := json.Unmarshal(data, p.Interface()); err != nil {
		return nil, fmt.Errorf("process: decode command %s: %w", name, err)
	}
	p.Interface().(IDSetter).SetCommandID(id)
	return p.Elem().Interface(), nil
}
