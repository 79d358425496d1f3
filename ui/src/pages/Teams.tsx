// Teams: each team's quota (used against limit, per resource) and what
// its jobs cost over a period.
import { useState } from 'react'
import { call } from '../api'
import { Link, withQuery } from '../router'
import { ErrorBox, fmtInt, fmtUSD, num, pct, useAsync } from '../util'
import { fmtResource } from './resources'

const PERIODS: Record<string, number> = { '24 hours': 1, '7 days': 7, '30 days': 30 }

export function TeamsPage() {
  const [period, setPeriod] = useState('24 hours')
  const quotas = useAsync((signal) => call('AdminService', 'GetQuotas', {}, signal), [])
  const cost = useAsync(
    (signal) => call('AdminService', 'GetCost', { since: new Date(Date.now() - PERIODS[period] * 86400e3).toISOString() }, signal),
    [period],
  )
  const teamsQ: any[] = quotas.data?.teams || []
  const teamsC: any[] = cost.data?.teams || []
  const names = [...new Set([...teamsQ.map((t) => t.team), ...teamsC.map((t) => t.team)])].sort()
  const loaded = !!quotas.data || !!cost.data

  return (
    <div>
      <div className="title-row">
        <h1>Teams</h1>
        <span className="spacer" />
        <label className="muted">
          cost over the last{' '}
          <select value={period} onChange={(e) => setPeriod(e.target.value)}>
            {Object.keys(PERIODS).map((p) => (
              <option key={p}>{p}</option>
            ))}
          </select>
        </label>
      </div>
      <ErrorBox error={quotas.error} />
      <ErrorBox error={cost.error} />
      {cost.data && cost.data.complete === false ? (
        <div className="note">Cost covers only jobs created since {cost.data.coveredSince} (the scan stopped at its bound).</div>
      ) : null}
      <table className="grid" data-testid="teams-table" data-loaded={loaded ? 'true' : undefined}>
        <thead>
          <tr>
            <th>Team</th>
            <th>Quota: used / limit</th>
            <th>Workers</th>
            <th>Lends</th>
            <th>Cost</th>
            <th>Worker-hours</th>
            <th>Jobs</th>
          </tr>
        </thead>
        <tbody>
          {names.map((name) => {
            const q = teamsQ.find((t) => t.team === name)
            const c = teamsC.find((t) => t.team === name)
            return (
              <tr key={name} data-testid="team-row" data-team={name}>
                <td>
                  <Link to={withQuery('/jobs', { team: name })}>{name}</Link>
                </td>
                <td>
                  {q?.resources?.length ? (
                    q.resources.map((r: any) => (
                      <div key={r.resource} className="quota-line">
                        <span className="quota-name">{r.resource}</span>
                        <span className="progress-track small-track">
                          <span
                            className="progress-fill"
                            style={{ width: num(r.limit) ? `${Math.min(100, (100 * num(r.used)) / num(r.limit))}%` : 0 }}
                          />
                        </span>
                        {fmtResource(r.resource, r.used)} / {num(r.limit) ? fmtResource(r.resource, r.limit) : 'no quota'}
                        {num(r.borrowed) ? <span className="muted"> ({fmtResource(r.resource, r.borrowed)} borrowed)</span> : null}
                        {num(r.limit) ? <span className="muted"> {pct(num(r.used), num(r.limit))}</span> : null}
                      </div>
                    ))
                  ) : (
                    <span className="muted">{q ? 'no quota' : '—'}</span>
                  )}
                </td>
                <td className="num">
                  {fmtInt(num(q?.workers))}
                  {num(q?.borrowedWorkers) ? ` + ${fmtInt(num(q?.borrowedWorkers))} borrowing` : ''}
                </td>
                <td>{q?.quota?.lend ? 'yes' : 'no'}</td>
                <td className="num">{c ? fmtUSD(num(c.costUsd)) : '—'}</td>
                <td className="num">{c ? (num(c.workerSeconds) / 3600).toFixed(1) : '—'}</td>
                <td className="num">{c ? fmtInt(num(c.jobs)) : '—'}</td>
              </tr>
            )
          })}
          {loaded && !names.length ? (
            <tr>
              <td colSpan={7} className="muted">
                No team to show.
              </td>
            </tr>
          ) : null}
        </tbody>
        {cost.data ? (
          <tfoot>
            <tr>
              <td colSpan={4}>Total</td>
              <td className="num">{fmtUSD(num(cost.data.totalCostUsd))}</td>
              <td className="num">{(num(cost.data.totalWorkerSeconds) / 3600).toFixed(1)}</td>
              <td className="num">{fmtInt(num(cost.data.totalJobs))}</td>
            </tr>
          </tfoot>
        ) : null}
      </table>
    </div>
  )
}
