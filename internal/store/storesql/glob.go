package storesql

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
// ParseGlob is kept identical in the sqlite and postgres drivers; each
// renders the parsed glob in its own SQL dialect.

type GlobKind uint8

const (
	GlobLiteral GlobKind = iota
	GlobStar             // *
	GlobAny              // ?
	GlobClass            // [...]
)

// RuneRange is one range of a character class, Lo to Hi inclusive.
type RuneRange struct{ Lo, Hi rune }

// GlobToken is one element of a parsed glob.
type GlobToken struct {
	Kind    GlobKind
	R       rune // GlobLiteral
	Negated bool // GlobClass
	Ranges  []RuneRange
}

var ErrBadGlob = errors.New("malformed glob (syntax of path.Match: * ? [a-z] [^a-z] \\x)")

// ParseGlob parses a glob, refusing malformed ones as path.Match does.
func ParseGlob(glob string) ([]GlobToken, error) {
	if !utf8.ValidString(glob) {
		return nil, fmt.Errorf("key glob %q: not valid UTF-8", glob)
	}
	if strings.IndexByte(glob, 0) >= 0 {
		return nil, fmt.Errorf("key glob %q: holds a NUL byte", glob)
	}
	var toks []GlobToken
	p := glob
	for len(p) > 0 {
		switch p[0] {
		case '*':
			toks = append(toks, GlobToken{Kind: GlobStar})
			p = p[1:]
		case '?':
			toks = append(toks, GlobToken{Kind: GlobAny})
			p = p[1:]
		case '[':
			p = p[1:]
			tok := GlobToken{Kind: GlobClass}
			if len(p) > 0 && p[0] == '^' {
				tok.Negated = true
				p = p[1:]
			}
			for {
				if len(p) > 0 && p[0] == ']' && len(tok.Ranges) > 0 {
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
						return nil, fmt.Errorf("key glob %q: range %c-%c runs backwards: %w", glob, lo, hi, ErrBadGlob)
					}
				}
				tok.Ranges = append(tok.Ranges, RuneRange{lo, hi})
			}
			toks = append(toks, tok)
		case '\\':
			if len(p) < 2 {
				return nil, fmt.Errorf("key glob %q: ends in a lone backslash: %w", glob, ErrBadGlob)
			}
			r, n := utf8.DecodeRuneInString(p[1:])
			toks = append(toks, GlobToken{Kind: GlobLiteral, R: r})
			p = p[1+n:]
		default:
			r, n := utf8.DecodeRuneInString(p)
			toks = append(toks, GlobToken{Kind: GlobLiteral, R: r})
			p = p[n:]
		}
	}
	return toks, nil
}

// classChar reads one possibly escaped character of a character class.
func classChar(p string) (rune, string, error) {
	if len(p) == 0 {
		return 0, p, fmt.Errorf("unterminated character class: %w", ErrBadGlob)
	}
	if p[0] == '-' || p[0] == ']' {
		return 0, p, fmt.Errorf("unescaped %q in a character class: %w", p[0], ErrBadGlob)
	}
	if p[0] == '\\' {
		p = p[1:]
		if len(p) == 0 {
			return 0, p, fmt.Errorf("unterminated character class: %w", ErrBadGlob)
		}
	}
	r, n := utf8.DecodeRuneInString(p)
	return r, p[n:], nil
}
