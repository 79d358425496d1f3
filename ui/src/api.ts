// The client side of haul's API: Connect unary and server-streaming calls
// in JSON, and the session endpoints under /ui/.
import { navigate } from './router'

export class ApiError extends Error {
  code: string
  constructor(code: string, message: string) {
    super(message || code)
    this.code = code
  }
}

// A network failure (no response, or a stream cut short): worth retrying.
export class NetworkError extends Error {}

function csrfToken(): string {
  const m = document.cookie.match(/(?:^|;\s*)haul_csrf=([^;]*)/)
  return m ? decodeURIComponent(m[1]) : ''
}

function headers(contentType: string): Record<string, string> {
  return {
    'Content-Type': contentType,
    'Connect-Protocol-Version': '1',
    'X-Haul-CSRF': csrfToken(),
  }
}

// Any call that finds the session gone sends the user to log in, then back.
function unauthenticated() {
  if (location.pathname !== '/login') {
    navigate('/login?next=' + encodeURIComponent(location.pathname + location.search), true)
  }
}

async function errorOf(res: Response): Promise<ApiError> {
  let body: any = {}
  try {
    body = await res.json()
  } catch {
    /* not JSON */
  }
  const code = body.code || (res.status === 401 ? 'unauthenticated' : 'http_' + res.status)
  const err = new ApiError(code, body.message || body.error || res.statusText || 'request failed')
  if (code === 'unauthenticated') unauthenticated()
  return err
}

async function post(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, { method: 'POST', credentials: 'same-origin', ...init })
  } catch (e: any) {
    if (e?.name === 'AbortError') throw e
    throw new NetworkError('cannot reach the server: ' + (e?.message || e))
  }
}

// call makes one unary call: call('JobService', 'GetJob', {jobId}).
export async function call<T = any>(service: string, method: string, req: object, signal?: AbortSignal): Promise<T> {
  const res = await post(`/haul.api.v1.${service}/${method}`, {
    headers: headers('application/json'),
    body: JSON.stringify(req),
    signal,
  })
  if (!res.ok) throw await errorOf(res)
  return res.json()
}

function envelope(msg: object): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(msg))
  const out = new Uint8Array(5 + json.length)
  new DataView(out.buffer).setUint32(1, json.length)
  out.set(json, 5)
  return out
}

// stream makes one server-streaming call, handing each message to onMsg
// as soon as its envelope is whole. It resolves when the server ends the
// stream cleanly and rejects with ApiError (the server's error),
// NetworkError (connection lost) or AbortError (signal).
export async function stream<T = any>(
  service: string,
  method: string,
  req: object,
  onMsg: (msg: T) => void,
  signal: AbortSignal,
): Promise<void> {
  const res = await post(`/haul.api.v1.${service}/${method}`, {
    headers: headers('application/connect+json'),
    body: envelope(req) as BodyInit,
    signal,
  })
  if (!res.ok) throw await errorOf(res)
  if (!res.body) throw new NetworkError('empty response')
  const reader = res.body.getReader()
  const text = new TextDecoder()
  // Bytes not yet parsed are kept as received and joined only once the
  // next envelope is whole, so a large message is copied once.
  let parts: Uint8Array[] = []
  let have = 0
  let need = 5 // bytes needed before parsing again: a header, or a whole envelope
  for (;;) {
    let chunk: ReadableStreamReadResult<Uint8Array>
    try {
      chunk = await reader.read()
    } catch (e: any) {
      if (e?.name === 'AbortError') throw e
      throw new NetworkError('connection lost: ' + (e?.message || e))
    }
    if (chunk.done) throw new NetworkError('the stream ended early')
    parts.push(chunk.value)
    have += chunk.value.length
    if (have < need) continue
    const buf = parts.length === 1 ? parts[0] : concat(parts, have)
    let off = 0
    need = 5
    while (buf.length - off >= 5) {
      const flags = buf[off]
      const len = new DataView(buf.buffer, buf.byteOffset + off + 1, 4).getUint32(0)
      if (buf.length - off - 5 < len) {
        need = 5 + len
        break
      }
      const payload = buf.subarray(off + 5, off + 5 + len)
      off += 5 + len
      const msg = len ? JSON.parse(text.decode(payload)) : {}
      if (flags & 2) {
        reader.cancel().catch(() => {})
        if (msg.error) {
          const err = new ApiError(msg.error.code || 'unknown', msg.error.message || '')
          if (err.code === 'unauthenticated') unauthenticated()
          throw err
        }
        return
      }
      onMsg(msg as T)
    }
    parts = off === buf.length ? [] : [buf.subarray(off)]
    have = buf.length - off
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total)
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

const retryable = new Set(['unavailable', 'deadline_exceeded', 'aborted', 'resource_exhausted'])

// watch keeps a stream open: it reconnects after a network error (or a
// transient server error) with backoff, 1 s doubling to 30 s, and stops
// when the server ends the stream cleanly (the job is terminal), on any
// other server error (reported to onError), or when signal aborts.
// onRetry is told of each reconnect (with why), to show or to reset state.
export async function watch<T = any>(
  service: string,
  method: string,
  req: object | (() => object),
  onMsg: (msg: T) => void,
  signal: AbortSignal,
  opts: { onError?: (e: Error) => void; onRetry?: (e: Error, delayMs: number) => void; onEnd?: () => void } = {},
): Promise<void> {
  let delay = 1000
  while (!signal.aborted) {
    try {
      await stream<T>(service, method, typeof req === 'function' ? req() : req, (m) => {
        delay = 1000 // the connection works: start over next time
        onMsg(m)
      }, signal)
      opts.onEnd?.()
      return
    } catch (e: any) {
      if (signal.aborted || e?.name === 'AbortError') return
      const again = e instanceof NetworkError || (e instanceof ApiError && retryable.has(e.code))
      if (!again) {
        opts.onError?.(e)
        return
      }
      opts.onRetry?.(e, delay)
      await sleep(delay, signal)
      delay = Math.min(delay * 2, 30000)
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => {
      clearTimeout(t)
      resolve()
    }, { once: true })
  })
}

// ---- session endpoints ----

export interface Session {
  subject: string
  via: string
  teams: Record<string, string>
  platformAdmin: boolean
}

export async function getSession(): Promise<Session | null> {
  const res = await fetch('/ui/session', { credentials: 'same-origin' })
  if (res.status === 401) return null
  if (!res.ok) throw await errorOf(res)
  const s = await res.json()
  return { subject: s.subject || '', via: s.via || '', teams: s.teams || {}, platformAdmin: !!s.platformAdmin }
}

export async function getConfig(): Promise<{ oidc: boolean }> {
  const res = await fetch('/ui/config', { credentials: 'same-origin' })
  if (!res.ok) return { oidc: false }
  const c = await res.json()
  return { oidc: !!c.oidc }
}

export async function login(token: string): Promise<void> {
  const res = await fetch('/ui/login', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ token }),
  })
  if (res.ok) return
  let msg = res.status === 401 ? 'invalid token' : res.statusText
  try {
    const body = await res.json()
    msg = body.error || body.message || msg
  } catch {
    /* not JSON */
  }
  throw new ApiError(res.status === 401 ? 'unauthenticated' : 'http_' + res.status, msg)
}

export async function logout(): Promise<void> {
  const res = await fetch('/ui/logout', { method: 'POST', credentials: 'same-origin', headers: { 'X-Haul-CSRF': csrfToken() } })
  if (!res.ok && res.status !== 401) throw new ApiError('http_' + res.status, 'log out failed: ' + res.statusText)
}

export function logURL(jobId: string, key: string, attempt: number): string {
  return `/ui/logs/${encodeURIComponent(jobId)}/${encodeURIComponent(key)}/${attempt}`
}
