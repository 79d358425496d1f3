// The job's DAG by group, laid out with dagre once per structure (the
// groups and their edges), redrawn with fresh counts on every update.
import { memo, useMemo } from 'react'
import dagre from '@dagrejs/dagre'
import { counts, doneCount, fmtCompact, fmtInt, num, TASK_STATES } from '../util'

const W = 250
const H = 64

interface Layout {
  width: number
  height: number
  nodes: { x: number; y: number }[]
  edges: { from: number; to: number; points: { x: number; y: number }[] }[]
}

// structureKey changes only when groups or edges do, not with counts.
export function structureKey(groups: any[]): string {
  return groups.map((g) => `${g.name}<${(g.parents || []).join(',')}`).join('|')
}

function layout(groups: any[]): Layout {
  const g = new dagre.graphlib.Graph()
  g.setGraph({ rankdir: 'LR', nodesep: 24, ranksep: 60, marginx: 12, marginy: 12 })
  g.setDefaultEdgeLabel(() => ({}))
  groups.forEach((_, i) => g.setNode(String(i), { width: W, height: H }))
  groups.forEach((grp, i) =>
    (grp.parents || []).forEach((p: number) => {
      if (p >= 0 && p < groups.length) g.setEdge(String(p), String(i))
    }),
  )
  dagre.layout(g)
  const info = g.graph()
  return {
    width: Math.max(info.width || 0, W),
    height: Math.max(info.height || 0, H),
    nodes: groups.map((_, i) => {
      const n = g.node(String(i))
      return { x: n.x - W / 2, y: n.y - H / 2 }
    }),
    edges: g.edges().map((e) => ({ from: +e.v, to: +e.w, points: g.edge(e).points || [] })),
  }
}

export const JobGraph = memo(function JobGraph({
  graph,
  selected,
  onSelect,
}: {
  graph: any
  selected: number | null
  onSelect: (i: number | null) => void
}) {
  const groups: any[] = graph.groups || []
  const key = structureKey(groups)
  const lay = useMemo(() => layout(groups), [key]) // eslint-disable-line react-hooks/exhaustive-deps
  // Edges between consecutive groups of the critical path are critical
  // (without a path, edges between two critical groups).
  const path: number[] = graph.criticalPath || []
  const criticalEdges = new Set(
    path.length
      ? path.slice(1).map((to, i) => `${path[i]}>${to}`)
      : lay.edges.filter((e) => groups[e.from]?.critical && groups[e.to]?.critical).map((e) => `${e.from}>${e.to}`),
  )

  return (
    <div className="graph-scroll">
      <svg
        data-testid="job-graph"
        data-loaded="true"
        width={lay.width}
        height={lay.height}
        viewBox={`0 0 ${lay.width} ${lay.height}`}
        role="img"
        aria-label="job graph by group"
      >
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" fill="#8a94a6" />
          </marker>
          <marker id="arrow-crit" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" fill="#d9480f" />
          </marker>
        </defs>
        {lay.edges.map((e) => {
          const crit = criticalEdges.has(`${e.from}>${e.to}`)
          return (
            <path
              key={`${e.from}>${e.to}`}
              className={crit ? 'edge critical' : 'edge'}
              d={'M' + e.points.map((p) => `${p.x},${p.y}`).join(' L')}
              markerEnd={crit ? 'url(#arrow-crit)' : 'url(#arrow)'}
            />
          )
        })}
        {!groups.length ? (
          <text x={12} y={36} className="node-info">
            The job has no groups.
          </text>
        ) : null}
        {groups.map((grp, i) => (
          <GroupNode key={i} grp={grp} pos={lay.nodes[i]} selected={selected === i} onClick={() => onSelect(selected === i ? null : i)} />
        ))}
      </svg>
    </div>
  )
})

function GroupNode({ grp, pos, selected, onClick }: { grp: any; pos: { x: number; y: number }; selected: boolean; onClick: () => void }) {
  if (!pos) return null
  const c = counts(grp.counts)
  const total = num(grp.taskCount)
  const done = doneCount(c)
  let x = 8
  const bar = TASK_STATES.map((s) => {
    if (!c[s] || !total) return null
    const w = ((W - 16) * c[s]) / total
    const r = <rect key={s} className={`st-${s}`} x={x} y={H - 18} width={w} height={8} />
    x += w
    return r
  })
  const name = grp.name.length > 28 ? grp.name.slice(0, 27) + '…' : grp.name
  const failed = c.failed + c.upstream_failed
  return (
    <g
      data-testid="graph-node"
      data-group={grp.name}
      data-critical={grp.critical ? 'true' : undefined}
      className={`node${grp.critical ? ' critical' : ''}${selected ? ' selected' : ''}`}
      transform={`translate(${pos.x},${pos.y})`}
      onClick={onClick}
      role="button"
      tabIndex={0}
      onKeyDown={(e) => (e.key === 'Enter' || e.key === ' ') && onClick()}
    >
      <title>
        {`${grp.name}: ${fmtInt(total)} tasks\n` +
          TASK_STATES.filter((s) => c[s])
            .map((s) => `${s}: ${fmtInt(c[s])}`)
            .join('\n')}
      </title>
      <rect className="node-box" width={W} height={H} rx={6} />
      <text x={8} y={18} className="node-name">
        {name}
      </text>
      <text x={8} y={34} className="node-info">
        {fmtCompact(done)}/{fmtCompact(total)} done
        {c.running ? ` · ${fmtCompact(c.running)} running` : ''}
        {failed ? ` · ${fmtCompact(failed)} failed` : ''}
      </text>
      <rect x={8} y={H - 18} width={W - 16} height={8} className="node-track" />
      {bar}
    </g>
  )
}
