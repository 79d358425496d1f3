// What keeps a job's tasks, or one task, from running now.
import { call } from '../api'
import { ErrorBox, fmtInt, fmtTime, num, useAsync } from '../util'

export function WhyPanel({ jobId, taskKey, refresh = "" }: { jobId: string; taskKey: string; refresh?: string }) {
  const { data, error, loading, reload } = useAsync(
    (signal) => call('JobService', 'Why', { jobId, taskKey: taskKey || undefined }, signal),
    [jobId, taskKey, refresh],
  )
  const blockers: any[] = data?.blockers || []
  return (
    <div data-testid="why" className="why">
      <ErrorBox error={error} />
      {data && !blockers.length ? (
        <div className="muted">Nothing holds it back{data.state ? ` (state: ${data.state})` : ''}.</div>
      ) : null}
      {blockers.length ? (
        <ul>
          {blockers.map((b, i) => (
            <li key={i}>
              <strong>{b.kind}</strong>: {b.detail}
              {b.tasks && num(b.tasks) ? <span className="muted"> · {fmtInt(num(b.tasks))} tasks</span> : null}
              {b.resource ? (
                <span className="muted">
                  {' '}
                  · {b.resource} {fmtInt(num(b.used))} of {fmtInt(num(b.limit))}
                </span>
              ) : null}
              {b.parents?.length ? <div className="muted small">waiting for: {b.parents.join(', ')}</div> : null}
              {b.until ? <div className="muted small">until {fmtTime(b.until)}</div> : null}
              {b.since ? <div className="muted small">since {fmtTime(b.since)}</div> : null}
              {b.clusters?.length ? <div className="muted small">clusters: {b.clusters.join(', ')}</div> : null}
            </li>
          ))}
        </ul>
      ) : null}
      <button className="link" onClick={reload} disabled={loading}>
        {loading ? 'Asking…' : 'Ask again'}
      </button>
    </div>
  )
}
