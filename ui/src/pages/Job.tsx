// The job page: state, progress and histogram from WatchJob (first paint
// does not wait for the graph), the group graph from the same stream (or
// GetJobGraph when the stream sends none), cost, usage, and Cancel.
import { useCallback, useEffect, useRef, useState } from 'react'
import { call, watch } from '../api'
import { Link, withQuery } from '../router'
import {
  ConfirmDialog, counts, doneCount, ErrorBox, fmtBytes, fmtInt, fmtTime, fmtUSD, num, pct, span, StateBadge,
  TASK_STATES, TERMINAL_JOB,
} from '../util'
import { JobGraph } from './Graph'
import { GroupTasks } from './GroupTasks'
import { WhyPanel } from './Why'

export function JobPage({ jobId }: { jobId: string }) {
  const [job, setJob] = useState<any>(null)
  const [graph, setGraph] = useState<any>(null)
  const [error, setError] = useState<unknown>(null)
  const [note, setNote] = useState('')
  const [selected, setSelected] = useState<number | null>(null)
  const [confirming, setConfirming] = useState(false)
  const [cancelError, setCancelError] = useState<unknown>(null)
  const gotGraph = useRef(false)

  useEffect(() => {
    const ctl = new AbortController()
    gotGraph.current = false
    // A fallback for a server that sends no graph on the stream soon.
    const fetchGraph = () => {
      if (gotGraph.current || ctl.signal.aborted) return
      call('JobService', 'GetJobGraph', { jobId }, ctl.signal).then(
        (g) => {
          if (!gotGraph.current) setGraph(g)
        },
        (e) => !ctl.signal.aborted && setError(e),
      )
    }
    let timer: ReturnType<typeof setTimeout> | undefined
    watch(
      'JobService',
      'WatchJob',
      { jobId, groups: true },
      (m: any) => {
        if (m.job) setJob(m.job)
        if (m.graph) {
          gotGraph.current = true
          setGraph(m.graph)
        } else if (!timer && !gotGraph.current) {
          timer = setTimeout(fetchGraph, 3000)
        }
        setNote('')
      },
      ctl.signal,
      {
        onError: setError,
        onRetry: (e, ms) => setNote(`${e.message}; reconnecting in ${ms / 1000}s`),
        onEnd: fetchGraph,
      },
    )
    return () => {
      ctl.abort()
      clearTimeout(timer)
    }
  }, [jobId])

  const onSelect = useCallback((i: number | null) => setSelected(i), [])

  const cancel = async () => {
    setConfirming(false)
    setCancelError(null)
    try {
      const r = await call('JobService', 'CancelJob', { jobId })
      if (r.job) setJob(r.job)
    } catch (e) {
      setCancelError(e)
    }
  }

  if (!job) {
    return (
      <div>
        <h1>Job {jobId}</h1>
        <ErrorBox error={error} />
        {!error ? <div className="muted">Loading…</div> : null}
      </div>
    )
  }

  const c = counts(job.counts)
  const total = num(job.taskCount)
  const done = doneCount(c)
  const terminal = TERMINAL_JOB.has(job.state)
  const groups: any[] = graph?.groups || []
  const sel = selected !== null ? groups[selected] : null
  const tasksLink = `/jobs/${encodeURIComponent(jobId)}/tasks`

  return (
    <div>
      <div className="title-row">
        <h1>{job.name || job.id}</h1>
        <StateBadge state={job.state} testid="job-state" />
        {job.cancelRequested && !terminal ? <span className="muted">cancel requested</span> : null}
        <span className="spacer" />
        <Link to={tasksLink} data-testid="job-tasks-link">
          Tasks
        </Link>
        {!terminal ? (
          <button className="danger" data-testid="job-cancel" disabled={job.cancelRequested} onClick={() => setConfirming(true)}>
            Cancel job
          </button>
        ) : null}
      </div>
      <ErrorBox error={error} />
      <ErrorBox error={cancelError} />
      {note ? <div className="note">{note}</div> : null}
      {confirming ? (
        <ConfirmDialog
          text={`Cancel job ${job.name || job.id}? Its ${fmtInt(total - done)} unfinished tasks will be cancelled (running ones killed).`}
          okLabel="Cancel job"
          onOk={cancel}
          onCancel={() => setConfirming(false)}
        />
      ) : null}

      <dl className="facts">
        <dt>ID</dt>
        <dd>{job.id}</dd>
        <dt>Team</dt>
        <dd>{job.namespace || '—'}</dd>
        <dt>Submitted by</dt>
        <dd>{job.submittedBy || '—'}</dd>
        <dt>Created</dt>
        <dd>{fmtTime(job.createdAt)}</dd>
        <dt>Started</dt>
        <dd>{fmtTime(job.startedAt)}</dd>
        <dt>Duration</dt>
        <dd>{span(job.startedAt, job.finishedAt)}</dd>
        {Object.keys(job.labels || {}).length ? (
          <>
            <dt>Labels</dt>
            <dd>
              {Object.entries(job.labels).map(([k, v]) => (
                <Link key={k} className="chip" to={withQuery('/jobs', { label: `${k}=${v}` })}>
                  {k}={String(v)}
                </Link>
              ))}
            </dd>
          </>
        ) : null}
        {job.maxWorkers ? (
          <>
            <dt>Max workers</dt>
            <dd>{job.maxWorkers}</dd>
          </>
        ) : null}
        <dt>Tiers</dt>
        <dd>
          {(job.workers || []).map((t: any) => `${t.name} (${num(t.cpu)} CPU, ${fmtBytes(num(t.memoryBytes))}${t.gpu ? `, ${t.gpu} GPU` : ''})`).join(' · ') || '—'}
        </dd>
      </dl>

      <section className="panel">
        <div data-testid="job-progress" className="progress">
          <div className="progress-text">
            {fmtInt(done)} of {fmtInt(total)} tasks done ({pct(done, total)})
          </div>
          <div className="progress-track">
            <div className="progress-fill" style={{ width: total ? `${(100 * done) / total}%` : 0 }} />
          </div>
        </div>
        <div className="histogram">
          {TASK_STATES.map((s) => (
            <Link key={s} className="hist-row" to={withQuery(tasksLink, { state: s })}>
              <span className="hist-label">{s.replace('_', ' ')}</span>
              <span className="hist-bar">
                <span className={`hist-fill st-${s}`} style={{ width: total ? `${(100 * c[s]) / total}%` : 0 }} />
              </span>
              <span className="num" data-testid={`count-${s}`}>
                {c[s]}
              </span>
            </Link>
          ))}
        </div>
      </section>

      <div className="two-col">
        <section className="panel" data-testid="job-cost">
          <h2>Cost</h2>
          <div className="big">
            {num(job.estimatedCostUsd) === 0 && num(job.workerSeconds) > 0 ? 'no price configured' : fmtUSD(num(job.estimatedCostUsd))}
          </div>
          <div className="muted">{(num(job.workerSeconds) / 3600).toFixed(1)} worker-hours</div>
        </section>
        <Usage usage={job.usage || {}} />
      </div>

      <section className="panel">
        <h2>Graph by group</h2>
        {graph ? (
          <>
            <div className="muted small">
              One node per group; click one for its tasks.
              {graph.criticalPath?.length ? ' The critical path is in orange.' : ''}
            </div>
            <JobGraph graph={graph} selected={selected} onSelect={onSelect} />
          </>
        ) : (
          <div className="muted">Loading the graph…</div>
        )}
        {sel ? <GroupTasks key={selected} jobId={jobId} group={sel} /> : null}
      </section>

      {!terminal && (c.blocked || c.queued) ? (
        <section className="panel">
          <h2>Why are tasks waiting?</h2>
          <WhyPanel jobId={jobId} taskKey="" />
        </section>
      ) : null}
    </div>
  )
}

// perTime writes an amount over time (core-seconds, byte-seconds) in the
// unit of time that suits it: per second, minute or hour.
function perTime(v: number, unit: string): string {
  if (v < 60) return `${v.toFixed(1)} ${unit}-s`
  if (v < 3600) return `${(v / 60).toFixed(1)} ${unit}-min`
  return `${(v / 3600).toFixed(1)} ${unit}-h`
}

function Usage({ usage }: { usage: any }) {
  const memReq = num(usage.memoryRequestedByteSeconds)
  const memUsed = num(usage.memoryUsedByteSeconds)
  const cpuReq = num(usage.cpuRequestedSeconds)
  const cpuUsed = num(usage.cpuUsedSeconds)
  const GiB = 1024 ** 3
  const row = (label: string, used: number, req: number, fmt: (v: number) => string) => (
    <tr>
      <td>{label}</td>
      <td className="num">{fmt(used)}</td>
      <td className="num">{fmt(req)}</td>
      <td>
        <div className="progress-track small-track" title={pct(used, req)}>
          <div className="progress-fill" style={{ width: req ? `${Math.min(100, (100 * used) / req)}%` : 0 }} />
        </div>
        {pct(used, req)}
      </td>
    </tr>
  )
  return (
    <section className="panel" data-testid="job-usage">
      <h2>Requested vs used</h2>
      <table className="grid compact">
        <thead>
          <tr>
            <th />
            <th>Used</th>
            <th>Requested</th>
            <th>Efficiency</th>
          </tr>
        </thead>
        <tbody>
          {row('CPU', cpuUsed, cpuReq, (v) => perTime(v, 'core'))}
          {row('Memory', memUsed, memReq, (v) => perTime(v / GiB, 'GiB'))}
        </tbody>
      </table>
      <div className="muted small">
        Peak RSS {fmtBytes(num(usage.peakRssBytes))} · {fmtInt(num(usage.oomAttempts))} attempts killed for memory
      </div>
    </section>
  )
}
