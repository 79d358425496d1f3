package postgres

import (
	"strings"

	"github.com/haul-dev/haul/internal/store/storesql"
)

// Every SQL statement of the driver but the migrations (migrations/*.sql).
// Optional filters are parameters (NULL for "any"), so that each query is
// one fixed statement, prepared once per connection by pgx. Batch writes
// send whole columns as arrays and unnest them: one statement per kind of
// row, whatever the batch size.

// Migrations.
const (
	// migrationLockKey is the advisory lock that serialises processes
	// migrating one database ("haulmigr").
	migrationLockKey  int64 = 0x686175_6c6d696772
	qLockMigrations         = `SELECT pg_advisory_xact_lock($1)`
	qCreateMigrations       = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`
	qMaxMigration    = `SELECT coalesce(max(version), 0) FROM schema_migrations`
	qRecordMigration = `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`
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
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30)`
	qJobExists = `SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1)`
	qGetJob    = `SELECT ` + jobColumns + ` FROM jobs WHERE id = $1`
	// $1 namespace or '', $2 states or NULL, $3 ID to page before or '',
	// $4 limit, $5 namespaces or NULL (any), $6 submitter or '', $7
	// regular expression (from the name glob) or NULL, $8 JSON object of
	// labels every one of which the job must have (containment: each key
	// with that string value) or NULL, $9 and $10 the creation time bounds
	// ($9 <= created_at < $10) or NULL. The name is matched in the "C"
	// collation, as task keys are: glob classes are ranges of code points.
	qListJobs = `SELECT ` + jobColumns + ` FROM jobs
WHERE ($1::text = '' OR namespace = $1)
  AND ($2::text[] IS NULL OR state = ANY ($2))
  AND ($3::text = '' OR id < $3)
  AND ($5::text[] IS NULL OR namespace = ANY ($5))
  AND ($6::text = '' OR submitted_by = $6)
  AND ($7::text IS NULL OR name COLLATE "C" ~ $7)
  AND ($8::jsonb IS NULL OR labels @> $8)
  AND ($9::bigint IS NULL OR created_at >= $9)
  AND ($10::bigint IS NULL OR created_at < $10)
  AND ($11::text = '' OR (id >= $11 AND id < $11 || '~'))
ORDER BY id DESC
LIMIT $4`
	qListActiveJobs = `SELECT ` + activeJobColumns + ` FROM jobs
WHERE state IN ('pending', 'running')
ORDER BY id`
	qRequestCancel = `UPDATE jobs SET cancel_requested = true
WHERE id = $1 AND state NOT IN ('succeeded', 'failed', 'cancelled')`
	// Columns: id, state, the seven counts, started_at, finished_at,
	// worker_seconds, cost_usd, then jobUsageColumns.
	qUpdateJobs = `UPDATE jobs AS j SET state = u.state,
	count_blocked = u.blocked, count_queued = u.queued, count_running = u.running, count_succeeded = u.succeeded,
	count_failed = u.failed, count_upstream_failed = u.upstream_failed, count_cancelled = u.cancelled,
	started_at = u.started_at, finished_at = u.finished_at, worker_seconds = u.worker_seconds, cost_usd = u.cost_usd,
	memory_requested_byte_seconds = u.memory_requested_byte_seconds, memory_used_byte_seconds = u.memory_used_byte_seconds,
	cpu_requested_seconds = u.cpu_requested_seconds, cpu_used_seconds = u.cpu_used_seconds,
	peak_rss_bytes = u.peak_rss_bytes, oom_attempts = u.oom_attempts
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
		$9::bigint[], $10::bigint[], $11::bigint[], $12::float8[], $13::float8[],
		$14::float8[], $15::float8[], $16::float8[], $17::float8[], $18::bigint[], $19::bigint[], $20::integer[])
	AS u(id, state, blocked, queued, running, succeeded, failed, upstream_failed, cancelled, started_at, finished_at, worker_seconds, cost_usd,
		` + jobUsageColumns + `, run)
WHERE j.id = u.id AND (u.run = 0 OR j.retries + 1 = u.run)`
	// The first of the IDs $1 that names no job.
	qFirstMissingJob = `SELECT u.id FROM unnest($1::text[]) WITH ORDINALITY AS u(id, n)
WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = u.id)
ORDER BY u.n LIMIT 1`
)

const taskColumns = `job_id, idx, key, argv, env, cwd, after_deps, tier, run_tier, retries, timeout_ms,
	state, attempts, exit_code, reason, started_at, finished_at, duration_ms, peak_rss, retry_base`

// Tasks.
const (
	// tasksTable and taskCopyColumns are what CreateJob and AppendTasks
	// copy (COPY FROM STDIN, binary); the other columns start at their
	// defaults.
	tasksTable = "tasks"

	qLoadTasks  = `SELECT ` + taskColumns + ` FROM tasks WHERE job_id = $1 ORDER BY idx`
	qGetTask    = `SELECT ` + taskColumns + ` FROM tasks WHERE job_id = $1 AND key = $2`
	qTaskExists = `SELECT EXISTS (SELECT 1 FROM tasks WHERE job_id = $1 AND idx = $2)`
	// AppendTasks: the job as it checks the tasks against, locked until
	// the append commits (appenders to one job take turns, and each reads
	// the task count the one before left), and the counts it grows.
	qAppendTarget    = `SELECT state, task_count, tiers FROM jobs WHERE id = $1 FOR UPDATE`
	qAppendJobCounts = `UPDATE jobs SET task_count = task_count + $2, count_blocked = count_blocked + $2 WHERE id = $1`
	// After a refused append: the first of the keys $2 that a task of job
	// $1 stored before it (index below $3) has, with its position in $2
	// (from 0) and that task's index.
	qAppendDuplicate = `SELECT u.n - 1, t.idx FROM unnest($2::text[]) WITH ORDINALITY AS u(key, n)
JOIN tasks t ON t.job_id = $1 AND t.key = u.key
WHERE t.idx < $3
ORDER BY u.n
LIMIT 1`
	// Columns: job_id, idx, state, attempts, exit_code, reason,
	// started_at, finished_at, run_tier, then the run time and peak memory
	// at the task's end (storesql.TaskEnd), NULL to keep them.
	// A store.QueuedRange: $1 job, $2 <= idx < $3 (one statement per
	// range, so that overlapping ranges cannot hide a missing row).
	qQueueRange = `UPDATE tasks SET state = 'queued', reason = '', finished_at = NULL
WHERE job_id = $1 AND idx >= $2::integer AND idx < $3::integer`
	qCountRange = `SELECT count(*) FROM tasks WHERE job_id = $1 AND idx >= $2::integer AND idx < $3::integer`

	qUpdateTasks = `UPDATE tasks AS t SET state = u.state, attempts = u.attempts, exit_code = u.exit_code,
	reason = u.reason, started_at = u.started_at, finished_at = u.finished_at, run_tier = u.run_tier,
	duration_ms = coalesce(u.duration_ms, t.duration_ms), peak_rss = coalesce(u.peak_rss, t.peak_rss)
FROM unnest($1::text[], $2::integer[], $3::text[], $4::integer[], $5::integer[], $6::text[], $7::bigint[], $8::bigint[], $9::integer[],
		$10::bigint[], $11::bigint[])
	AS u(job_id, idx, state, attempts, exit_code, reason, started_at, finished_at, run_tier, duration_ms, peak_rss)
WHERE t.job_id = u.job_id AND t.idx = u.idx`
	// The first of the (job, index) pairs $1, $2 that names no task.
	qFirstMissingTask = `SELECT u.job_id, u.idx FROM unnest($1::text[], $2::integer[]) WITH ORDINALITY AS u(job_id, idx, n)
WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = u.job_id AND t.idx = u.idx)
ORDER BY u.n LIMIT 1`

	// TaskRangeStats: for each range ($2[n] <= idx < $3[n]) of job $1, its
	// tasks by state; n counts the ranges from 1. The lateral subquery
	// (which aggregates, so it is not flattened) reads each range's rows
	// through the primary key.
	qTaskRangeStats = `SELECT r.n, s.state, s.n, s.started, s.finished
FROM unnest($2::integer[], $3::integer[]) WITH ORDINALITY AS r(first_idx, end_idx, n)
CROSS JOIN LATERAL (
	SELECT t.state, count(*) AS n, min(t.started_at) AS started, max(t.finished_at) AS finished
	FROM tasks t
	WHERE t.job_id = $1 AND t.idx >= r.first_idx AND t.idx < r.end_idx
	GROUP BY t.state) AS s`
	qJobGroups = `SELECT "groups" FROM jobs WHERE id = $1`
)

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
// parameters: $1 job, $2 and $3 the index bounds ($2 <= idx < $3), $4
// states or NULL, $5 regular expression (from the key glob) or NULL, $6
// exit code or NULL, $7 run tier or NULL, $8 reason or "", $9 limit; with
// q.After, $10 and $11 the sort value and index to continue after.
//
// In index order the bounds select a range of the primary key. Sorted by a
// column, the statement reads the partial index on (job_id, column, idx)
// of ended tasks (it repeats the index's predicate duration_ms >= 0, so
// that the planner may use it), from the key it continues after; in
// descending order, ties come by ascending index (an incremental sort of
// each run of equal values).
func listTasksSQL(q storesql.TaskSortQuery) string {
	var b strings.Builder
	b.WriteString(`SELECT ` + taskColumns + ` FROM tasks
WHERE job_id = $1 AND idx >= $2::bigint AND idx < $3::bigint`)
	if q.Column != "" {
		b.WriteString(` AND duration_ms >= 0`)
	}
	b.WriteString(`
  AND ($4::text[] IS NULL OR state = ANY ($4))
  AND ($5::text IS NULL OR key ~ $5)
  AND ($6::integer IS NULL OR exit_code = $6)
  AND ($7::integer IS NULL OR run_tier = $7)
  AND ($8::text = '' OR reason = $8 OR starts_with(reason, $8 || ': '))`)
	switch {
	case q.Column == "":
		b.WriteString(`
ORDER BY idx`)
	case !q.Desc:
		if q.After {
			b.WriteString(`
  AND (` + q.Column + `, idx) > ($10::bigint, $11::integer)`)
		}
		b.WriteString(`
ORDER BY ` + q.Column + `, idx`)
	default:
		if q.After {
			b.WriteString(`
  AND ` + q.Column + ` <= $10::bigint AND (` + q.Column + ` < $10 OR idx > $11::integer)`)
		}
		b.WriteString(`
ORDER BY ` + q.Column + ` DESC, idx`)
	}
	b.WriteString(`
LIMIT $9`)
	return b.String()
}

var taskCopyColumns = []string{"job_id", "idx", "key", "argv", "env", "cwd", "after_deps", "tier", "run_tier", "retries", "timeout_ms", "state"}

const attemptColumns = `job_id, task_idx, number, tier, worker_id, state, exit_code, signal, reason, message,
	started_at, finished_at, enforcement, cpu_user_seconds, cpu_system_seconds, peak_rss_bytes, avg_rss_bytes, gpus, gpu_note`

// Attempts.
const (
	qListAttempts = `SELECT ` + attemptColumns + ` FROM attempts WHERE job_id = $1 AND task_idx = $2 ORDER BY number`
	// Columns in attemptColumns order; gpus go as JSON text (pgx sends a
	// text array as is) and become jsonb here.
	qUpsertAttempts = `INSERT INTO attempts (` + attemptColumns + `)
SELECT job_id, task_idx, number, tier, worker_id, state, exit_code, signal, reason, message,
	started_at, finished_at, enforcement, cpu_user_seconds, cpu_system_seconds, peak_rss_bytes, avg_rss_bytes, gpus::jsonb, gpu_note
FROM unnest($1::text[], $2::integer[], $3::integer[], $4::integer[], $5::text[], $6::text[], $7::integer[],
	$8::integer[], $9::text[], $10::text[], $11::bigint[], $12::bigint[],
	$13::text[], $14::float8[], $15::float8[], $16::bigint[], $17::bigint[], $18::text[], $19::text[])
	AS u(` + attemptColumns + `)
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
WHERE job_id = $1 AND idx = $2 AND state NOT IN ('succeeded', 'failed', 'upstream_failed', 'cancelled')
ON CONFLICT DO NOTHING`
	qListTaskCancels = `SELECT c.job_id, c.idx FROM task_cancels c JOIN jobs j ON j.id = c.job_id
WHERE j.state IN ('pending', 'running') ORDER BY c.job_id, c.idx`
	// $1 name, $2 holder, $3 address, $4 expires_at, $5 now. A free row
	// (released: holder '') or an expired one is taken; a different holder
	// starts a new epoch, the same holder keeps its own.
	qAcquireLease = `INSERT INTO leases (name, holder, address, expires_at, epoch) VALUES ($1, $2, $3, $4, 1)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, address = excluded.address, expires_at = excluded.expires_at,
	epoch = CASE WHEN leases.holder = excluded.holder THEN leases.epoch ELSE leases.epoch + 1 END
WHERE leases.holder = excluded.holder OR leases.holder = '' OR leases.expires_at <= $5`
	qGetLease = `SELECT name, holder, address, expires_at, epoch FROM leases WHERE name = $1`
	// A release keeps the row (and its epoch) with no holder.
	qReleaseLease = `UPDATE leases SET holder = '', address = '', expires_at = 0 WHERE name = $1 AND holder = $2 AND holder <> ''`
	// Held leases whose name starts with $1, compared as bytes (the column
	// is COLLATE "C"): no LIKE, so that '%' and '_' in $1 are literal.
	qListLeases = `SELECT name, holder, address, expires_at, epoch FROM leases
WHERE holder <> '' AND left(name, length($1::text)) = $1::text ORDER BY name`
	// The holder and epoch of lease $1, read inside a fenced write's
	// transaction. FOR UPDATE locks the row until the write commits: a
	// successor's AcquireLease (an UPDATE of the row) waits for the write,
	// and a write that starts after the successor committed reads the new
	// holder. Fenced writes of one holder take turns on the row (the
	// runner's committer has one batch in flight, so only an append can
	// wait for a batch); a shared lock would let overlapping writes keep a
	// successor waiting for as long as they overlap.
	qLeaseHolder = `SELECT holder, epoch FROM leases WHERE name = $1 FOR UPDATE`

	// $1 name, $2 value. The first value stored under a name stays; the
	// read after it sees whichever insert committed first (READ COMMITTED
	// reads with a new snapshot per statement, and a conflicting insert
	// waits for the other to commit).
	qInsertSecret = `INSERT INTO secrets (name, value, created_at)
VALUES ($1, $2, (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint)
ON CONFLICT (name) DO NOTHING`
	qGetSecret = `SELECT value FROM secrets WHERE name = $1`
)

const tokenColumns = `id, hash, subject, kind, teams, platform_admin, description, created_by, created_at, expires_at, revoked_at`

// Tokens and the audit log.
const (
	qInsertToken = `INSERT INTO tokens (` + tokenColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`
	qGetToken    = `SELECT ` + tokenColumns + ` FROM tokens WHERE id = $1`
	// $1 team or '', $2 subject or '', $3 include revoked, $4 ID to page
	// before or '', $5 limit.
	qListTokens = `SELECT ` + tokenColumns + ` FROM tokens
WHERE ($1::text = '' OR teams ? $1)
  AND ($2::text = '' OR subject = $2)
  AND ($3::boolean OR revoked_at IS NULL)
  AND ($4::text = '' OR id < $4)
ORDER BY id DESC
LIMIT $5`
	// The first revocation wins: a second keeps its time.
	qRevokeToken = `UPDATE tokens SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2`

	// AppendAudit sends each column as an array: one statement whatever
	// the number of entries.
	qInsertAudit = `INSERT INTO audit (at, subject, token_id, action, team, object, remote, outcome, detail)
SELECT at, subject, token_id, action, team, object, remote, outcome, detail FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
	WITH ORDINALITY AS u(at, subject, token_id, action, team, object, remote, outcome, detail, n)
ORDER BY n`
	// $1 subject or '', $2 team or '', $3 seq to page before or 0, $4 limit.
	qListAudit = `SELECT seq, at, subject, token_id, action, team, object, remote, outcome, detail FROM audit
WHERE ($1::text = '' OR subject = $1)
  AND ($2::text = '' OR team = $2)
  AND ($3::bigint = 0 OR seq < $3)
ORDER BY seq DESC
LIMIT $4`
)
