// The jobs list: filters in the query string, the first page live from
// WatchJobs, later pages by keyset (page token) from ListJobs.
import { useEffect, useState } from 'react'
import { call, watch } from '../api'
import { Link, navigate, withQuery } from '../router'
import { counts, CountsBar, ErrorBox, fmtInt, fmtTime, JOB_STATES, num, span, StateBadge } from '../util'

const PAGE_SIZE = 100
const FILTERS = ['name', 'label', 'state', 'team', 'user', 'since', 'until'] as const
type Filters = Record<(typeof FILTERS)[number], string>

function parseLabels(s: string): Record<string, string> | undefined {
  const out: Record<string, string> = {}
  for (const part of s.split(',')) {
    const p = part.trim()
    if (!p) continue
    const i = p.indexOf('=')
    if (i <= 0) throw new Error(`label filter "${p}": write key=value`)
    out[p.slice(0, i).trim()] = p.slice(i + 1).trim()
  }
  return Object.keys(out).length ? out : undefined
}

// The time filters take RFC 3339 ("2026-01-02T15:04:05Z") or a local
// date and time ("2026-01-02 15:04", "2026-01-02"); the API wants RFC 3339.
function toRFC3339(s: string): string | undefined {
  s = s.trim()
  if (!s) return undefined
  const local = s.match(/^(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d))?)?$/)
  const d = local
    ? new Date(+local[1], +local[2] - 1, +local[3], +(local[4] || 0), +(local[5] || 0), +(local[6] || 0))
    : new Date(s)
  if (isNaN(d.getTime())) throw new Error(`time "${s}": write 2026-01-02 15:04 or RFC 3339`)
  return d.toISOString()
}

function request(f: Filters, pageToken: string) {
  return {
    nameGlob: f.name || undefined,
    labels: parseLabels(f.label),
    states: f.state ? [f.state] : undefined,
    namespace: f.team || undefined,
    submittedBy: f.user || undefined,
    createdAfter: toRFC3339(f.since),
    createdBefore: toRFC3339(f.until),
    pageSize: PAGE_SIZE,
    pageToken: pageToken || undefined,
  }
}

export function JobsPage({ query }: { query: URLSearchParams }) {
  const applied = Object.fromEntries(FILTERS.map((k) => [k, query.get(k) || ''])) as Filters
  const page = query.get('page') || ''
  const key = JSON.stringify(applied)

  const [form, setForm] = useState<Filters>(applied)
  useEffect(() => setForm(applied), [key]) // eslint-disable-line react-hooks/exhaustive-deps

  const [jobs, setJobs] = useState<any[] | null>(null)
  const [next, setNext] = useState('')
  const [error, setError] = useState<unknown>(null)
  const [note, setNote] = useState('')

  useEffect(() => {
    setJobs(null)
    setError(null)
    setNote('')
    let req: object
    try {
      req = request(applied, page)
    } catch (e) {
      setError(e)
      return
    }
    const ctl = new AbortController()
    const show = (r: any) => {
      setJobs(r.jobs || [])
      setNext(r.nextPageToken || '')
      setNote('')
    }
    if (page) {
      // A later page: keyset paging, not live.
      call('JobService', 'ListJobs', req, ctl.signal).then(show, (e) => !ctl.signal.aborted && setError(e))
    } else {
      watch('JobService', 'WatchJobs', req, show, ctl.signal, {
        onError: setError,
        onRetry: (e, ms) => setNote(`${e.message}; reconnecting in ${ms / 1000}s`),
      })
    }
    return () => ctl.abort()
  }, [key, page]) // eslint-disable-line react-hooks/exhaustive-deps

  const apply = (e?: React.FormEvent) => {
    e?.preventDefault()
    navigate(withQuery('/jobs', form))
  }
  const input = (k: keyof Filters, placeholder: string) => (
    <input
      data-testid={`filter-${k}`}
      placeholder={placeholder}
      value={form[k]}
      onChange={(e) => setForm({ ...form, [k]: e.target.value })}
    />
  )

  return (
    <div>
      <h1>Jobs</h1>
      <form className="filters" onSubmit={apply}>
        {input('name', 'name glob: nightly-*')}
        {input('label', 'labels: k=v,k2=v2')}
        <select data-testid="filter-state" value={form.state} onChange={(e) => setForm({ ...form, state: e.target.value })}>
          <option value="">any state</option>
          {JOB_STATES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
        {input('team', 'team')}
        {input('user', 'submitted by')}
        <label className="muted">
          since {input('since', 'YYYY-MM-DD hh:mm')}
        </label>
        <label className="muted">
          until {input('until', 'YYYY-MM-DD hh:mm')}
        </label>
        <button data-testid="filters-apply" type="submit">
          Apply
        </button>
      </form>
      <ErrorBox error={error} />
      {note ? <div className="note">{note}</div> : null}
      <table className="grid" data-testid="jobs-table" data-loaded={jobs ? 'true' : undefined}>
        <thead>
          <tr>
            <th>Job</th>
            <th>Team</th>
            <th>State</th>
            <th>Tasks</th>
            <th>By state</th>
            <th>Submitted by</th>
            <th>Created</th>
            <th>Duration</th>
          </tr>
        </thead>
        <tbody>
          {jobs?.map((j) => <JobRow key={j.id} job={j} />)}
          {jobs && jobs.length === 0 ? (
            <tr>
              <td colSpan={8} className="muted">
                No jobs match.
              </td>
            </tr>
          ) : null}
          {!jobs && !error ? (
            <tr>
              <td colSpan={8} className="muted">
                Loading…
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>
      <div className="pager">
        {page ? <Link to={withQuery('/jobs', applied)}>First page</Link> : <span className="muted">live</span>}
        <button data-testid="jobs-next" disabled={!next} onClick={() => navigate(withQuery('/jobs', { ...applied, page: next }))}>
          Next page
        </button>
      </div>
    </div>
  )
}

function JobRow({ job }: { job: any }) {
  const c = counts(job.counts)
  const total = num(job.taskCount)
  const labels = Object.entries(job.labels || {}).map(([k, v]) => `${k}=${v}`)
  return (
    <tr data-testid="job-row" data-job-id={job.id}>
      <td>
        <Link to={`/jobs/${encodeURIComponent(job.id)}`}>{job.name || job.id}</Link>
        <div className="muted small">
          {job.id}
          {labels.length ? ' · ' + labels.join(', ') : ''}
        </div>
      </td>
      <td>{job.namespace || '—'}</td>
      <td>
        <StateBadge state={job.state} />
        {job.cancelRequested && job.state === 'running' ? <span className="muted small"> cancelling</span> : null}
      </td>
      <td className="num">{fmtInt(total)}</td>
      <td>
        <CountsBar c={c} total={total} />
        <div className="small muted">
          {c.running ? `${fmtInt(c.running)} running · ` : ''}
          {fmtInt(c.succeeded)} ok{c.failed ? ` · ${fmtInt(c.failed)} failed` : ''}
        </div>
      </td>
      <td>{job.submittedBy || '—'}</td>
      <td>{fmtTime(job.createdAt)}</td>
      <td>{span(job.startedAt, job.finishedAt)}</td>
    </tr>
  )
}
