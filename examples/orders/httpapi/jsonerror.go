package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// jsonMessage says what is wrong with a body that did not decode, naming
// fields by their JSON path (lines[0].quantity) and kinds in JSON's terms,
// never by Go's type names.
func jsonMessage(body []byte, err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		want := jsonKind(te.Type)
		got := "a JSON " + te.Value
		if n, ok := strings.CutPrefix(te.Value, "number "); ok {
			got = "the number " + n
			if want == "a whole number" {
				want = "a whole number in range"
			}
		}
		path := pathAt(body, te.Offset)
		if path == "" && te.Field != "" {
			path = te.Field
		}
		if path == "" {
			return fmt.Sprintf("the body must be %s, not %s", want, got)
		}
		return fmt.Sprintf("field %s must be %s, not %s", path, want, got)
	case errors.As(err, &se):
		return fmt.Sprintf("%s (at byte %d)", strings.TrimPrefix(se.Error(), "json: "), se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the body ends in the middle of a value"
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if f, ok := strings.CutPrefix(msg, "unknown field "); ok {
		return "unknown field " + f
	}
	return msg
}

// jsonKind names what a Go type takes, in JSON's terms.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "an object"
}

// pathAt returns the path, as in lines[0].quantity, of the JSON value in
// body that encoding/json was decoding when it stopped at offset: a scalar
// that ends there, or an object or array that starts just before. It
// returns "" for the top-level value or when body does not tokenize.
func pathAt(body []byte, offset int64) string {
	type frame struct {
		array   bool
		key     string
		index   int
		wantKey bool
	}
	var stack []frame
	path := func(n int) string {
		var b strings.Builder
		for _, f := range stack[:n] {
			if f.array {
				b.WriteString("[" + strconv.Itoa(f.index) + "]")
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.key)
		}
		return b.String()
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		if n := len(stack); n > 0 {
			top := &stack[n-1]
			if d, ok := tok.(json.Delim); !ok || d == '{' || d == '[' {
				// A key, or the start of a value.
				if !top.array && top.wantKey {
					top.key, top.wantKey = tok.(string), false
					continue
				}
				if top.array {
					top.index++
				}
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if dec.InputOffset() >= offset {
				return path(len(stack))
			}
			stack = append(stack, frame{array: tok == json.Delim('['), index: -1, wantKey: tok == json.Delim('{')})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		default:
			if dec.InputOffset() >= offset {
				return path(len(stack))
			}
		}
		if n := len(stack); n > 0 && !stack[n-1].array {
			stack[n-1].wantKey = true
		}
	}
}
