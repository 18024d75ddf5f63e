package es

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
)

// Registry maps event type names to Go types and back, and encodes event
// values as JSON. It also holds upcasters, which turn stored events of an
// older shape into the current one as they are read. A Registry is built at
// start-up with [Register] and [Registry.Upcast] and is then safe for
// concurrent use.
//
// There is no global registry: each application builds its own and hands it
// to the repositories and projections that need it.
type Registry struct {
	mu        sync.RWMutex
	byName    map[string]reflect.Type
	byType    map[reflect.Type]string
	keys      map[reflect.Type]*keySet // what strict decoding accepts; see decode.go
	upcasters map[string]Upcaster
}

// Upcaster turns the data of a stored event of one type into the data of
// another, newer type. It may return the same type name with changed data.
type Upcaster func(data json.RawMessage) (newType string, newData json.RawMessage, err error)

// maxUpcasts bounds a chain of upcasters, so that a cycle fails instead of
// looping.
const maxUpcasts = 32

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{
		byName:    map[string]reflect.Type{},
		byType:    map[reflect.Type]string{},
		keys:      map[reflect.Type]*keySet{},
		upcasters: map[string]Upcaster{},
	}
}

// Register adds event type E under name. Events are values, not pointers:
// register OrderPlaced, not *OrderPlaced; [Registry.Encode] accepts both.
// Register panics when name or E is already registered, or when name is
// empty, because that is a programming error found at start-up.
func Register[E any](r *Registry, name string) {
	t := reflect.TypeFor[E]()
	if t.Kind() == reflect.Pointer {
		panic(fmt.Sprintf("es: register %q: use the value type %s, not a pointer", name, t.Elem()))
	}
	if name == "" {
		panic(fmt.Sprintf("es: register %s: empty event type name", t))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.byName[name]; ok {
		panic(fmt.Sprintf("es: register %s: event type %q is already registered for %s", t, name, prev))
	}
	if prev, ok := r.byType[t]; ok {
		panic(fmt.Sprintf("es: register %q: Go type %s is already registered as %q", name, t, prev))
	}
	if _, ok := r.upcasters[name]; ok {
		panic(fmt.Sprintf("es: register %q: an upcaster already rewrites that type name", name))
	}
	r.byName[name] = t
	r.byType[t] = name
	r.keys[t] = keySetOf(t, map[reflect.Type]*keySet{})
}

// Upcast registers fn to rewrite stored events of type fromType when they are
// decoded. fromType is usually a name that is no longer registered (for
// example "OrderPlaced.v1"); fn returns the current type name and data.
// Upcasters chain: the result is upcast again if another upcaster handles its
// type. Upcast panics when fromType already has an upcaster or is a
// registered type.
func (r *Registry) Upcast(fromType string, fn Upcaster) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.upcasters[fromType]; ok {
		panic(fmt.Sprintf("es: upcast %q: an upcaster for that type is already registered", fromType))
	}
	if t, ok := r.byName[fromType]; ok {
		panic(fmt.Sprintf("es: upcast %q: that name is registered for %s; upcast from an old name", fromType, t))
	}
	r.upcasters[fromType] = fn
}

// TypeName returns the registered name of event's type. event may be a value
// or a pointer to one.
func (r *Registry) TypeName(event any) (string, error) {
	t := reflect.TypeOf(event)
	if t == nil {
		return "", fmt.Errorf("es: type name of nil event: %w", ErrUnknownEventType)
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	r.mu.RLock()
	name, ok := r.byType[t]
	r.mu.RUnlock()
	if !ok {
		return "", fmt.Errorf("es: Go type %s is not registered: %w", t, ErrUnknownEventType)
	}
	return name, nil
}

// Encode turns an event value into [EventData] with its registered type
// name, JSON data and the given metadata (which is copied). The ID is left
// zero for the store to assign.
func (r *Registry) Encode(event any, meta Metadata) (EventData, error) {
	name, err := r.TypeName(event)
	if err != nil {
		return EventData{}, err
	}
	data, err := json.Marshal(event)
	if err != nil {
		return EventData{}, fmt.Errorf("es: encode %s: %w", name, err)
	}
	return EventData{Type: name, Data: data, Metadata: meta.Clone()}, nil
}

// Decode applies upcasters to rec and decodes its data into the registered
// Go type, returning the event as a value (not a pointer). Unknown fields in
// the data are an error, so a renamed field fails loudly instead of
// decoding to a zero value. An unregistered type returns an
// [*UnknownEventTypeError]; data that does not fit returns a [*DecodeError].
//
// Field names match as encoding/json matches them: the exact name first,
// then case-insensitively. Nested structs are held to the same rule, in
// slices, arrays, pointers and map values alike; the keys of a map, and
// whatever goes into an interface or a value that decodes itself (a
// json.Unmarshaler such as json.RawMessage), are free. Anything after the
// first JSON value other than white space is an error.
func (r *Registry) Decode(rec Record) (any, error) {
	typ, data, err := r.upcast(rec)
	if err != nil {
		return nil, err
	}
	r.mu.RLock()
	t, ok := r.byName[typ]
	ks := r.keys[t]
	r.mu.RUnlock()
	if !ok {
		return nil, &UnknownEventTypeError{Stream: rec.Stream, Version: rec.Version, Type: typ}
	}
	v, err := decodeStrict(t, ks, data)
	if err != nil {
		return nil, &DecodeError{Stream: rec.Stream, Version: rec.Version, Type: typ, Err: err}
	}
	return v, nil
}

// Known reports whether typ is registered or upcast to a registered type.
func (r *Registry) Known(typ string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, registered := r.byName[typ]
	_, upcast := r.upcasters[typ]
	return registered || upcast
}

// Upcasted returns rec as [Registry.Decode] sees it: with the type and data
// the chain of upcasters of rec.Type turns it into, or rec itself when its
// type has no upcaster. It fails, like Decode, when an upcaster does.
// Decoding the result does not run the upcasters again. Projection workers
// use it so that a projection that handles a type also receives the older
// events upcast into it, each upcast once.
func (r *Registry) Upcasted(rec Record) (Record, error) {
	r.mu.RLock()
	_, ok := r.upcasters[rec.Type]
	r.mu.RUnlock()
	if !ok {
		return rec, nil
	}
	typ, data, err := r.upcast(rec)
	if err != nil {
		return Record{}, err
	}
	rec.Type, rec.Data = typ, data
	return rec, nil
}

// upcast runs the chain of upcasters for rec's type and returns the final
// type name and data.
func (r *Registry) upcast(rec Record) (string, []byte, error) {
	typ, data := rec.Type, rec.Data
	for range maxUpcasts {
		r.mu.RLock()
		fn, ok := r.upcasters[typ]
		r.mu.RUnlock()
		if !ok {
			return typ, data, nil
		}
		newType, newData, err := fn(data)
		if err != nil {
			return "", nil, &DecodeError{Stream: rec.Stream, Version: rec.Version, Type: typ, Err: fmt.Errorf("upcast: %w", err)}
		}
		if newType == "" {
			return "", nil, &DecodeError{Stream: rec.Stream, Version: rec.Version, Type: typ, Err: fmt.Errorf("upcast returned an empty type name")}
		}
		typ, data = newType, newData
	}
	return "", nil, &DecodeError{Stream: rec.Stream, Version: rec.Version, Type: rec.Type, Err: fmt.Errorf("more than %d upcasts: is there a cycle?", maxUpcasts)}
}
