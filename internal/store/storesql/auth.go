package storesql

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// Roles a token may hold in a team (the names of auth.Role; the store
// imports only the standard library and store).
var tokenRoles = map[string]bool{"viewer": true, "member": true, "admin": true}

// DefaultListLimit is the page size of ListTokens and ListAudit when the
// filter asks for none.
const DefaultListLimit = 100

// ListLimit is the number of rows a list returns for a filter's limit.
func ListLimit(limit int) int {
	if limit <= 0 {
		return DefaultListLimit
	}
	return limit
}

// checkHash checks a token's hash: the hex SHA-256 of its secret, 64
// lowercase hexadecimal digits. The error never quotes the value: a caller
// that passed the secret itself by mistake must not see it logged.
func checkHash(h string) error {
	if len(h) != 64 {
		return fmt.Errorf("hash: %d characters, want the 64 hexadecimal digits of a SHA-256 (the secret itself is never stored)", len(h))
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("hash: character %d is not a lowercase hexadecimal digit (want the hex SHA-256 of the secret, never the secret itself)", i)
		}
	}
	return nil
}

// CheckToken validates a token for CreateToken. Its errors wrap
// store.ErrRejected and name the token and the field.
func CheckToken(t *store.Token) error {
	if t == nil {
		return Reject(fmt.Errorf("create token: token is nil"))
	}
	if t.ID == "" {
		return Reject(fmt.Errorf("create token: ID is empty"))
	}
	if err := checkText("token ID", t.ID); err != nil {
		return Reject(fmt.Errorf("create token: %w", err))
	}
	err := func() error {
		if err := checkHash(t.Hash); err != nil {
			return err
		}
		if t.Subject == "" {
			return fmt.Errorf("subject is empty")
		}
		if t.Kind == "" {
			return fmt.Errorf("kind is empty")
		}
		for _, c := range []struct{ field, s string }{
			{"subject", t.Subject}, {"kind", t.Kind}, {"description", t.Description}, {"created_by", t.CreatedBy},
		} {
			if err := checkText(c.field, c.s); err != nil {
				return err
			}
		}
		for team, role := range t.Teams {
			if team == "" {
				return fmt.Errorf("teams: a team name is empty")
			}
			if err := checkText("teams key", team); err != nil {
				return err
			}
			if !tokenRoles[role] {
				return fmt.Errorf("teams[%q]: role %q, want viewer, member or admin", team, role)
			}
		}
		for _, c := range []struct {
			field string
			t     time.Time
		}{{"created_at", t.CreatedAt}, {"expires_at", t.ExpiresAt}, {"revoked_at", t.RevokedAt}} {
			if err := checkTime(c.field, c.t); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		return Reject(fmt.Errorf("create token %s: %w", t.ID, err))
	}
	return nil
}

// CheckRevoke validates RevokeToken's time: set (a zero time would read as
// not revoked) and storable. Its errors wrap store.ErrRejected.
func CheckRevoke(id string, at time.Time) error {
	if at.IsZero() {
		return Reject(fmt.Errorf("revoke token %s: the revocation time is zero", id))
	}
	if err := checkTime("revoked_at", at); err != nil {
		return Reject(fmt.Errorf("revoke token %s: %w", id, err))
	}
	return nil
}

// CheckTokenFilter validates ListTokens' filter. Its errors wrap
// store.ErrRejected.
func CheckTokenFilter(f store.TokenFilter) error {
	for _, c := range []struct{ field, s string }{{"team", f.Team}, {"subject", f.Subject}, {"before", f.Before}} {
		if err := checkText(c.field, c.s); err != nil {
			return Reject(fmt.Errorf("list tokens: %w", err))
		}
	}
	return nil
}

// CheckAuditFilter validates ListAudit's filter. Its errors wrap
// store.ErrRejected.
func CheckAuditFilter(f store.AuditFilter) error {
	for _, c := range []struct{ field, s string }{{"team", f.Team}, {"subject", f.Subject}} {
		if err := checkText(c.field, c.s); err != nil {
			return Reject(fmt.Errorf("list audit: %w", err))
		}
	}
	if f.Before < 0 {
		return Reject(fmt.Errorf("list audit: before %d: negative", f.Before))
	}
	return nil
}

// CheckAudit validates entries for AppendAudit (their Seq is ignored: the
// store assigns it). Its errors wrap store.ErrRejected and name the entry
// by its position and the field.
func CheckAudit(entries []store.AuditEntry) error {
	for i := range entries {
		e := &entries[i]
		err := func() error {
			if e.At.IsZero() {
				return fmt.Errorf("at is zero")
			}
			if err := checkTime("at", e.At); err != nil {
				return err
			}
			if e.Action == "" {
				return fmt.Errorf("action is empty")
			}
			for _, c := range []struct{ field, s string }{
				{"subject", e.Subject}, {"token_id", e.TokenID}, {"action", e.Action}, {"team", e.Team},
				{"object", e.Object}, {"remote", e.Remote}, {"outcome", e.Outcome}, {"detail", e.Detail},
			} {
				if err := checkText(c.field, c.s); err != nil {
					return err
				}
			}
			return nil
		}()
		if err != nil {
			return Reject(fmt.Errorf("append audit: entry %d (%s): %w", i, e.Action, err))
		}
	}
	return nil
}

// EncodeTeams encodes a token's teams column (JSON, as other map columns).
func EncodeTeams(t *store.Token) ([]byte, error) {
	b, err := json.Marshal(t.Teams)
	if err != nil {
		return nil, fmt.Errorf("create token %s: encode teams: %w", t.ID, err)
	}
	return b, nil
}

// Row is one result row of either driver (*sql.Row, *sql.Rows, pgx.Row,
// pgx.Rows).
type Row interface{ Scan(dest ...any) error }

// ScanToken reads a token row, in the column order of both drivers'
// token queries.
func ScanToken(r Row) (store.Token, error) {
	var (
		t                         store.Token
		teams                     []byte
		created, expires, revoked *int64
	)
	err := r.Scan(&t.ID, &t.Hash, &t.Subject, &t.Kind, &teams, &t.PlatformAdmin, &t.Description, &t.CreatedBy,
		&created, &expires, &revoked)
	if err != nil {
		return t, err
	}
	return t, finishToken(&t, created, expires, revoked, teams)
}

// finishToken fills in a scanned token's decoded columns: its times and
// teams.
func finishToken(t *store.Token, created, expires, revoked *int64, teams []byte) error {
	t.CreatedAt, t.ExpiresAt, t.RevokedAt = FromNanos(created), FromNanos(expires), FromNanos(revoked)
	var err error
	if t.Teams, err = DecodeMap("teams", teams); err != nil {
		return fmt.Errorf("token %s: %w", t.ID, err)
	}
	return nil
}

// checkSecretMap checks a job's secret environment like checkMap, but its
// errors name the key only, never the value.
func checkSecretMap(field string, m map[string]string) error {
	for k, v := range m {
		if err := checkText(field+" key", k); err != nil {
			return err
		}
		if err := checkText("", v); err != nil {
			return fmt.Errorf("%s[%q]: the value is not valid UTF-8 or holds a NUL byte", field, k)
		}
	}
	return nil
}

// SecretEnvColumn encodes a job's secret_env column (JSON, as env).
func SecretEnvColumn(job *store.Job) ([]byte, error) {
	b, err := json.Marshal(job.SecretEnv)
	if err != nil {
		return nil, fmt.Errorf("create job %s: encode secret env", job.ID)
	}
	return b, nil
}

// DecodeSecretEnv decodes a job's secret_env column into j.SecretEnv; the
// error does not quote the column.
func DecodeSecretEnv(j *store.Job, b []byte) error {
	m, err := DecodeMap("secret env", b)
	if err != nil {
		return fmt.Errorf("job %s: decode secret env: not a JSON object of strings", j.ID)
	}
	j.SecretEnv = m
	return nil
}

// CheckJobFilter checks the texts of ListJobs' filter: namespaces, the
// submitter and the labels, which no stored job can match unless they are
// storable, and the creation time bounds, which must be storable times.
// Its errors wrap store.ErrRejected.
func CheckJobFilter(f store.JobFilter) error {
	for i, ns := range f.Namespaces {
		if err := checkText(fmt.Sprintf("namespaces[%d]", i), ns); err != nil {
			return Reject(fmt.Errorf("list jobs: %w", err))
		}
	}
	for _, c := range []struct{ field, s string }{{"namespace", f.Namespace}, {"submitted_by", f.SubmittedBy}, {"before", f.Before}} {
		if err := checkText(c.field, c.s); err != nil {
			return Reject(fmt.Errorf("list jobs: %w", err))
		}
	}
	if err := checkMap("labels", f.Labels); err != nil {
		return Reject(fmt.Errorf("list jobs: %w", err))
	}
	for _, r := range f.IDPrefix {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9') {
			return Reject(fmt.Errorf("list jobs: ID prefix %q: job IDs hold only lowercase letters and digits", f.IDPrefix))
		}
	}
	if err := checkTime("created_after", f.CreatedAfter); err != nil {
		return Reject(fmt.Errorf("list jobs: %w", err))
	}
	if err := checkTime("created_before", f.CreatedBefore); err != nil {
		return Reject(fmt.Errorf("list jobs: %w", err))
	}
	return nil
}

// CheckTokenID returns an error wrapping store.ErrNotFound for a token ID
// that no stored token can have (empty, invalid UTF-8, a NUL byte), so that
// GetToken and RevokeToken need not ask the database; nil otherwise. what
// names the call ("get token").
func CheckTokenID(what, id string) error {
	if id == "" || checkText("token ID", id) != nil {
		return fmt.Errorf("%s %q: %w", what, id, store.ErrNotFound)
	}
	return nil
}
