import { fmtBytes, num } from '../util'

// fmtResource shows an amount of one quota resource: "cpu" in milli-CPU,
// "memory" in bytes, "gpu/<type>" in devices.
export function fmtResource(resource: string, v: unknown): string {
  const n = num(v)
  if (resource === 'cpu') return `${+(n / 1000).toFixed(2)} CPU`
  if (resource === 'memory') return fmtBytes(n)
  return `${n} ${resource.replace(/^gpu\//, '')} GPU`
}

// fmtResources shows a Resources message.
export function fmtResources(r: any): string {
  if (!r) return '—'
  const parts = [`${+(num(r.milliCpu) / 1000).toFixed(2)} CPU`, fmtBytes(num(r.memoryBytes))]
  for (const [t, n] of Object.entries(r.gpu || {})) parts.push(`${num(n)} ${t}`)
  return parts.join(' · ')
}
