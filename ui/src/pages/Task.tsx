// One task: its attempts, the live log, the repro command and why it is
// not running.
import { useEffect, useRef, useState } from 'react'
import { call, watch } from '../api'
import { Link, navigate, withQuery } from '../router'
import { ErrorBox, fmtBytes, fmtTime, num, shellQuote, span, StateBadge, TERMINAL_TASK, useAsync } from '../util'
import { LogView } from './LogView'
import { WhyPanel } from './Why'

export function TaskPage({ jobId, taskKey, query }: { jobId: string; taskKey: string; query: URLSearchParams }) {
  const attempt = Number(query.get('attempt') || 0) || 0
  const { data, error, reload } = useAsync((signal) => call('JobService', 'GetTask', { jobId, key: taskKey }, signal), [jobId, taskKey])
  const task = data?.task
  const attempts: any[] = data?.attempts || []
  const terminal = task ? TERMINAL_TASK.has(task.state) : false

  // While the task has not ended, the job's stream says when something
  // changed; the task is read again then, at most every 5 s.
  const reloadRef = useRef(reload)
  reloadRef.current = reload
  useEffect(() => {
    if (!task || terminal) return
    const ctl = new AbortController()
    let last = Date.now()
    let timer: ReturnType<typeof setTimeout> | undefined
    watch('JobService', 'WatchJob', { jobId }, () => {
      if (timer) return
      timer = setTimeout(() => {
        timer = undefined
        last = Date.now()
        reloadRef.current()
      }, Math.max(0, 5000 - (Date.now() - last)))
    }, ctl.signal)
    return () => {
      ctl.abort()
      clearTimeout(timer)
    }
  }, [jobId, task?.state, terminal]) // eslint-disable-line react-hooks/exhaustive-deps

  const jobLink = `/jobs/${encodeURIComponent(jobId)}`
  const here = `${jobLink}/tasks/${encodeURIComponent(taskKey)}`
  if (!task) {
    return (
      <div>
        <h1>Task {taskKey}</h1>
        <ErrorBox error={error} />
        {!error ? <div className="muted">Loading…</div> : null}
      </div>
    )
  }
  const latest = attempts.length ? Math.max(...attempts.map((a) => num(a.number))) : 0
  const shown = attempt || latest
  const shownAttempt = attempts.find((a) => num(a.number) === shown)
  const logRunning = shownAttempt ? shownAttempt.state === 'running' : !terminal

  return (
    <div>
      <div className="title-row">
        <h1>{task.key}</h1>
        <StateBadge state={task.state} testid="task-state" />
        <span className="muted">
          of job <Link to={jobLink}>{jobId}</Link> · index {num(task.index)} · <Link to={`${jobLink}/tasks`}>all tasks</Link>
        </span>
      </div>
      <ErrorBox error={error} />
      <dl className="facts">
        <dt>Command</dt>
        <dd>
          <code>{(task.command || []).map(shellQuote).join(' ')}</code>
        </dd>
        <dt>Tier</dt>
        <dd>{task.tier || '—'}</dd>
        <dt>Retries</dt>
        <dd>{num(task.retries)}</dd>
        {task.timeoutMs ? (
          <>
            <dt>Timeout</dt>
            <dd>{num(task.timeoutMs) / 1000} s</dd>
          </>
        ) : null}
        {task.after?.length ? (
          <>
            <dt>After</dt>
            <dd>{task.after.length > 20 ? `${task.after.slice(0, 20).join(', ')} and ${task.after.length - 20} more` : task.after.join(', ')}</dd>
          </>
        ) : null}
        {task.secretEnvNames?.length ? (
          <>
            <dt>Secret env</dt>
            <dd>{task.secretEnvNames.join(', ')}</dd>
          </>
        ) : null}
      </dl>

      <section className="panel">
        <h2>Reproduce</h2>
        <Repro command={`haul task repro ${shellQuote(jobId)} ${shellQuote(task.key)}`} />
      </section>

      {!terminal && task.state !== 'running' ? (
        <section className="panel">
          <h2>Why is it not running?</h2>
          <WhyPanel jobId={jobId} taskKey={task.key} refresh={task.state} />
        </section>
      ) : (
        <section className="panel">
          <h2>Why is it not running?</h2>
          <div data-testid="why" className="why muted">
            {task.state === 'running' ? 'It is running.' : `It has ended (${task.state}${task.reason ? ', ' + task.reason : ''}).`}
          </div>
        </section>
      )}

      <section className="panel">
        <h2>Attempts</h2>
        <table className="grid compact" data-testid="attempts-table">
          <thead>
            <tr>
              <th>#</th>
              <th>State</th>
              <th>Exit</th>
              <th>Reason</th>
              <th>Tier</th>
              <th>Worker</th>
              <th>Started</th>
              <th>Ran</th>
              <th>CPU (user+sys)</th>
              <th>Peak memory / request</th>
              <th>Message</th>
            </tr>
          </thead>
          <tbody>
            {attempts.map((a) => {
              const n = num(a.number)
              const ended = !!a.finishedAt
              return (
                <tr
                  key={n}
                  data-testid="attempt-row"
                  className={n === shown ? 'selected clickable' : 'clickable'}
                  onClick={() => navigate(withQuery(here, { attempt: String(n) }), true)}
                >
                  <td className="num">{n}</td>
                  <td>
                    <StateBadge state={a.state} />
                  </td>
                  <td className="num">{a.signal ? a.signal : ended ? num(a.exitCode) : ''}</td>
                  <td>
                    {a.reason || ''}
                    {a.oom ? ' (OOM)' : ''}
                  </td>
                  <td>{a.tier || ''}</td>
                  <td className="ellipsis">{a.workerId || ''}</td>
                  <td>{fmtTime(a.startedAt)}</td>
                  <td>{span(a.startedAt, a.finishedAt)}</td>
                  <td className="num">
                    {(num(a.cpuUserSeconds) + num(a.cpuSystemSeconds)).toFixed(1)} s
                    {a.cpuRequest ? <span className="muted"> / {num(a.cpuRequest)} CPU</span> : null}
                  </td>
                  <td className="num">
                    {fmtBytes(num(a.peakRssBytes))}
                    {a.memoryRequestBytes ? <span className="muted"> / {fmtBytes(num(a.memoryRequestBytes))}</span> : null}
                  </td>
                  <td className="small">{a.message || ''}</td>
                </tr>
              )
            })}
            {!attempts.length ? (
              <tr>
                <td colSpan={11} className="muted">
                  {terminal ? 'No attempt: it ended before it started.' : 'No attempt yet.'}
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      </section>

      <section className="panel">
        <h2>Log{shown ? ` of attempt ${shown}` : ''}</h2>
        {attempts.length || task.state === 'running' ? (
          <LogView key={`${task.key}#${attempt}`} jobId={jobId} taskKey={task.key} attempt={attempt} running={logRunning} onEnd={reload} />
        ) : (
          <div className="muted">No log: the task has not started.</div>
        )}
      </section>
    </div>
  )
}

function Repro({ command }: { command: string }) {
  const ref = useRef<HTMLElement>(null)
  const [copied, setCopied] = useState('')
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(command)
      setCopied('Copied')
    } catch {
      // No clipboard (an insecure origin, or denied): select the text so
      // that the user can copy it.
      const sel = window.getSelection()
      if (sel && ref.current) {
        const range = document.createRange()
        range.selectNodeContents(ref.current)
        sel.removeAllRanges()
        sel.addRange(range)
      }
      setCopied('Selected: press Ctrl+C')
    }
    setTimeout(() => setCopied(''), 3000)
  }
  return (
    <div className="repro">
      <code ref={ref} data-testid="repro-command">
        {command}
      </code>
      <button data-testid="repro-copy" onClick={copy}>
        Copy
      </button>
      <span className="muted small">{copied}</span>
    </div>
  )
}
