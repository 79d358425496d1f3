package runner

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"strconv"
)

// workerSecret derives a worker's credential from the runner group's key,
// its job, tier and ID: the secret the backend hands the worker
// (WorkerSpec.Secret) and that every poll carries. Derived rather than
// remembered, so that any runner holding the key can check any worker,
// which is what lets a worker follow its job to another runner. 26
// base32 characters: 130 bits of the HMAC.
func workerSecret(key []byte, job string, tier int32, id string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("haul worker credential\x00"))
	m.Write([]byte(job))
	m.Write([]byte{0})
	m.Write([]byte(strconv.Itoa(int(tier))))
	m.Write([]byte{0})
	m.Write([]byte(id))
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(m.Sum(nil))[:26]
}
