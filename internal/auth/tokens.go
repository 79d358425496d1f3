package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// Issued tokens look like haul_<id>_<secret>: the id is 12 lowercase hex
// digits that name the token in lists, audit records and revocation; the
// secret is 32 random bytes in unpadded base64url. The server keeps only
// HashSecret(secret), so a leaked database does not leak tokens.
const (
	tokenPrefix   = "haul_"
	tokenIDLen    = 12
	secretBytes   = 32
	secretEncoded = 43 // base64url, unpadded, of 32 bytes
)

// TokenPrefix starts every issued token.
const TokenPrefix = tokenPrefix

// NewToken makes a fresh issued token: the token to hand out once, its id,
// and the hash of its secret to store.
func NewToken() (token, id, hash string, err error) {
	var idb [tokenIDLen / 2]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", "", "", fmt.Errorf("new token id: %w", err)
	}
	var sec [secretBytes]byte
	if _, err := rand.Read(sec[:]); err != nil {
		return "", "", "", fmt.Errorf("new token secret: %w", err)
	}
	id = hex.EncodeToString(idb[:])
	secret := base64.RawURLEncoding.EncodeToString(sec[:])
	return tokenPrefix + id + "_" + secret, id, HashSecret(secret), nil
}

// LooksIssued reports whether tok has the shape of an issued token (it may
// still be malformed: ParseToken says).
func LooksIssued(tok string) bool { return strings.HasPrefix(tok, tokenPrefix) }

// ParseToken splits an issued token into its id and secret. Its error
// wraps ErrUnauthenticated and never repeats the secret.
func ParseToken(tok string) (id, secret string, err error) {
	rest, ok := strings.CutPrefix(tok, tokenPrefix)
	if !ok {
		return "", "", fmt.Errorf("%w: not a haul token (want %s<id>_<secret>)", ErrUnauthenticated, tokenPrefix)
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != tokenIDLen || !isLowerHex(id) {
		return "", "", fmt.Errorf("%w: malformed haul token: want %s<12 hex digits>_<secret>", ErrUnauthenticated, tokenPrefix)
	}
	if len(secret) != secretEncoded {
		return "", "", fmt.Errorf("%w: malformed haul token %s: its secret has %d characters, want %d", ErrUnauthenticated, id, len(secret), secretEncoded)
	}
	if _, err := base64.RawURLEncoding.DecodeString(secret); err != nil {
		return "", "", fmt.Errorf("%w: malformed haul token %s: its secret is not base64url", ErrUnauthenticated, id)
	}
	return id, secret, nil
}

// HashSecret is what the store keeps of a token's secret: its SHA-256 in
// lowercase hex.
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// SecretMatches reports, in constant time, whether secret hashes to hash.
func SecretMatches(secret, hash string) bool {
	got := HashSecret(secret)
	return subtle.ConstantTimeCompare([]byte(got), []byte(strings.ToLower(hash))) == 1
}

// CheckTokenID checks the shape of a token id (12 lowercase hex digits).
func CheckTokenID(id string) error {
	if len(id) != tokenIDLen || !isLowerHex(id) {
		return fmt.Errorf("token id %q: want 12 lowercase hex digits", id)
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
