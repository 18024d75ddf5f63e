package pgstore

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/stratadev/strata/es"
)

// Metadata is stored as a json object of strings. Every append encodes it
// and every read decodes it, so both are done by hand here: encoding/json
// goes through reflection and allocates several times per call. Decoding
// falls back to encoding/json for anything but the flat object of strings
// these functions produce and PostgreSQL prints.

var emptyObject = []byte("{}")

// encodeMetadata returns md as a JSON object with sorted keys.
func encodeMetadata(md es.Metadata) ([]byte, error) {
	if len(md) == 0 {
		return emptyObject, nil
	}
	keys := make([]string, 0, len(md))
	size := 2
	for k, v := range md {
		keys = append(keys, k)
		size += len(k) + len(v) + 6
	}
	slices.Sort(keys)
	b := make([]byte, 0, size)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, md[k])
	}
	return append(b, '}'), nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. s is valid UTF-8 (appends
// are validated first); invalid bytes would be replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, `\ufffd`...)
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// decodeMetadata parses a JSON object of strings. The empty object is nil.
// keys, if not nil, shares the strings of repeated keys.
func decodeMetadata(b []byte, keys interner) (es.Metadata, error) {
	if len(b) == 0 || string(b) == "{}" {
		return nil, nil
	}
	if md, ok := parseFlatObject(b, keys); ok {
		return md, nil
	}
	var md es.Metadata
	if err := json.Unmarshal(b, &md); err != nil {
		return nil, fmt.Errorf("decode metadata: %w", err)
	}
	return md, nil
}

// parseFlatObject parses {"k": "v", ...} with strings free of escapes
// other than the simple ones, as encodeMetadata writes them and PostgreSQL
// prints jsonb (metadata stored before migration 002). ok is false for
// anything else, which the caller leaves to encoding/json.
func parseFlatObject(b []byte, keys interner) (md es.Metadata, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	md = make(es.Metadata, 4)
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return md, skipSpace(b, i+1) == len(b)
	}
	for {
		var k, v string
		if k, i, ok = parseString(b, i, keys); !ok {
			return nil, false
		}
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		if v, i, ok = parseString(b, skipSpace(b, i+1), nil); !ok {
			return nil, false
		}
		md[k] = v
		i = skipSpace(b, i)
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return md, skipSpace(b, i+1) == len(b)
		default:
			return nil, false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// parseString parses the JSON string at b[i:] and returns it and the index
// after it. It handles the escapes \" \\ \/ \n \r \t \b \f and \u of the
// Basic Multilingual Plane outside the surrogates; anything else is not ok.
// A string without escapes comes from in, if not nil.
func parseString(b []byte, i int, in interner) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", i, false
	}
	i++
	start := i
	for i < len(b) && b[i] != '"' && b[i] != '\\' && b[i] >= 0x20 {
		i++
	}
	if i < len(b) && b[i] == '"' {
		if !utf8.Valid(b[start:i]) {
			return "", i, false
		}
		return in.string(b[start:i]), i + 1, true
	}
	// Slow path: escapes.
	out := append([]byte(nil), b[start:i]...)
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return string(out), i + 1, utf8.Valid(out)
		case c < 0x20:
			return "", i, false
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(b) {
			return "", i, false
		}
		switch e := b[i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'u':
			if i+6 > len(b) {
				return "", i, false
			}
			n, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 16)
			if err != nil || (n >= 0xD800 && n <= 0xDFFF) {
				return "", i, false
			}
			out = utf8.AppendRune(out, rune(n))
			i += 6
			continue
		default:
			return "", i, false
		}
		i += 2
	}
	return "", i, false
}

// interner shares the strings of values that repeat, such as event types,
// stream IDs and metadata keys, among the records of one read. A nil
// interner allocates every time.
type interner map[string]string

// maxInterned bounds an interner: past it, new strings are not kept.
const maxInterned = 1024

func (in interner) string(b []byte) string {
	if s, ok := in[string(b)]; ok { // no allocation: the conversion is only a key
		return s
	}
	s := string(b)
	if in != nil && len(in) < maxInterned {
		in[s] = s
	}
	return s
}
