package sqlite

import (
	"strings"

	"github.com/haul-dev/haul/internal/store/storesql"
)

// sqliteGlob renders a parsed glob for SQLite's GLOB operator. GLOB's '*'
// and '?' also match '/', so the rendering matches a superset of the keys
// the glob matches; exact reports whether it matches exactly those (no '*'
// or '?', no class GLOB cannot spell). When it is not exact the driver
// checks the GLOB's matches with path.Match as well.
func sqliteGlob(toks []storesql.GlobToken) (pattern string, exact bool) {
	var b strings.Builder
	exact = true
	for _, t := range toks {
		switch t.Kind {
		case storesql.GlobLiteral:
			if t.R == '*' || t.R == '?' || t.R == '[' {
				b.WriteByte('[')
				b.WriteRune(t.R)
				b.WriteByte(']')
			} else {
				b.WriteRune(t.R)
			}
		case storesql.GlobStar:
			b.WriteByte('*')
			exact = false
		case storesql.GlobAny:
			b.WriteByte('?')
			exact = false
		case storesql.GlobClass:
			plain := true
			for _, r := range t.Ranges {
				if strings.ContainsRune("]-^", r.Lo) || strings.ContainsRune("]-^", r.Hi) {
					plain = false
				}
			}
			if !plain { // any one character will do for the superset
				b.WriteByte('?')
				exact = false
				continue
			}
			b.WriteByte('[')
			if t.Negated {
				b.WriteByte('^')
			}
			for _, r := range t.Ranges {
				b.WriteRune(r.Lo)
				if r.Hi != r.Lo {
					b.WriteByte('-')
					b.WriteRune(r.Hi)
				}
			}
			b.WriteByte(']')
		}
	}
	return b.String(), exact
}
