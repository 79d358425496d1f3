// One group's tasks under the graph, a page at a time (keyset paging:
// the tokens of the pages before are kept to go back).
import { useEffect, useState } from 'react'
import { call } from '../api'
import { Link, withQuery } from '../router'
import { counts, ErrorBox, fmtDuration, fmtInt, num, StateBadge, TASK_STATES } from '../util'

const PAGE_SIZE = 100

// groupFilter selects a group's tasks: by index range, or by key glob for
// tasks added while the job ran (their group's name ends with "*").
export function groupFilter(group: any): { first?: string; end?: string; glob?: string } {
  if (group.name.endsWith('*')) return { glob: group.name }
  const first = num(group.firstIndex)
  return { first: String(first), end: String(first + num(group.taskCount)) }
}

export function GroupTasks({ jobId, group }: { jobId: string; group: any }) {
  const [tokens, setTokens] = useState<string[]>(['']) // tokens[i] fetches page i
  const [page, setPage] = useState(0)
  const [resp, setResp] = useState<any>(null)
  const [error, setError] = useState<unknown>(null)
  const f = groupFilter(group)

  useEffect(() => {
    const ctl = new AbortController()
    setError(null)
    call(
      'JobService',
      'ListTasks',
      {
        jobId,
        keyGlob: f.glob,
        firstIndex: f.first ? +f.first : undefined,
        endIndex: f.end ? +f.end : undefined,
        pageSize: PAGE_SIZE,
        pageToken: tokens[page] || undefined,
      },
      ctl.signal,
    ).then(
      (r) => {
        setResp(r)
        if (r.nextPageToken && tokens.length === page + 1) setTokens([...tokens, r.nextPageToken])
      },
      (e) => !ctl.signal.aborted && setError(e),
    )
    return () => ctl.abort()
  }, [jobId, page]) // eslint-disable-line react-hooks/exhaustive-deps

  const c = counts(group.counts)
  const base = `/jobs/${encodeURIComponent(jobId)}/tasks`
  return (
    <div className="group-tasks">
      <div className="title-row">
        <h3>{group.name}</h3>
        <span className="muted">
          {fmtInt(num(group.taskCount))} tasks ·{' '}
          {TASK_STATES.filter((s) => c[s])
            .map((s) => `${fmtInt(c[s])} ${s.replace('_', ' ')}`)
            .join(' · ')}
        </span>
        <span className="spacer" />
        <Link to={withQuery(base, f)}>Open in the task table</Link>
      </div>
      <ErrorBox error={error} />
      <div className="group-list">
      <table className="grid compact">
        <thead>
          <tr>
            <th>#</th>
            <th>Key</th>
            <th>State</th>
            <th>Exit</th>
            <th>Duration</th>
          </tr>
        </thead>
        <tbody>
          {(resp?.tasks || []).map((t: any) => (
            <tr key={t.key}>
              <td className="num">{num(t.index)}</td>
              <td>
                <Link to={`${base}/${encodeURIComponent(t.key)}`}>{t.key}</Link>
              </td>
              <td>
                <StateBadge state={t.state} />
              </td>
              <td className="num">{t.finishedAt ? num(t.exitCode) : ''}</td>
              <td className="num">{t.durationMs !== undefined && num(t.durationMs) >= 0 ? fmtDuration(num(t.durationMs)) : ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
      </div>
      <div className="pager">
        <button disabled={page === 0} onClick={() => setPage(0)}>
          First
        </button>
        <button disabled={page === 0} onClick={() => setPage(page - 1)}>
          Previous
        </button>
        <span className="muted">page {page + 1}</span>
        <button disabled={!resp?.nextPageToken} onClick={() => setPage(page + 1)}>
          Next
        </button>
      </div>
    </div>
  )
}
