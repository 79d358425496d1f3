package sqlite

import (
	"strings"

	"github.com/haul-dev/haul/internal/store/storesql"
)

// Every SQL statement of the driver but the migrations (migrations/*.sql).
// Optional filters are parameters (NULL or '' for "any"), so that each
// query is one fixed statement.

// Migrations.
const (
	qCreateMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER NOT NULL PRIMARY KEY,
	name       TEXT    NOT NULL,
	applied_at TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
) STRICT`
	qMaxMigration    = `SELECT coalesce(max(version), 0) FROM schema_migrations`
	qRecordMigration = `INSERT INTO schema_migrations (version, name) VALUES (?, ?)`
)

// jobBaseColumns are written by CreateJob and read by every job query;
// jobInsertColumns are what CreateJob writes; jobColumns are read by GetJob
// and ListJobs, activeJobColumns (with the secret env) by ListActiveJobs
// only.
const jobBaseColumns = `id, name, namespace, labels, env, tiers, max_workers, state, task_count, cancel_requested,
	count_blocked, count_queued, count_running, count_succeeded, count_failed, count_upstream_failed, count_cancelled,
	created_at, started_at, finished_at, spec, worker`

const jobInsertColumns = jobBaseColumns + `, submitted_by, secret_env, priority, log_destination, "groups", params, notify, notify_state`

// jobRetryColumns are a job's parameters, retries and webhook with its
// delivery (migration 0015), read by GetJob and ListJobs.
const jobRetryColumns = `params, retries, notify, notify_state, notify_event, notify_round, notify_attempts, notify_error,
	notify_next_at, notify_delivered_at`

// jobUsageColumns hold a job's store.JobUsage, in field order.
const jobUsageColumns = `memory_requested_byte_seconds, memory_used_byte_seconds, cpu_requested_seconds, cpu_used_seconds,
	peak_rss_bytes, oom_attempts`

const (
	jobColumns       = jobBaseColumns + `, worker_seconds, cost_usd, ` + jobUsageColumns + `, submitted_by, priority, log_destination, ` + jobRetryColumns
	activeJobColumns = jobColumns + `, secret_env`
)

// Jobs.
const (
	qInsertJob = `INSERT INTO jobs (` + jobInsertColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qJobExists = `SELECT 1 FROM jobs WHERE id = ?`
	qGetJob    = `SELECT ` + jobColumns + ` FROM jobs WHERE id = ?`
	// ?1 namespace or '', ?2 JSON array of states or NULL, ?3 ID to page
	// before or '', ?4 limit, ?5 JSON array of namespaces or NULL (any),
	// ?6 submitter or '', ?7 GLOB pattern of the name or NULL, ?8 its
	// path.Match pattern or NULL (as for ListTasks's keys), ?9 JSON
	// object of labels every one of which the job must have or NULL, ?10
	// and ?11 the creation time bounds (?10 <= created_at < ?11) or NULL.
	//
	// The labels are matched with json_each, not json_extract: a JSON
	// path cannot spell every key (SQLite's path syntax has no escape for
	// a '"' in a quoted key), and each pair is a value of the parameter,
	// never text of the statement.
	qListJobs = `SELECT ` + jobColumns + ` FROM jobs
WHERE (?1 = '' OR namespace = ?1)
  AND (?2 IS NULL OR state IN (SELECT value FROM json_each(?2)))
  AND (?3 = '' OR id < ?3)
  AND (?5 IS NULL OR namespace IN (SELECT value FROM json_each(?5)))
  AND (?6 = '' OR submitted_by = ?6)
  AND (?7 IS NULL OR name GLOB ?7)
  AND (?8 IS NULL OR ` + pathMatchFunc + `(?8, name))
  AND (?9 IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(?9) AS want
	WHERE NOT EXISTS (SELECT 1 FROM json_each(jobs.labels) AS have
		WHERE have.key = want.key AND have.type = 'text' AND have.value = want.value)))
  AND (?10 IS NULL OR created_at >= ?10)
  AND (?11 IS NULL OR created_at < ?11)
  AND (?12 = '' OR (id >= ?12 AND id < ?12 || '~'))
ORDER BY id DESC
LIMIT ?4`
	qListActiveJobs = `SELECT ` + activeJobColumns + ` FROM jobs
WHERE state IN ('pending', 'running')
ORDER BY id`
	qRequestCancel = `UPDATE jobs SET cancel_requested = 1
WHERE id = ? AND state NOT IN ('succeeded', 'failed', 'cancelled')`
	qUpdateJob = `UPDATE jobs SET state = ?,
	count_blocked = ?, count_queued = ?, count_running = ?, count_succeeded = ?,
	count_failed = ?, count_upstream_failed = ?, count_cancelled = ?,
	started_at = ?, finished_at = ?, worker_seconds = ?, cost_usd = ?,
	memory_requested_byte_seconds = ?, memory_used_byte_seconds = ?, cpu_requested_seconds = ?, cpu_used_seconds = ?,
	peak_rss_bytes = ?, oom_attempts = ?
WHERE id = ? AND (? = 0 OR retries + 1 = ?)`
)

const taskColumns = `job_id, idx, key, argv, env, cwd, after_deps, tier, run_tier, retries, timeout_ms,
	state, attempts, exit_code, reason, started_at, finished_at, duration_ms, peak_rss, retry_base`

// Tasks.
const (
	// taskInsertColumns are the columns CreateJob and AppendTasks write;
	// the others start at their defaults.
	taskInsertColumns = `job_id, idx, key, argv, env, cwd, after_deps, tier, run_tier, retries, timeout_ms, state`
	taskInsertParams  = 12
	// taskInsertRows is the number of rows per INSERT statement of
	// CreateJob and AppendTasks (6,000 parameters; SQLite allows 32,766).
	taskInsertRows = 500

	qLoadTasks  = `SELECT ` + taskColumns + ` FROM tasks WHERE job_id = ? ORDER BY idx`
	qGetTask    = `SELECT ` + taskColumns + ` FROM tasks WHERE job_id = ? AND key = ?`
	qTaskExists = `SELECT 1 FROM tasks WHERE job_id = ? AND idx = ?`
	// AppendTasks: the job as it checks the tasks against, the counts it
	// grows, and (after a failed insert) ?1 job, ?2 JSON array of the
	// appended keys, ?3 the job's task count before: the first appended
	// key that a stored task has, with its position and the task's index.
	qAppendTarget    = `SELECT state, task_count, tiers FROM jobs WHERE id = ?`
	qAppendJobCounts = `UPDATE jobs SET task_count = task_count + ?2, count_blocked = count_blocked + ?2 WHERE id = ?1`
	qAppendDuplicate = `SELECT k.key, t.idx FROM json_each(?2) AS k
JOIN tasks AS t ON t.job_id = ?1 AND t.key = k.value
WHERE t.idx < ?3
ORDER BY k.key
LIMIT 1`
	// The last two values are the task's run time and peak memory at its
	// end (storesql.TaskEnd), NULL to keep them.
	// A store.QueuedRange: ?1 job, ?2 <= idx < ?3.
	qQueueRange = `UPDATE tasks SET state = 'queued', reason = '', finished_at = NULL
WHERE job_id = ?1 AND idx >= ?2 AND idx < ?3`

	qUpdateTask = `UPDATE tasks SET run_tier = ?, state = ?, attempts = ?, exit_code = ?, reason = ?, started_at = ?, finished_at = ?,
	duration_ms = coalesce(?, duration_ms), peak_rss = coalesce(?, peak_rss)
WHERE job_id = ? AND idx = ?`

	// TaskRangeStats: the tasks of job ?1 with ?2 <= idx < ?3 by state,
	// read through the primary key.
	qTaskRangeStats = `SELECT state, count(*), min(started_at), max(finished_at) FROM tasks
WHERE job_id = ?1 AND idx >= ?2 AND idx < ?3
GROUP BY state`
	qJobGroups = `SELECT "groups" FROM jobs WHERE id = ?`
)

// sortIndexes are the partial indexes of ended tasks (migration 0014) by
// sort column.
var sortIndexes = map[string]string{"duration_ms": "tasks_job_duration_idx", "peak_rss": "tasks_job_peak_rss_idx"}

// listTasksQueries are ListTasks's statements, one per query shape.
var listTasksQueries = func() map[storesql.TaskSortQuery]string {
	m := map[storesql.TaskSortQuery]string{}
	m[storesql.TaskSortQuery{}] = listTasksSQL(storesql.TaskSortQuery{})
	for _, col := range []string{"duration_ms", "peak_rss"} {
		for _, desc := range []bool{false, true} {
			for _, after := range []bool{false, true} {
				q := storesql.TaskSortQuery{Column: col, Desc: desc, After: after}
				m[q] = listTasksSQL(q)
			}
		}
	}
	return m
}()

// listTasksSQL returns ListTasks's statement for one query shape. Its
// parameters: ?1 job, ?2 and ?3 the index bounds (?2 <= idx < ?3), ?4 JSON
// array of states or NULL, ?5 GLOB pattern or NULL, ?6 path.Match pattern
// or NULL (checked after GLOB when GLOB cannot spell the glob exactly), ?7
// exit code or NULL, ?8 run tier or NULL, ?9 reason or "", ?10 limit; with
// q.After, ?11 and ?12 the sort value and index to continue after.
//
// In index order the bounds select a range of the primary key. Sorted by a
// column, the statement reads the partial index on (job_id, column, idx)
// of ended tasks (the predicate duration_ms >= 0 is the index's, so that
// SQLite may use it) from the key it continues after, in the sort order;
// INDEXED BY names it, as SQLite would otherwise read the index by
// duration for a first page by peak memory (duration_ms >= 0 is a range
// of it) and sort every ended task. The index bounds are then filters
// ("+idx": not an index range).
//
// In descending order, ties come by ascending index: SQLite sorts each
// run of equal values (a temporary b-tree for the last term of the ORDER
// BY), not the whole job.
func listTasksSQL(q storesql.TaskSortQuery) string {
	var b strings.Builder
	if q.Column == "" {
		b.WriteString(`SELECT ` + taskColumns + ` FROM tasks
WHERE job_id = ?1 AND idx >= ?2 AND idx < ?3`)
	} else {
		b.WriteString(`SELECT ` + taskColumns + ` FROM tasks INDEXED BY ` + sortIndexes[q.Column] + `
WHERE job_id = ?1`)
		// The key to continue after comes first: of two bounds on the
		// sort column, SQLite reads the index from the first.
		switch {
		case q.After && !q.Desc:
			b.WriteString(` AND (` + q.Column + `, idx) > (?11, ?12)`)
		case q.After:
			b.WriteString(` AND ` + q.Column + ` <= ?11 AND (` + q.Column + ` < ?11 OR idx > ?12)`)
		}
		b.WriteString(` AND duration_ms >= 0 AND +idx >= ?2 AND +idx < ?3`)
	}
	b.WriteString(`
  AND (?4 IS NULL OR state IN (SELECT value FROM json_each(?4)))
  AND (?5 IS NULL OR key GLOB ?5)
  AND (?6 IS NULL OR ` + pathMatchFunc + `(?6, key))
  AND (?7 IS NULL OR exit_code = ?7)
  AND (?8 IS NULL OR run_tier = ?8)
  AND (?9 = '' OR reason = ?9 OR substr(reason, 1, length(?9) + 2) = ?9 || ': ')`)
	switch {
	case q.Column == "":
		b.WriteString(`
ORDER BY idx`)
	case !q.Desc:
		b.WriteString(`
ORDER BY ` + q.Column + `, idx`)
	default:
		b.WriteString(`
ORDER BY ` + q.Column + ` DESC, idx`)
	}
	b.WriteString(`
LIMIT ?10`)
	return b.String()
}

// insertTasksSQL returns a statement inserting rows tasks.
func insertTasksSQL(rows int) string {
	row := "(" + strings.Repeat("?, ", taskInsertParams-1) + "?)"
	var b strings.Builder
	b.WriteString("INSERT INTO tasks (" + taskInsertColumns + ") VALUES ")
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return b.String()
}

const attemptColumns = `job_id, task_idx, number, tier, worker_id, state, exit_code, signal, reason, message,
	started_at, finished_at, enforcement, cpu_user_seconds, cpu_system_seconds, peak_rss_bytes, avg_rss_bytes, gpus, gpu_note`

// Attempts.
const (
	qListAttempts  = `SELECT ` + attemptColumns + ` FROM attempts WHERE job_id = ? AND task_idx = ? ORDER BY number`
	qUpsertAttempt = `INSERT INTO attempts (` + attemptColumns + `)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (job_id, task_idx, number) DO UPDATE SET
	tier = excluded.tier, worker_id = excluded.worker_id, state = excluded.state,
	exit_code = excluded.exit_code, signal = excluded.signal, reason = excluded.reason,
	message = excluded.message, started_at = excluded.started_at, finished_at = excluded.finished_at,
	enforcement = excluded.enforcement, cpu_user_seconds = excluded.cpu_user_seconds,
	cpu_system_seconds = excluded.cpu_system_seconds, peak_rss_bytes = excluded.peak_rss_bytes,
	avg_rss_bytes = excluded.avg_rss_bytes, gpus = excluded.gpus, gpu_note = excluded.gpu_note`
)

// Task cancels and leases.
const (
	// Only tasks that are not terminal get a request.
	qRequestTaskCancel = `INSERT INTO task_cancels (job_id, idx)
SELECT job_id, idx FROM tasks
WHERE job_id = ? AND idx = ? AND state NOT IN ('succeeded', 'failed', 'upstream_failed', 'cancelled')
ON CONFLICT DO NOTHING`
	qListTaskCancels = `SELECT c.job_id, c.idx FROM task_cancels c JOIN jobs j ON j.id = c.job_id
WHERE j.state IN ('pending', 'running') ORDER BY c.job_id, c.idx`
	// ?1 name, ?2 holder, ?3 address, ?4 expires_at, ?5 now. A free row
	// (released: holder '') or an expired one is taken; a different holder
	// starts a new epoch, the same holder keeps its own.
	qAcquireLease = `INSERT INTO leases (name, holder, address, expires_at, epoch) VALUES (?1, ?2, ?3, ?4, 1)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, address = excluded.address, expires_at = excluded.expires_at,
	epoch = CASE WHEN leases.holder = excluded.holder THEN leases.epoch ELSE leases.epoch + 1 END
WHERE leases.holder = excluded.holder OR leases.holder = '' OR leases.expires_at <= ?5`
	qGetLease = `SELECT name, holder, address, expires_at, epoch FROM leases WHERE name = ?`
	// A release keeps the row (and its epoch) with no holder.
	qReleaseLease = `UPDATE leases SET holder = '', address = '', expires_at = 0 WHERE name = ?1 AND holder = ?2 AND holder <> ''`
	// Held leases whose name starts with ?1, compared as bytes (the
	// column's BINARY collation): no LIKE, so that '%' and '_' in ?1 are
	// literal.
	qListLeases = `SELECT name, holder, address, expires_at, epoch FROM leases
WHERE holder <> '' AND substr(name, 1, length(?1)) = ?1 ORDER BY name`
	// The holder and epoch of lease ?, read inside a fenced write's
	// transaction (which SQLite's write lock serialises with AcquireLease).
	qLeaseHolder = `SELECT holder, epoch FROM leases WHERE name = ?`

	// ?1 name, ?2 value: the first value stored under a name stays.
	qInsertSecret = `INSERT INTO secrets (name, value, created_at)
VALUES (?1, ?2, CAST(unixepoch('subsec') * 1000000000 AS INTEGER))
ON CONFLICT (name) DO NOTHING`
	qGetSecret = `SELECT value FROM secrets WHERE name = ?`
)

const tokenColumns = `id, hash, subject, kind, teams, platform_admin, description, created_by, created_at, expires_at, revoked_at`

// Tokens and the audit log.
const (
	qInsertToken = `INSERT INTO tokens (` + tokenColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qGetToken    = `SELECT ` + tokenColumns + ` FROM tokens WHERE id = ?`
	qTokenExists = `SELECT 1 FROM tokens WHERE id = ?`
	// ?1 team or '', ?2 subject or '', ?3 include revoked, ?4 ID to page
	// before or '', ?5 limit.
	qListTokens = `SELECT ` + tokenColumns + ` FROM tokens
WHERE (?1 = '' OR EXISTS (SELECT 1 FROM json_each(teams) WHERE key = ?1))
  AND (?2 = '' OR subject = ?2)
  AND (?3 OR revoked_at IS NULL)
  AND (?4 = '' OR id < ?4)
ORDER BY id DESC
LIMIT ?5`
	// The first revocation wins: a second keeps its time.
	qRevokeToken = `UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?`

	auditInsertColumns = `at, subject, token_id, action, team, object, remote, outcome, detail`
	auditInsertParams  = 9
	// auditInsertRows is the number of rows per INSERT of AppendAudit.
	auditInsertRows = 500
	auditColumns    = `seq, ` + auditInsertColumns
	// ?1 subject or '', ?2 team or '', ?3 seq to page before or 0, ?4 limit.
	qListAudit = `SELECT ` + auditColumns + ` FROM audit
WHERE (?1 = '' OR subject = ?1)
  AND (?2 = '' OR team = ?2)
  AND (?3 = 0 OR seq < ?3)
ORDER BY seq DESC
LIMIT ?4`
)

// insertAuditSQL returns a statement inserting rows audit entries.
func insertAuditSQL(rows int) string {
	row := "(" + strings.Repeat("?, ", auditInsertParams-1) + "?)"
	var b strings.Builder
	b.WriteString("INSERT INTO audit (" + auditInsertColumns + ") VALUES ")
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return b.String()
}
