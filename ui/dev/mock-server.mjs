// A mock haul gateway for trying the UI without one: it serves the built
// UI (internal/ui/dist) and fakes the Connect JSON API and the /ui/
// session endpoints with one 1,000,000-task job whose counts move while
// WatchJob streams, and a 100 MB log for task sim-1 (1 MB for others).
//
//   npm run build && node dev/mock-server.mjs [dist] [port]   (8090)
//
// Log in with the token haul_good. Not part of the build.
import http from 'node:http'
import fs from 'node:fs'
import path from 'node:path'
const DIST = path.resolve(process.argv[2] || new URL('../../internal/ui/dist', import.meta.url).pathname)
const PORT = +(process.argv[3] || 8090)
const N = 1_000_000
const states = ['blocked', 'queued', 'running', 'succeeded', 'failed', 'upstream_failed', 'cancelled']
let tick = 0
let jobState = 'running'
function taskState(i) { const d = Math.min(N, 300000 + tick * 5000); if (i < d) return i % 97 === 0 ? 'failed' : 'succeeded'; if (i < d + 100) return 'running'; return 'queued' }
function countsOf(lo, hi) {
  const c = { blocked: 0, queued: 0, running: 0, succeeded: 0, failed: 0, upstreamFailed: 0, cancelled: 0 }
  const d = Math.min(N, 300000 + tick * 5000)
  const a = Math.max(lo, Math.min(hi, d))
  const done = a - lo
  c.failed = Math.floor(done / 97); c.succeeded = done - c.failed
  const r = Math.max(0, Math.min(hi, d + 100) - Math.max(lo, d)); c.running = r
  c.queued = hi - lo - done - r
  for (const k in c) c[k] = String(c[k])
  return c
}
const groups = [
  { name: 'prepare', firstIndex: 0, taskCount: '1', parents: [] },
  { name: 'sim-{i}', firstIndex: 1, taskCount: String(N - 3), parents: [0] },
  { name: 'reduce', firstIndex: N - 2, taskCount: '1', parents: [1] },
  { name: 'report', firstIndex: N - 1, taskCount: '1', parents: [2, 0] },
]
function graph() { return { groups: groups.map((g, i) => ({ ...g, counts: countsOf(g.firstIndex, g.firstIndex + +g.taskCount), critical: i !== 0 ? true : undefined })), criticalPath: [1, 2, 3] } }
function job(id = 'job-1') {
  return { id, name: 'big-sim', namespace: 'team-a', labels: { env: 'prod' }, state: jobState, taskCount: String(N), counts: countsOf(0, N),
    createdAt: '2026-01-01T10:00:00Z', startedAt: '2026-01-01T10:00:01Z', estimatedCostUsd: 12.5, workerSeconds: 36000,
    usage: { memoryRequestedByteSeconds: 1e15, memoryUsedByteSeconds: 4e14, cpuRequestedSeconds: 72000, cpuUsedSeconds: 50000, peakRssBytes: '2000000000', oomAttempts: '3' },
    submittedBy: 'alice', workers: [{ name: 'default', cpu: 1, memoryBytes: '2147483648' }] }
}
function task(i) {
  const s = taskState(i)
  const key = i === 0 ? 'prepare' : i === N - 2 ? 'reduce' : i === N - 1 ? 'report' : `sim-${i - 1}`
  const t = { jobId: 'job-1', index: i || undefined, key, state: s, command: ['python', 'sim.py', String(i)], tier: 'default', attempts: 1, durationMs: String((i * 7919) % 100000), peakRssBytes: String((i * 104729) % 2e9) }
  if (s === 'succeeded' || s === 'failed') { t.finishedAt = '2026-01-01T10:05:00Z'; t.exitCode = s === 'failed' ? 1 : undefined; t.reason = s === 'failed' ? 'exit' : undefined }
  return t
}
function keyIndex(key) { if (key === 'prepare') return 0; if (key === 'reduce') return N - 2; if (key === 'report') return N - 1; const m = key.match(/^sim-(\d+)$/); return m ? +m[1] + 1 : -1 }
let listCalls = 0
function listTasks(r) {
  listCalls++
  const size = Math.min(r.pageSize || 100, 1000)
  let i = r.pageToken ? +r.pageToken : (r.firstIndex || 0)
  const end = r.endIndex || N
  const out = []
  while (i < end && out.length < size) { const t = task(i); i++; if (r.states && !r.states.includes(t.state)) { if (r.states[0] === 'running' && i < 300000) i = 300000 + tick * 5000; continue } if (r.keyGlob && !new RegExp('^' + r.keyGlob.replace(/\*/g, '.*') + '$').test(t.key)) continue; out.push(t) }
  return { tasks: out, nextPageToken: i < end ? String(i) : undefined }
}
const clusters = [{ cluster: { name: 'east', state: 'enabled', capacity: { milliCpu: '64000', memoryBytes: '274877906944' }, pricePerCpuHour: 0.04, pricePerGibHour: 0.005 }, held: { milliCpu: '12000', memoryBytes: '1e10' }, workers: '12' }]
const unary = {
  'JobService/ListJobs': (r) => ({ jobs: r.pageToken ? [job('job-2')] : [job()], nextPageToken: r.pageToken ? undefined : 'p2' }),
  'JobService/GetJob': (r) => ({ job: job(r.jobId) }),
  'JobService/GetJobGraph': () => graph(),
  'JobService/CancelJob': () => { jobState = 'cancelled'; return { job: job() } },
  'JobService/ListTasks': listTasks,
  'JobService/GetTask': (r) => { const i = keyIndex(r.key); if (i < 0) throw ['not_found', `task ${r.key} not found`]; const t = task(i); return { task: t, attempts: [{ number: 1, tier: 'default', workerId: 'w-123', state: t.state === 'queued' ? 'lost' : t.state, exitCode: t.exitCode, reason: t.reason, startedAt: '2026-01-01T10:00:00Z', finishedAt: t.finishedAt, cpuUserSeconds: 12.3, peakRssBytes: '123456789', memoryRequestBytes: '2147483648', cpuRequest: 1 }] } },
  'JobService/Why': (r) => ({ jobId: r.jobId, state: 'queued', blockers: [{ kind: 'quota', detail: 'team-a is at its CPU quota', resource: 'cpu', used: '64000', limit: '64000', tier: -1, tasks: '699900' }] }),
  'AdminService/GetQuotas': () => ({ teams: [{ team: 'team-a', quota: { team: 'team-a', lend: true }, resources: [{ resource: 'cpu', limit: '64000', reserved: '12000', used: '12000' }, { resource: 'memory', limit: '274877906944', used: '10000000000' }], workers: '12' }] }),
  'AdminService/GetCost': () => ({ teams: [{ team: 'team-a', costUsd: 12.5, workerSeconds: 36000, jobs: '3' }, { team: 'team-b', costUsd: 1.5, jobs: '1' }], totalCostUsd: 14, totalWorkerSeconds: 36000, totalJobs: '4', complete: true }),
  'AdminService/ListClusters': () => ({ clusters }),
  'AdminService/SetClusterState': (r) => { clusters[0].cluster.state = r.state; return { cluster: clusters[0].cluster } },
}
function env(flag, obj) { const j = Buffer.from(JSON.stringify(obj)); const h = Buffer.alloc(5); h[0] = flag; h.writeUInt32BE(j.length, 1); return Buffer.concat([h, j]) }
const streams = {
  'JobService/WatchJobs': async (r, send, alive) => { while (alive()) { send(unary['JobService/ListJobs'](r)); await sleep(2000) } },
  'JobService/WatchJob': async (r, send, alive) => { send({ job: job(r.jobId), graph: r.groups ? graph() : undefined }); let n = 0; while (alive() && jobState === 'running') { await sleep(300); tick++; send({ job: job(r.jobId), graph: r.groups && ++n % 7 === 0 ? graph() : undefined }) } },
  'JobService/GetLogs': async (r, send, alive) => {
    const mb = r.key === 'sim-1' ? 100 : 1
    let line = 0
    send({ attempt: 1 })
    for (let sent = 0; sent < mb * 1024 * 1024 && alive();) {
      let s = ''
      while (s.length < 256 * 1024) { s += `line ${++line}: the quick brown fox ${line % 10 === 0 ? 'ERROR something' : 'jumps'} over the lazy dog ${'x'.repeat(line % 40)}\n` }
      sent += s.length
      send({ chunks: [{ stream: line % 3 ? 'LOG_STREAM_STDOUT' : 'LOG_STREAM_STDERR', unixNanos: '1', data: Buffer.from(s).toString('base64') }] })
      await sleep(5)
    }
    if (r.follow) { for (let k = 0; k < 20 && alive(); k++) { await sleep(500); send({ chunks: [{ stream: 'LOG_STREAM_STDOUT', data: Buffer.from(`follow line ${k}\n`).toString('base64') }] }) } }
  },
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
function authed(req) { return /haul_session=ok/.test(req.headers.cookie || '') }
http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x')
  const body = await new Promise((r) => { const c = []; req.on('data', (d) => c.push(d)); req.on('end', () => r(Buffer.concat(c))) })
  const p = url.pathname
  if (p === '/ui/config') return json(res, 200, { oidc: true })
  if (p === '/ui/session') return authed(req) ? json(res, 200, { subject: 'alice', via: 'token', teams: { 'team-a': 'admin' }, platformAdmin: true }) : json(res, 401, { error: 'not logged in' })
  if (p === '/ui/login') { const t = JSON.parse(body || '{}').token; if (t !== 'haul_good') return json(res, 401, { error: 'token not valid' }); res.writeHead(204, { 'Set-Cookie': ['haul_session=ok; Path=/; HttpOnly', 'haul_csrf=csrf123; Path=/'] }); return res.end() }
  if (p === '/ui/logout') { res.writeHead(204, { 'Set-Cookie': ['haul_session=; Path=/; Max-Age=0', 'haul_csrf=; Path=/; Max-Age=0'] }); return res.end() }
  if (p.startsWith('/ui/logs/')) { res.writeHead(200, { 'Content-Type': 'text/plain' }); return res.end('whole log\n') }
  const m = p.match(/^\/haul\.api\.v1\.(\w+\/\w+)$/)
  if (m) {
    if (!authed(req)) return json(res, 401, { code: 'unauthenticated', message: 'log in' })
    if (req.headers['x-haul-csrf'] !== 'csrf123') return json(res, 403, { code: 'permission_denied', message: 'bad csrf' })
    if (streams[m[1]]) {
      if (req.headers['content-type'] !== 'application/connect+json') return json(res, 415, { code: 'unknown', message: 'ct' })
      const r = JSON.parse(body.subarray(5).toString() || '{}')
      res.writeHead(200, { 'Content-Type': 'application/connect+json' })
      let open = true; req.on('close', () => (open = false)); res.on('close', () => (open = false))
      await streams[m[1]](r, (msg) => res.write(env(0, msg)), () => open)
      return res.end(env(2, {}))
    }
    if (unary[m[1]]) { try { return json(res, 200, unary[m[1]](JSON.parse(body || '{}'))) } catch (e) { return json(res, 404, { code: e[0], message: e[1] }) } }
    return json(res, 404, { code: 'unimplemented', message: m[1] })
  }
  if (p === '/_stats') return json(res, 200, { listCalls })
  let f = path.join(DIST, path.normalize(p))
  if (!f.startsWith(DIST) || !fs.existsSync(f) || fs.statSync(f).isDirectory()) f = path.join(DIST, 'index.html')
  res.writeHead(200, { 'Content-Type': f.endsWith('.js') ? 'text/javascript' : f.endsWith('.css') ? 'text/css' : 'text/html', 'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'" })
  fs.createReadStream(f).pipe(res)
}).listen(PORT, () => console.log('mock on', PORT))
function json(res, code, obj) { res.writeHead(code, { 'Content-Type': 'application/json' }); res.end(JSON.stringify(obj)) }
