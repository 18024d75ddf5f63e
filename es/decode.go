package es

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// Strict decoding without a json.Decoder per event.
//
// [Registry.Decode] rejects unknown fields and trailing data. The plain way,
// a json.Decoder with DisallowUnknownFields, allocates a decoder and a
// buffer per event and copies the data into it; projections decode every
// event of the log, so that was a quarter of the bytes a catch-up
// allocated. Instead, Decode unmarshals with json.Unmarshal, which rejects
// trailing data by itself, and then checks the object keys of the data
// against the fields of the registered type, described once per type by a
// keySet. The check only confirms: a key it cannot match for certain (one
// with escapes, one that matches no field, a struct whose field names it
// cannot work out, such as two fields that fold to the same name) sends the
// event to the json.Decoder, which decides exactly as it always has. So
// the fast path never rejects an event by itself, and accepts only events
// the decoder accepts; FuzzDecodeStrict compares the two.

// keySet describes which object keys a Go type accepts when encoding/json
// decodes into it with DisallowUnknownFields. A nil *keySet accepts any
// keys at any depth: a map[string]any, an interface, a type with its own
// UnmarshalJSON, or a scalar.
type keySet struct {
	kind   keySetKind
	fields map[string]*keySet // struct: by the field's JSON name
	folded map[string]*keySet // struct: by the lower-case name
	elem   *keySet            // map values, slice and array elements

	exactOnly bool // struct: a field name is not ASCII, so folded is not used
}

type keySetKind uint8

const (
	keysStruct keySetKind = iota + 1
	keysMap
	keysList
	keysUnsure // a struct whose fields are not worked out here: always the decoder
)

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// keySetOf returns the keySet of t. seen holds the sets being built, so that
// recursive types end.
func keySetOf(t reflect.Type, seen map[reflect.Type]*keySet) *keySet {
	for {
		if t.Implements(jsonUnmarshaler) || t.Implements(textUnmarshaler) ||
			reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
			return nil
		}
		if t.Kind() != reflect.Pointer {
			break
		}
		t = t.Elem()
	}
	if ks, ok := seen[t]; ok {
		return ks
	}
	switch t.Kind() {
	case reflect.Map:
		ks := &keySet{kind: keysMap}
		seen[t] = ks
		ks.elem = keySetOf(t.Elem(), seen)
		if ks.elem == nil {
			return nil
		}
		return ks
	case reflect.Slice, reflect.Array:
		ks := &keySet{kind: keysList}
		seen[t] = ks
		ks.elem = keySetOf(t.Elem(), seen)
		if ks.elem == nil {
			return nil
		}
		return ks
	case reflect.Struct:
		ks := &keySet{kind: keysStruct, fields: map[string]*keySet{}, folded: map[string]*keySet{}}
		seen[t] = ks
		if !ks.addFields(t, seen, 0) {
			*ks = keySet{kind: keysUnsure}
		}
		return ks
	}
	return nil
}

// addFields adds the fields of struct t, and those promoted from its
// embedded structs, as encoding/json sees them. It reports false when it
// cannot tell which name belongs to which field: two fields whose names fold
// to the same, a tag name encoding/json would ignore, or deep embedding.
func (ks *keySet) addFields(t reflect.Type, seen map[reflect.Type]*keySet, depth int) bool {
	if depth > 8 {
		return false
	}
	for i := range t.NumField() {
		sf := t.Field(i)
		ft := sf.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if sf.Anonymous {
			if !sf.IsExported() && ft.Kind() != reflect.Struct {
				continue
			}
		} else if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name != "" && !plainTagName(name) {
			return false
		}
		if name == "" && sf.Anonymous && ft.Kind() == reflect.Struct {
			if !ks.addFields(ft, seen, depth+1) {
				return false
			}
			continue
		}
		if name == "" {
			name = sf.Name
		}
		if _, dup := ks.fields[name]; dup {
			return false
		}
		child := keySetOf(sf.Type, seen)
		ks.fields[name] = child
		low := strings.ToLower(name)
		if _, dup := ks.folded[low]; dup {
			return false
		}
		ks.folded[low] = child
		if !isASCII(name) {
			// encoding/json folds Unicode too (the Kelvin sign matches
			// "k"), and picks the first of the fields a key folds to:
			// only exact names then, the decoder decides the rest.
			ks.exactOnly = true
		}
	}
	return true
}

// plainTagName reports whether a tag name is one encoding/json uses as
// given: letters, digits and a few punctuation marks.
func plainTagName(s string) bool {
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// errUnsure stops a key check that cannot confirm a key.
var errUnsure = errors.New("key not confirmed")

// keysKnown reports whether every object key in data is a field that
// encoding/json would decode into, at every depth that ks describes. data
// must be one valid JSON value (json.Unmarshal accepted it). false means
// "not known for certain", not "unknown".
func keysKnown(ks *keySet, data []byte) bool {
	if ks == nil {
		return true
	}
	if ks.kind == keysUnsure {
		return false
	}
	c := keyCheck{data: data}
	return c.value(ks) == nil
}

// keyCheck walks JSON that is known to be valid, so it checks little of
// its syntax.
type keyCheck struct {
	data []byte
	i    int
}

func (c *keyCheck) space() {
	for c.i < len(c.data) {
		switch c.data[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

func (c *keyCheck) value(ks *keySet) error {
	c.space()
	switch c.data[c.i] {
	case '{':
		return c.object(ks)
	case '[':
		return c.array(ks)
	case '"':
		_, _ = c.str()
		return nil
	}
	for c.i < len(c.data) {
		switch c.data[c.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return nil
		}
		c.i++
	}
	return nil
}

// str skips a string and returns its contents, and whether it has escapes.
func (c *keyCheck) str() (s []byte, escaped bool) {
	c.i++ // "
	start := c.i
	for {
		switch c.data[c.i] {
		case '"':
			s = c.data[start:c.i]
			c.i++
			return s, escaped
		case '\\':
			escaped = true
			c.i += 2
		default:
			c.i++
		}
	}
}

func (c *keyCheck) object(ks *keySet) error {
	if ks != nil && ks.kind == keysUnsure {
		return errUnsure
	}
	c.i++ // {
	c.space()
	if c.data[c.i] == '}' {
		c.i++
		return nil
	}
	for {
		c.space()
		key, escaped := c.str()
		var child *keySet
		switch {
		case ks == nil:
		case ks.kind == keysMap:
			child = ks.elem
		case ks.kind == keysStruct:
			if escaped {
				return errUnsure
			}
			f, ok := ks.fields[string(key)]
			if !ok {
				// encoding/json matches keys case-insensitively too.
				if ks.exactOnly || !isASCII(string(key)) {
					return errUnsure
				}
				if f, ok = ks.folded[string(bytes.ToLower(key))]; !ok {
					return errUnsure
				}
			}
			child = f
		}
		c.space()
		c.i++ // :
		if err := c.value(child); err != nil {
			return err
		}
		c.space()
		if c.data[c.i] == '}' {
			c.i++
			return nil
		}
		c.i++ // ,
	}
}

func (c *keyCheck) array(ks *keySet) error {
	var elem *keySet
	if ks != nil && ks.kind == keysList {
		elem = ks.elem
	}
	c.i++ // [
	c.space()
	if c.data[c.i] == ']' {
		c.i++
		return nil
	}
	for {
		if err := c.value(elem); err != nil {
			return err
		}
		c.space()
		if c.data[c.i] == ']' {
			c.i++
			return nil
		}
		c.i++ // ,
	}
}

// decodeStrict decodes data into a new value of t with the rules of
// [Registry.Decode]: unknown fields and trailing data are errors.
func decodeStrict(t reflect.Type, ks *keySet, data []byte) (any, error) {
	if ks == nil || ks.kind != keysUnsure {
		v := reflect.New(t)
		if err := json.Unmarshal(data, v.Interface()); err == nil && keysKnown(ks, data) {
			return v.Elem().Interface(), nil
		}
	}
	// An error, a key the check could not confirm, or a type it cannot
	// check: the decoder decides, and says what is wrong in its own words.
	v := reflect.New(t)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v.Interface()); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data has more than one JSON value")
	}
	// More does not look past a closing bracket.
	if rest := bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return nil, fmt.Errorf("data has %q after its JSON value", rest[:min(len(rest), 16)])
	}
	return v.Elem().Interface(), nil
}
