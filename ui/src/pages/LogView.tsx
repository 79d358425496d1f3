// The live log of one attempt: GetLogs streamed into a ring of the last
// 50,000 lines, rendered virtualized, with follow, search and download.
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'react'
import { useVirtualizer } from '@tanstack/react-virtual'
import { logURL, watch } from '../api'
import { ErrorBox, fmtInt } from '../util'
import { fromBase64, LogRing } from './logring'

const LINE_HEIGHT = 18
const MAX_LINES = 50000

function escapeRegExp(s: string) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

export function LogView({
  jobId,
  taskKey,
  attempt,
  running,
  onEnd,
}: {
  jobId: string
  taskKey: string
  attempt: number
  running: boolean
  onEnd?: () => void
}) {
  const [follow, setFollow] = useState(running)
  const [streamFollow, setStreamFollow] = useState(running) // the open stream's follow flag
  const [version, setVersion] = useState(0)
  const [loaded, setLoaded] = useState(false)
  const [status, setStatus] = useState('')
  const [error, setError] = useState<unknown>(null)
  const [shownAttempt, setShownAttempt] = useState(0)
  const ring = useRef(new LogRing(MAX_LINES))
  const scroller = useRef<HTMLDivElement>(null)
  const onEndRef = useRef(onEnd)
  onEndRef.current = onEnd

  // One stream per (attempt, follow flag); a new one starts over.
  useEffect(() => {
    const ctl = new AbortController()
    ring.current = new LogRing(MAX_LINES)
    setVersion((v) => v + 1)
    setLoaded(false)
    setError(null)
    setStatus(streamFollow ? 'following…' : 'loading…')
    let timer: ReturnType<typeof setTimeout> | undefined
    let first = true
    const redraw = () => {
      if (timer) return
      timer = setTimeout(() => {
        timer = undefined
        setVersion((v) => v + 1)
      }, first ? 0 : 100)
      first = false
    }
    watch(
      'JobService',
      'GetLogs',
      { jobId, key: taskKey, attempt: attempt || undefined, follow: streamFollow || undefined },
      (m: any) => {
        if (m.attempt) setShownAttempt(m.attempt)
        for (const c of m.chunks || []) {
          if (c.data) ring.current.append(c.stream === 'LOG_STREAM_STDERR', fromBase64(c.data))
        }
        setLoaded(true)
        redraw()
      },
      ctl.signal,
      {
        onEnd: () => {
          setLoaded(true)
          setStatus('end of log')
          redraw()
          if (streamFollow) onEndRef.current?.()
        },
        onError: (e) => {
          setLoaded(true)
          setStatus('')
          setError(e)
        },
        onRetry: (e, ms) => {
          // The stream starts over from the beginning on reconnect.
          ring.current = new LogRing(MAX_LINES)
          setStatus(`${e.message}; reconnecting in ${ms / 1000}s`)
          redraw()
        },
      },
    )
    return () => {
      ctl.abort()
      clearTimeout(timer)
    }
  }, [jobId, taskKey, attempt, streamFollow])

  const r = ring.current
  const count = r.count
  const v = useVirtualizer({
    count,
    getScrollElement: () => scroller.current,
    estimateSize: () => LINE_HEIGHT,
    overscan: 30,
  })

  // Following keeps the newest line in view; otherwise the lines in view
  // stay in view as older ones drop out of the ring.
  const lastDropped = useRef(0)
  useLayoutEffect(() => {
    const el = scroller.current
    const dropped = r.dropped - lastDropped.current
    lastDropped.current = r.dropped
    if (!el) return
    if (follow) el.scrollTop = el.scrollHeight
    else if (dropped > 0 && el.scrollTop > 0) el.scrollTop = Math.max(0, el.scrollTop - dropped * LINE_HEIGHT)
  }, [follow, version, count, r])

  const toggleFollow = (on: boolean) => {
    setFollow(on)
    if (on && !streamFollow && running) setStreamFollow(true)
  }

  // Search over the loaded lines (numbers in the whole log, so that they
  // stay right as old lines drop out).
  const [query, setQuery] = useState('')
  const [cur, setCur] = useState(-1)
  const re = useMemo(() => (query ? new RegExp(escapeRegExp(query), 'i') : null), [query])
  const matches = useMemo(() => {
    if (!re) return []
    const out: number[] = []
    for (let i = 0; i < r.count; i++) if (re.test(r.line(i).text)) out.push(r.dropped + i)
    return out
  }, [re, version, r]) // eslint-disable-line react-hooks/exhaustive-deps
  const curPos = matches.indexOf(cur)
  const jump = (dir: 1 | -1) => {
    if (!matches.length) return
    let next: number
    if (dir > 0) next = matches.find((m) => m > cur) ?? matches[0]
    else next = [...matches].reverse().find((m) => m < cur) ?? matches[matches.length - 1]
    setCur(next)
    setFollow(false)
    v.scrollToIndex(next - r.dropped, { align: 'center' })
  }
  const hl = useMemo(() => (query ? new RegExp(`(${escapeRegExp(query)})`, 'gi') : null), [query])

  return (
    <div className="logbox">
      <div className="log-toolbar">
        <label>
          <input data-testid="log-follow" type="checkbox" checked={follow} onChange={(e) => toggleFollow(e.target.checked)} /> Follow
        </label>
        <input
          data-testid="log-search"
          type="search"
          placeholder="search the loaded lines"
          value={query}
          onChange={(e) => {
            setQuery(e.target.value)
            setCur(-1)
          }}
          onKeyDown={(e) => {
            if (e.key === 'Enter') {
              e.preventDefault()
              jump(e.shiftKey ? -1 : 1)
            }
          }}
        />
        <button onClick={() => jump(-1)} disabled={!matches.length} title="previous match (Shift+Enter)">
          ↑
        </button>
        <button onClick={() => jump(1)} disabled={!matches.length} title="next match (Enter)">
          ↓
        </button>
        {query ? (
          <span className="muted small" data-testid="log-search-count">
            {matches.length ? `${curPos >= 0 ? curPos + 1 : '–'} of ${fmtInt(matches.length)}` : 'no match'}
          </span>
        ) : null}
        <span className="spacer" />
        <span className="muted small">
          {shownAttempt ? `attempt ${shownAttempt} · ` : ''}
          {status}
        </span>
        <a data-testid="log-download" href={logURL(jobId, taskKey, attempt)} download>
          Download
        </a>
      </div>
      <ErrorBox error={error} />
      {r.dropped ? (
        <div className="note">
          {fmtInt(r.dropped)} earlier lines not shown; <a href={logURL(jobId, taskKey, attempt)} download>download the whole log</a>.
        </div>
      ) : null}
      <div
        ref={scroller}
        className="log-view"
        data-testid="log-view"
        data-loaded={loaded ? 'true' : undefined}
        onWheel={(e) => e.deltaY < 0 && follow && setFollow(false)}
      >
        <div style={{ height: v.getTotalSize(), position: 'relative', minWidth: '100%' }}>
          {v.getVirtualItems().map((it) => {
            const line = r.line(it.index)
            const n = r.dropped + it.index
            return (
              <div
                key={it.key}
                className={`log-line${line.stderr ? ' stderr' : ''}${n === cur ? ' current' : ''}`}
                style={{ transform: `translateY(${it.start}px)` }}
              >
                <span className="lineno">{n + 1}</span>
                {hl ? highlight(line.text, hl) : line.text}
              </div>
            )
          })}
        </div>
        {loaded && count === 0 && !error ? <div className="muted pad">The log is empty.</div> : null}
      </div>
    </div>
  )
}

function highlight(text: string, re: RegExp) {
  const parts = text.split(re)
  return parts.map((p, i) => (i % 2 ? <mark key={i}>{p}</mark> : p))
}
