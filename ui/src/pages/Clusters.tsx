// Clusters: each cluster's state, capacity and what is held there; the
// platform admins may enable, disable or drain one.
import { useState } from 'react'
import { call } from '../api'
import { useSession } from '../App'
import { ErrorBox, fmtInt, num, StateBadge, useAsync } from '../util'
import { fmtResources } from './resources'

export function ClustersPage() {
  const session = useSession()
  const admin = !!session?.platformAdmin
  const list = useAsync((signal) => call('AdminService', 'ListClusters', {}, signal), [])
  const [busy, setBusy] = useState('')
  const [error, setError] = useState<unknown>(null)

  const setState = async (name: string, state: string) => {
    setBusy(name)
    setError(null)
    try {
      await call('AdminService', 'SetClusterState', { name, state })
      list.reload()
    } catch (e) {
      setError(e)
    } finally {
      setBusy('')
    }
  }

  const rows: any[] = [...(list.data?.clusters || []), ...(list.data?.unregistered || []).map((c: any) => ({ ...c, unregistered: true }))]
  return (
    <div>
      <div className="title-row">
        <h1>Clusters</h1>
        <span className="spacer" />
        <button onClick={list.reload} disabled={list.loading}>
          Refresh
        </button>
      </div>
      <ErrorBox error={list.error} />
      <ErrorBox error={error} />
      <table className="grid" data-testid="clusters-table" data-loaded={list.data ? 'true' : undefined}>
        <thead>
          <tr>
            <th>Cluster</th>
            <th>State</th>
            <th>Capacity</th>
            <th>Held</th>
            <th>Workers</th>
            <th>Borrowed</th>
            <th>Price / hour</th>
            {admin ? <th /> : null}
          </tr>
        </thead>
        <tbody>
          {rows.map((cs) => {
            const c = cs.cluster || {}
            const state = c.state || 'enabled'
            return (
              <tr key={c.name} data-testid="cluster-row" data-cluster={c.name}>
                <td>
                  {c.name}
                  {cs.unregistered ? <span className="muted small"> (no record)</span> : null}
                </td>
                <td>{cs.unregistered ? '—' : <StateBadge state={state} />}</td>
                <td>{cs.unregistered ? '—' : fmtResources(c.capacity)}</td>
                <td>{fmtResources(cs.held)}</td>
                <td className="num">{fmtInt(num(cs.workers))}</td>
                <td>
                  {num(cs.borrowedWorkers) ? `${fmtInt(num(cs.borrowedWorkers))} workers: ${fmtResources(cs.borrowed)}` : '—'}
                </td>
                <td className="small">
                  {c.pricePerCpuHour || c.pricePerGibHour
                    ? `$${num(c.pricePerCpuHour)}/CPU · $${num(c.pricePerGibHour)}/GiB`
                    : '—'}
                  {Object.entries(c.pricePerGpuHour || {}).map(([t, p]) => ` · $${num(p)}/${t}`)}
                </td>
                {admin ? (
                  <td className="actions">
                    {!cs.unregistered ? (
                      <>
                        <button data-testid="cluster-enable" disabled={busy === c.name} onClick={() => setState(c.name, 'enabled')}>
                          Enable
                        </button>
                        <button data-testid="cluster-disable" disabled={busy === c.name} onClick={() => setState(c.name, 'disabled')}>
                          Disable
                        </button>
                        <button data-testid="cluster-drain" disabled={busy === c.name} onClick={() => setState(c.name, 'draining')}>
                          Drain
                        </button>
                      </>
                    ) : null}
                  </td>
                ) : null}
              </tr>
            )
          })}
          {list.data && !rows.length ? (
            <tr>
              <td colSpan={admin ? 8 : 7} className="muted">
                No cluster.
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>
    </div>
  )
}
