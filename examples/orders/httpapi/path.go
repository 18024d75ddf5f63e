package httpapi

import (
	"net/http"
	"strings"
	"unicode/utf8"
)

// checkPath answers 400 to a request whose path, once decoded, is not
// valid UTF-8 or holds control characters (%00, say): no product or order
// can have such an ID, and the read models' database refuses such text.
func checkPath(next http.Handler, s *server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if !utf8.ValidString(p) || strings.ContainsFunc(p, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
			s.writeError(w, r, badRequest("invalid_path", "the path must be valid UTF-8 without control characters"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
