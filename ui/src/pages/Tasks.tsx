// The task table: server-side filters and sort from the query string,
// keyset pages of 200 rows in a virtualized list that keeps at most 20
// pages in memory.
import { useEffect, useMemo, useReducer, useRef, useState } from 'react'
import { useVirtualizer } from '@tanstack/react-virtual'
import { call } from '../api'
import { Link, navigate, withQuery } from '../router'
import { ErrorBox, fmtBytes, fmtDuration, fmtInt, fmtTime, num, StateBadge, TASK_STATES } from '../util'
import { PagedRows } from './pages'

const PAGE_SIZE = 200
const ROW_HEIGHT = 30
const KEYS = ['state', 'glob', 'exit', 'tier', 'reason', 'sort', 'desc', 'first', 'end'] as const
type Filters = Record<(typeof KEYS)[number], string>
const SORTS: Record<string, string | undefined> = {
  index: undefined,
  duration: 'TASK_SORT_DURATION',
  memory: 'TASK_SORT_PEAK_MEMORY',
}

function request(jobId: string, f: Filters) {
  if (f.exit && !/^-?\d+$/.test(f.exit)) throw new Error(`exit code "${f.exit}" is not a number`)
  return {
    jobId,
    states: f.state ? [f.state] : undefined,
    keyGlob: f.glob || undefined,
    exitCode: f.exit ? Number(f.exit) : undefined,
    tier: f.tier || undefined,
    reason: f.reason || undefined,
    firstIndex: f.first ? Number(f.first) : undefined,
    endIndex: f.end ? Number(f.end) : undefined,
    sort: SORTS[f.sort] || undefined,
    descending: f.desc === '1' || undefined,
    pageSize: PAGE_SIZE,
  }
}

export function TasksPage({ jobId, query }: { jobId: string; query: URLSearchParams }) {
  const applied = Object.fromEntries(KEYS.map((k) => [k, query.get(k) || ''])) as Filters
  const key = JSON.stringify(applied)
  const [form, setForm] = useState<Filters>(applied)
  useEffect(() => setForm(applied), [key]) // eslint-disable-line react-hooks/exhaustive-deps
  let req: ReturnType<typeof request> | null = null
  let reqError: unknown = null
  try {
    req = request(jobId, applied)
  } catch (e) {
    reqError = e
  }
  const base = `/jobs/${encodeURIComponent(jobId)}/tasks`
  const apply = (e?: React.FormEvent) => {
    e?.preventDefault()
    navigate(withQuery(base, form))
  }
  const set = (k: keyof Filters) => (e: React.ChangeEvent<HTMLInputElement | HTMLSelectElement>) =>
    setForm({ ...form, [k]: e.target.value })

  return (
    <div>
      <div className="title-row">
        <h1>
          Tasks of <Link to={`/jobs/${encodeURIComponent(jobId)}`}>{jobId}</Link>
        </h1>
        {applied.first || applied.end ? (
          <span className="chip">
            indexes {applied.first || 0} to {applied.end ? Number(applied.end) - 1 : 'end'}{' '}
            <Link to={withQuery(base, { ...applied, first: '', end: '' })}>×</Link>
          </span>
        ) : null}
      </div>
      <form className="filters" onSubmit={apply}>
        <select data-testid="tasks-filter-state" value={form.state} onChange={set('state')}>
          <option value="">any state</option>
          {TASK_STATES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
        <input data-testid="tasks-filter-glob" placeholder="key glob: sim-4*" value={form.glob} onChange={set('glob')} />
        <input data-testid="tasks-filter-exit" placeholder="exit code" size={8} value={form.exit} onChange={set('exit')} />
        <input data-testid="tasks-filter-tier" placeholder="tier" size={10} value={form.tier} onChange={set('tier')} />
        <input data-testid="tasks-filter-reason" placeholder="reason: oom, timeout…" value={form.reason} onChange={set('reason')} />
        <label className="muted">
          sort{' '}
          <select data-testid="tasks-sort" value={form.sort || 'index'} onChange={set('sort')}>
            <option value="index">index</option>
            <option value="duration">duration</option>
            <option value="memory">peak memory</option>
          </select>
        </label>
        <label className="muted">
          <input
            data-testid="tasks-desc"
            type="checkbox"
            checked={form.desc === '1'}
            onChange={(e) => setForm({ ...form, desc: e.target.checked ? '1' : '' })}
          />{' '}
          largest first
        </label>
        <button data-testid="tasks-apply" type="submit">
          Apply
        </button>
      </form>
      <ErrorBox error={reqError} />
      {req ? <TaskTable key={key} base={base} req={req} /> : null}
    </div>
  )
}

const COLUMNS = ['#', 'Key', 'State', 'Tier', 'Attempts', 'Exit', 'Reason', 'Duration', 'Peak memory', 'Finished']

function TaskTable({ base, req }: { base: string; req: object }) {
  const [, rerender] = useReducer((x: number) => x + 1, 0)
  const scroller = useRef<HTMLDivElement>(null)
  const store = useMemo(() => {
    const ctl = new AbortController()
    const s = new PagedRows<any>(
      async (token, signal) => {
        const r = await call('JobService', 'ListTasks', { ...req, pageToken: token || undefined }, signal)
        return { rows: r.tasks || [], next: r.nextPageToken || '' }
      },
      rerender,
      ctl.signal,
    )
    return { s, ctl }
  }, []) // eslint-disable-line react-hooks/exhaustive-deps
  useEffect(() => () => store.ctl.abort(), [store])
  const rows = store.s

  const v = useVirtualizer({
    count: rows.count,
    getScrollElement: () => scroller.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 20,
  })
  const items = v.getVirtualItems()
  const first = items.length ? items[0].index : 0
  const last = items.length ? items[items.length - 1].index : 0
  useEffect(() => {
    if (!rows.error) rows.show(first, last)
  }, [first, last, rows.count, rows.error, rows])

  return (
    <div className="table-box">
      <ErrorBox error={rows.error} />
      {rows.error ? <button onClick={() => rows.retry()}>Retry</button> : null}
      <div className="vrow vhead" role="row">
        {COLUMNS.map((c) => (
          <span key={c} role="columnheader">
            {c}
          </span>
        ))}
      </div>
      <div
        ref={scroller}
        className="vscroll"
        data-testid="tasks-table"
        data-loaded={rows.loaded ? 'true' : undefined}
        role="table"
      >
        <div style={{ height: v.getTotalSize(), position: 'relative' }}>
          {items.map((it) => {
            const t = rows.row(it.index)
            return (
              <div
                key={it.key}
                className="vrow"
                role="row"
                style={{ transform: `translateY(${it.start}px)`, height: ROW_HEIGHT }}
                data-testid={t ? 'task-row' : undefined}
                data-key={t?.key}
              >
                {t ? <TaskCells t={t} base={base} /> : <span className="muted">{it.index < rows.known ? 'Loading…' : rows.done ? '' : 'Loading more…'}</span>}
              </div>
            )
          })}
        </div>
        {rows.done && rows.known === 0 ? <div className="muted pad">No tasks match.</div> : null}
      </div>
      <div className="muted small">
        {fmtInt(rows.known)} tasks listed{rows.done ? '' : ' so far (scroll for more)'} · {rows.pagesInMemory} pages of {PAGE_SIZE} in memory
      </div>
    </div>
  )
}

function TaskCells({ t, base }: { t: any; base: string }) {
  const ended = !!t.finishedAt
  const dur = t.durationMs === undefined ? 0 : num(t.durationMs)
  return (
    <>
      <span className="num">{num(t.index)}</span>
      <span className="ellipsis">
        <Link to={`${base}/${encodeURIComponent(t.key)}`}>{t.key}</Link>
      </span>
      <span>
        <StateBadge state={t.state} />
      </span>
      <span>{t.tier || ''}</span>
      <span className="num">{num(t.attempts)}</span>
      <span className="num">{ended ? num(t.exitCode) : ''}</span>
      <span>{t.reason || ''}</span>
      <span className="num">{ended && dur >= 0 ? fmtDuration(dur) : ''}</span>
      <span className="num">{num(t.peakRssBytes) ? fmtBytes(num(t.peakRssBytes)) : ''}</span>
      <span>{ended ? fmtTime(t.finishedAt) : ''}</span>
    </>
  )
}
