package sqlite

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// TaskFilter.KeyGlob has the syntax and meaning of path.Match, the same as
// the globs in a task's `after` list: '*' matches any run of characters but
// '/', '?' one character but '/', '[a-z]' and '[^a-z]' character classes,
// '\' quotes the next character.
//
// parseGlob is kept identical in the sqlite and postgres drivers; each
// renders the parsed glob in its own SQL dialect.

type globKind uint8

const (
	globLiteral globKind = iota
	globStar             // *
	globAny              // ?
	globClass            // [...]
)

type runeRange struct{ lo, hi rune }

type globToken struct {
	kind    globKind
	r       rune // globLiteral
	negated bool // globClass
	ranges  []runeRange
}

var errBadGlob = errors.New("malformed glob (syntax of path.Match: * ? [a-z] [^a-z] \\x)")

// parseGlob parses a glob, refusing malformed ones as path.Match does.
func parseGlob(glob string) ([]globToken, error) {
	if !utf8.ValidString(glob) {
		return nil, fmt.Errorf("key glob %q: not valid UTF-8", glob)
	}
	if strings.IndexByte(glob, 0) >= 0 {
		return nil, fmt.Errorf("key glob %q: holds a NUL byte", glob)
	}
	var toks []globToken
	p := glob
	for len(p) > 0 {
		switch p[0] {
		case '*':
			toks = append(toks, globToken{kind: globStar})
			p = p[1:]
		case '?':
			toks = append(toks, globToken{kind: globAny})
			p = p[1:]
		case '[':
			p = p[1:]
			tok := globToken{kind: globClass}
			if len(p) > 0 && p[0] == '^' {
				tok.negated = true
				p = p[1:]
			}
			for {
				if len(p) > 0 && p[0] == ']' && len(tok.ranges) > 0 {
					p = p[1:]
					break
				}
				var lo, hi rune
				var err error
				if lo, p, err = classChar(p); err != nil {
					return nil, fmt.Errorf("key glob %q: %w", glob, err)
				}
				hi = lo
				if len(p) > 0 && p[0] == '-' {
					if hi, p, err = classChar(p[1:]); err != nil {
						return nil, fmt.Errorf("key glob %q: %w", glob, err)
					}
					if lo > hi {
						return nil, fmt.Errorf("key glob %q: range %c-%c runs backwards: %w", glob, lo, hi, errBadGlob)
					}
				}
				tok.ranges = append(tok.ranges, runeRange{lo, hi})
			}
			toks = append(toks, tok)
		case '\\':
			if len(p) < 2 {
				return nil, fmt.Errorf("key glob %q: ends in a lone backslash: %w", glob, errBadGlob)
			}
			r, n := utf8.DecodeRuneInString(p[1:])
			toks = append(toks, globToken{kind: globLiteral, r: r})
			p = p[1+n:]
		default:
			r, n := utf8.DecodeRuneInString(p)
			toks = append(toks, globToken{kind: globLiteral, r: r})
			p = p[n:]
		}
	}
	return toks, nil
}

// classChar reads one possibly escaped character of a character class.
func classChar(p string) (rune, string, error) {
	if len(p) == 0 {
		return 0, p, fmt.Errorf("unterminated character class: %w", errBadGlob)
	}
	if p[0] == '-' || p[0] == ']' {
		return 0, p, fmt.Errorf("unescaped %q in a character class: %w", p[0], errBadGlob)
	}
	if p[0] == '\\' {
		p = p[1:]
		if len(p) == 0 {
			return 0, p, fmt.Errorf("unterminated character class: %w", errBadGlob)
		}
	}
	r, n := utf8.DecodeRuneInString(p)
	return r, p[n:], nil
}

// sqliteGlob renders a parsed glob for SQLite's GLOB operator. GLOB's '*'
// and '?' also match '/', so the rendering matches a superset of the keys
// the glob matches; exact reports whether it matches exactly those (no '*'
// or '?', no class GLOB cannot spell). When it is not exact the driver
// checks the GLOB's matches with path.Match as well.
func sqliteGlob(toks []globToken) (pattern string, exact bool) {
	var b strings.Builder
	exact = true
	for _, t := range toks {
		switch t.kind {
		case globLiteral:
			if t.r == '*' || t.r == '?' || t.r == '[' {
				b.WriteByte('[')
				b.WriteRune(t.r)
				b.WriteByte(']')
			} else {
				b.WriteRune(t.r)
			}
		case globStar:
			b.WriteByte('*')
			exact = false
		case globAny:
			b.WriteByte('?')
			exact = false
		case globClass:
			plain := true
			for _, r := range t.ranges {
				if strings.ContainsRune("]-^", r.lo) || strings.ContainsRune("]-^", r.hi) {
					plain = false
				}
			}
			if !plain { // any one character will do for the superset
				b.WriteByte('?')
				exact = false
				continue
			}
			b.WriteByte('[')
			if t.negated {
				b.WriteByte('^')
			}
			for _, r := range t.ranges {
				b.WriteRune(r.lo)
				if r.hi != r.lo {
					b.WriteByte('-')
					b.WriteRune(r.hi)
				}
			}
			b.WriteByte(']')
		}
	}
	return b.String(), exact
}
