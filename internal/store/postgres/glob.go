package postgres

import (
	"strings"
	"unicode/utf8"

	"github.com/haul-dev/haul/internal/store/storesql"
)

// globRegexp renders a parsed glob as an anchored PostgreSQL regular
// expression (ARE) with the meaning path.Match gives the glob: '*' is
// [^/]*, '?' is [^/], classes stay classes. Every ASCII punctuation
// character is escaped with a backslash, which in an ARE, inside brackets
// or out, makes it an ordinary character.
func globRegexp(toks []storesql.GlobToken) string {
	var b strings.Builder
	b.WriteByte('^')
	for _, t := range toks {
		switch t.Kind {
		case storesql.GlobLiteral:
			writeRegexpRune(&b, t.R)
		case storesql.GlobStar:
			b.WriteString("[^/]*")
		case storesql.GlobAny:
			b.WriteString("[^/]")
		case storesql.GlobClass:
			b.WriteByte('[')
			if t.Negated {
				b.WriteByte('^')
			}
			for _, r := range t.Ranges {
				writeRegexpRune(&b, r.Lo)
				if r.Hi != r.Lo {
					b.WriteByte('-')
					writeRegexpRune(&b, r.Hi)
				}
			}
			b.WriteByte(']')
		}
	}
	b.WriteByte('$')
	return b.String()
}

func writeRegexpRune(b *strings.Builder, r rune) {
	if r < utf8.RuneSelf && r > ' ' && r != 0x7f && !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
		b.WriteByte('\\')
	}
	b.WriteRune(r)
}
