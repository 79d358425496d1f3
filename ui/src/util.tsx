// Shared helpers: proto3 JSON defaults, formatting, small components.
import { useEffect, useRef, useState } from 'react'

export const TASK_STATES = ['blocked', 'queued', 'running', 'succeeded', 'failed', 'upstream_failed', 'cancelled'] as const
export const JOB_STATES = ['pending', 'running', 'succeeded', 'failed', 'cancelled']
export const TERMINAL_JOB = new Set(['succeeded', 'failed', 'cancelled'])
export const TERMINAL_TASK = new Set(['succeeded', 'failed', 'upstream_failed', 'cancelled'])

// proto3 JSON leaves zero values out and writes int64 as strings.
export function num(v: unknown): number {
  if (v === undefined || v === null || v === '') return 0
  const n = typeof v === 'number' ? v : Number(v)
  return Number.isFinite(n) ? n : 0
}

export type Counts = Record<(typeof TASK_STATES)[number], number>

export function counts(c: any): Counts {
  const out = {} as Counts
  for (const s of TASK_STATES) out[s] = num(c?.[s === 'upstream_failed' ? 'upstreamFailed' : s] ?? c?.[s])
  return out
}

export function doneCount(c: Counts): number {
  return c.succeeded + c.failed + c.upstream_failed + c.cancelled
}

export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US')
}

const compact = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 })

// fmtCompact writes 1234567 as 1.2M.
export function fmtCompact(n: number): string {
  return compact.format(n)
}

export function fmtTime(ts?: string): string {
  if (!ts) return '—'
  const d = new Date(ts)
  if (isNaN(d.getTime())) return ts
  const p = (x: number) => String(x).padStart(2, '0')
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`
}

export function fmtDuration(ms: number): string {
  if (!(ms >= 0)) return '—'
  if (ms < 1000) return `${Math.round(ms)} ms`
  let s = Math.round(ms / 1000)
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  s %= 60
  if (h) return `${h}h ${m}m`
  if (m) return `${m}m ${s}s`
  return `${s}s`
}

export function span(start?: string, end?: string): string {
  if (!start) return '—'
  const a = Date.parse(start)
  const b = end ? Date.parse(end) : Date.now()
  return fmtDuration(b - a)
}

export function fmtBytes(n: number): string {
  if (!n) return '0 B'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let i = 0
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${n.toFixed(i && Math.abs(n) < 10 ? 1 : 0)} ${units[i]}`
}

export function fmtUSD(n: number): string {
  return '$' + n.toFixed(n >= 100 ? 0 : 2)
}

export function pct(part: number, whole: number): string {
  return whole > 0 ? `${((100 * part) / whole).toFixed(part === whole ? 0 : 1)}%` : '—'
}

// shellQuote quotes s for a POSIX shell when it needs it.
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`
}

export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null
  const msg = error instanceof Error ? error.message : String(error)
  return (
    <div className="error" role="alert">
      {msg}
    </div>
  )
}

export function StateBadge({ state, testid }: { state: string; testid?: string }) {
  return (
    <span className={`badge st-${state || 'unknown'}`} data-testid={testid}>
      {state || 'unknown'}
    </span>
  )
}

// CountsBar draws task counts as one stacked bar.
export function CountsBar({ c, total, width = 160 }: { c: Counts; total?: number; width?: number }) {
  const all = total || TASK_STATES.reduce((s, k) => s + c[k], 0)
  return (
    <div className="countsbar" style={{ width }} title={TASK_STATES.filter((s) => c[s]).map((s) => `${s}: ${fmtInt(c[s])}`).join('\n')}>
      {all > 0 &&
        TASK_STATES.map((s) => (c[s] ? <div key={s} className={`seg st-${s}`} style={{ width: `${(100 * c[s]) / all}%` }} /> : null))}
    </div>
  )
}

// useAsync runs f when deps change and keeps its latest result; a stale
// call's answer is ignored.
export function useAsync<T>(f: (signal: AbortSignal) => Promise<T>, deps: unknown[]) {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true })
  const [tick, setTick] = useState(0)
  useEffect(() => {
    const ctl = new AbortController()
    setState((s) => ({ data: s.data, loading: true }))
    f(ctl.signal).then(
      (data) => !ctl.signal.aborted && setState({ data, loading: false }),
      (error) => !ctl.signal.aborted && setState({ error, loading: false }),
    )
    return () => ctl.abort()
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick])
  return { ...state, reload: () => setTick((t) => t + 1) }
}

// ConfirmDialog asks before doing something that cannot be undone.
export function ConfirmDialog({ text, okLabel, onOk, onCancel }: { text: string; okLabel: string; onOk: () => void; onCancel: () => void }) {
  const ok = useRef<HTMLButtonElement>(null)
  useEffect(() => {
    ok.current?.focus()
    const onKey = (e: KeyboardEvent) => e.key === 'Escape' && onCancel()
    window.addEventListener('keydown', onKey)
    return () => window.removeEventListener('keydown', onKey)
  }, [onCancel])
  return (
    <div className="modal-backdrop">
      <div className="modal" role="dialog" aria-modal="true" data-testid="confirm-dialog">
        <p>{text}</p>
        <div className="modal-buttons">
          <button data-testid="confirm-cancel" onClick={onCancel}>
            Keep running
          </button>
          <button ref={ok} className="danger" data-testid="confirm-ok" onClick={onOk}>
            {okLabel}
          </button>
        </div>
      </div>
    </div>
  )
}
