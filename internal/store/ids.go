package store

import (
	"io"
	"time"
)

// idAlphabet is Crockford's base32 alphabet in lower case. Its characters
// are in ascending byte order, so comparing two encodings of equal length
// byte by byte compares the numbers they encode.
const idAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

const (
	idTimeChars = 9 // 45 bits of Unix milliseconds: good until the year 3084
	idRandChars = 4 // 20 random bits: collisions within one millisecond are rare, and refused by the store
	// JobIDLen is the length of the IDs NewJobID returns.
	JobIDLen = idTimeChars + idRandChars
)

// NewJobID returns a new job ID: 13 characters of lower-case Crockford
// base32, URL-safe, whose first 9 encode the Unix milliseconds of now and
// last 4 come from rand. IDs of jobs created in different milliseconds sort
// lexically in creation order. Times before 1970 count as 1970.
//
// Should rand be nil or fail, the random part is taken from the sub-millisecond part
// of now instead: the ID is still well formed, and the store refuses a
// duplicate.
func NewJobID(now time.Time, rand io.Reader) string {
	ms := now.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	// 20 random bits; a nil or failing rand falls back to the
	// sub-millisecond nanoseconds of now.
	r := uint64(now.Nanosecond() % int(time.Millisecond))
	var buf [3]byte
	if rand != nil {
		if _, err := io.ReadFull(rand, buf[:]); err == nil {
			r = uint64(buf[0])<<16 | uint64(buf[1])<<8 | uint64(buf[2])
		}
	}
	var out [JobIDLen]byte
	encodeBase32(out[:idTimeChars], uint64(ms))
	encodeBase32(out[idTimeChars:], r)
	return string(out[:])
}

// encodeBase32 writes the low 5*len(dst) bits of v into dst, most
// significant character first.
func encodeBase32(dst []byte, v uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = idAlphabet[v&31]
		v >>= 5
	}
}
