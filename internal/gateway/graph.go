package gateway

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/dag"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/spec"
	"github.com/haul-dev/haul/internal/store"
)

// The graph by group (GetJobGraph) shows a job as its spec's entries: a
// foreach of a million tasks is one node. The groups and the edges between
// them are computed once, at submit (Groups), and stored with the job; only
// the counts are read per request, one indexed range query per group.

// Bounds on the groups of tasks added while a job runs (AddTasks), which
// have no spec entry: they are grouped by runs of the same key stem, up to
// maxAddedGroups groups over at most maxAddedScan added tasks; beyond
// either, the rest is one group.
const (
	maxAddedGroups = 200
	maxAddedScan   = 100_000
)

// Groups returns a compiled job's graph by group: one group per spec entry
// with tasks, and as a group's parents every other group that holds a
// parent of one of its tasks (directly or through a glob). It runs in
// O(tasks + edges) with a binary search per edge.
func Groups(js *spec.Job, g *dag.Graph) []store.TaskGroup {
	var groups []store.TaskGroup
	var starts []int
	for _, e := range js.Entries {
		if e.Count <= 0 {
			continue
		}
		groups = append(groups, store.TaskGroup{Name: e.Key, First: int32(e.Start), Count: int32(e.Count)})
		starts = append(starts, e.Start)
	}
	if g == nil || len(groups) == 0 {
		return groups
	}
	groupOf := func(task int32) int {
		return sort.Search(len(starts), func(i int) bool { return starts[i] > int(task) }) - 1
	}
	parents := make([]map[int]struct{}, len(groups))
	link := func(parent, child int) {
		if parent == child || parent < 0 || child < 0 {
			return
		}
		if parents[child] == nil {
			parents[child] = map[int]struct{}{}
		}
		parents[child][parent] = struct{}{}
	}
	// Each glob node's parents (the tasks it matches), by group.
	globParents := make([]map[int]struct{}, len(g.Groups))
	for v := int32(0); int(v) < g.N; v++ {
		from := groupOf(v)
		for _, c := range g.Children(v) {
			if g.IsGroup(c) {
				gi := int(c) - g.N
				if globParents[gi] == nil {
					globParents[gi] = map[int]struct{}{}
				}
				globParents[gi][from] = struct{}{}
				continue
			}
			link(from, groupOf(c))
		}
	}
	for gi := range g.Groups {
		for _, c := range g.Children(int32(g.N + gi)) {
			to := groupOf(c)
			for from := range globParents[gi] {
				link(from, to)
			}
		}
	}
	for i, ps := range parents {
		for p := range ps {
			groups[i].Parents = append(groups[i].Parents, int32(p))
		}
		sort.Slice(groups[i].Parents, func(a, b int) bool { return groups[i].Parents[a] < groups[i].Parents[b] })
	}
	return groups
}

// GetJobGraph returns the job's graph by group with counts and the critical
// path.
func (g *Gateway) GetJobGraph(ctx context.Context, req *connect.Request[apiv1.GetJobGraphRequest]) (*connect.Response[apiv1.GetJobGraphResponse], error) {
	j, err := g.job(ctx, req.Msg.JobId)
	if err != nil {
		return nil, err
	}
	if err := g.authorizeJob(ctx, auth.ReadJob, j); err != nil {
		return nil, err
	}
	resp, err := g.jobGraph(ctx, j)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

// jobGraph reads a job's groups and their counts.
func (g *Gateway) jobGraph(ctx context.Context, j *store.Job) (*apiv1.GetJobGraphResponse, error) {
	groups, err := g.cfg.Store.JobGroups(ctx, j.ID)
	if err != nil {
		return nil, storeError(err, "groups of job", j.ID)
	}
	covered := int64(0)
	for _, gr := range groups {
		covered = max(covered, int64(gr.First)+int64(gr.Count))
	}
	if covered < j.TaskCount {
		added, err := g.addedGroups(ctx, j.ID, int32(covered), j.TaskCount)
		if err != nil {
			return nil, err
		}
		groups = append(groups, added...)
	}
	ranges := make([]store.IndexRange, len(groups))
	for i, gr := range groups {
		ranges[i] = store.IndexRange{First: gr.First, End: gr.First + gr.Count}
	}
	var stats []store.RangeStats
	if len(ranges) > 0 {
		if stats, err = g.cfg.Store.TaskRangeStats(ctx, j.ID, ranges); err != nil {
			return nil, storeError(err, "task counts of job", j.ID)
		}
	}
	return GraphProto(groups, stats), nil
}

// addedGroups groups the tasks from index first on (added while the job
// ran) by runs of the same key stem.
func (g *Gateway) addedGroups(ctx context.Context, jobID string, first int32, total int64) ([]store.TaskGroup, error) {
	var groups []store.TaskGroup
	after := first - 1
	scanned := 0
	for scanned < maxAddedScan {
		tasks, err := g.cfg.Store.ListTasks(ctx, store.TaskFilter{JobID: jobID, After: after, Limit: 1000})
		if err != nil {
			return nil, storeError(err, "tasks of job", jobID)
		}
		for _, t := range tasks {
			stem := keyStem(t.Key)
			if n := len(groups); n > 0 && groups[n-1].Name == stem && groups[n-1].First+groups[n-1].Count == t.Index {
				groups[n-1].Count++
				continue
			}
			if len(groups) == maxAddedGroups {
				scanned = maxAddedScan
				break
			}
			groups = append(groups, store.TaskGroup{Name: stem, First: t.Index, Count: 1})
		}
		scanned += len(tasks)
		if len(tasks) < 1000 || scanned >= maxAddedScan {
			break
		}
		after = tasks[len(tasks)-1].Index
	}
	end := int64(first)
	if n := len(groups); n > 0 {
		end = int64(groups[n-1].First) + int64(groups[n-1].Count)
	}
	if end < total {
		groups = append(groups, store.TaskGroup{Name: "added tasks", First: int32(end), Count: int32(total - end)})
	}
	return groups, nil
}

// keyStem is a key without its trailing number and separators, followed by
// "*": "chunk-17" and "chunk-18" are both "chunk-*".
func keyStem(key string) string {
	s := strings.TrimRight(key, "0123456789")
	if s == key {
		return key
	}
	return s + "*"
}

// GraphProto builds the API's graph from groups and their stats, with the
// critical path.
func GraphProto(groups []store.TaskGroup, stats []store.RangeStats) *apiv1.GetJobGraphResponse {
	resp := &apiv1.GetJobGraphResponse{}
	for i, gr := range groups {
		p := &apiv1.TaskGroup{Name: gr.Name, FirstIndex: gr.First, TaskCount: int64(gr.Count), Parents: gr.Parents}
		if i < len(stats) {
			p.Counts = countsProto(stats[i].Counts)
			p.StartedAt, p.FinishedAt = ts(stats[i].StartedAt), ts(stats[i].FinishedAt)
		}
		resp.Groups = append(resp.Groups, p)
	}
	ends := make([]time.Time, len(groups))
	for i := range stats {
		ends[i] = stats[i].FinishedAt
	}
	resp.CriticalPath = CriticalPath(groups, ends)
	for _, i := range resp.CriticalPath {
		resp.Groups[i].Critical = true
	}
	return resp
}

// CriticalPath returns the chain of groups that decided when the job
// ended, first to last: it starts at the group that ended last and steps to
// the parent that ended last (the one that released it), until a group with
// no ended parent. A group's end is the latest end of its tasks; groups that
// never ended (zero) are not on it. Ties go to the lower index, so the path
// is the same on every call. Parents that point outside groups are ignored,
// and a cycle (impossible in a stored job) ends the walk.
func CriticalPath(groups []store.TaskGroup, ends []time.Time) []int32 {
	last := -1
	for i := range groups {
		if i < len(ends) && !ends[i].IsZero() && (last < 0 || ends[i].After(ends[last])) {
			last = i
		}
	}
	if last < 0 {
		return nil
	}
	var path []int32
	seen := map[int]bool{}
	for cur := last; cur >= 0 && !seen[cur]; {
		seen[cur] = true
		path = append(path, int32(cur))
		next := -1
		for _, p := range groups[cur].Parents {
			pi := int(p)
			if pi < 0 || pi >= len(groups) || pi >= len(ends) || ends[pi].IsZero() {
				continue
			}
			if next < 0 || ends[pi].After(ends[next]) || (ends[pi].Equal(ends[next]) && pi < next) {
				next = pi
			}
		}
		cur = next
	}
	for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
		path[i], path[j] = path[j], path[i]
	}
	return path
}

func countsProto(c store.TaskCounts) *apiv1.TaskCounts {
	return &apiv1.TaskCounts{Blocked: c.Blocked, Queued: c.Queued, Running: c.Running, Succeeded: c.Succeeded,
		Failed: c.Failed, UpstreamFailed: c.UpstreamFailed, Cancelled: c.Cancelled}
}

// taskFilter turns ListTasks's request into the store's filter: each field
// checked, with an error naming the one that is wrong.
func taskFilter(j *store.Job, m *apiv1.ListTasksRequest) (store.TaskFilter, error) {
	f := store.TaskFilter{JobID: j.ID, KeyGlob: m.KeyGlob, After: -1, Reason: m.Reason,
		FirstIndex: m.FirstIndex, EndIndex: m.EndIndex, Desc: m.Descending, ExitCode: m.ExitCode}
	if m.KeyGlob != "" {
		if _, err := path.Match(m.KeyGlob, ""); err != nil {
			return f, fmt.Errorf("key glob %q: %w", m.KeyGlob, err)
		}
	}
	if m.FirstIndex < 0 || m.EndIndex < 0 || (m.EndIndex > 0 && m.EndIndex <= m.FirstIndex) {
		return f, fmt.Errorf("index range [%d, %d) is empty or negative (end_index 0 means no bound)", m.FirstIndex, m.EndIndex)
	}
	switch m.Sort {
	case apiv1.TaskSort_TASK_SORT_UNSPECIFIED:
		f.Sort = store.SortIndex
	case apiv1.TaskSort_TASK_SORT_DURATION:
		f.Sort = store.SortDuration
	case apiv1.TaskSort_TASK_SORT_PEAK_MEMORY:
		f.Sort = store.SortPeakRSS
	default:
		return f, fmt.Errorf("unknown sort %d (want TASK_SORT_DURATION, TASK_SORT_PEAK_MEMORY or none for index order)", m.Sort)
	}
	if m.Tier != "" {
		tier := int32(-1)
		var names []string
		for i, t := range j.Tiers {
			names = append(names, t.Name)
			if t.Name == m.Tier {
				tier = int32(i)
			}
		}
		if tier < 0 {
			return f, fmt.Errorf("job %s has no tier %q (its tiers: %s)", j.ID, m.Tier, strings.Join(names, ", "))
		}
		f.RunTier = &tier
	}
	for _, s := range m.States {
		st, err := ParseTaskState(s)
		if err != nil {
			return f, err
		}
		f.States = append(f.States, st)
	}
	if tok := m.PageToken; tok != "" {
		bad := fmt.Errorf("bad page token %q", tok)
		idx := tok
		if f.Sort != store.SortIndex {
			v, rest, ok := strings.Cut(tok, ":")
			n, err := strconv.ParseInt(v, 10, 64)
			if !ok || err != nil {
				return f, bad
			}
			f.AfterValue, idx = n, rest
		}
		n, err := strconv.ParseInt(idx, 10, 32)
		if err != nil || n < 0 {
			return f, bad
		}
		f.After = int32(n)
	}
	return f, nil
}

// taskPageToken is the keyset of the page after t: its index, preceded by
// its sort value for the sorts by value.
func taskPageToken(sort store.TaskSort, t *store.Task) string {
	switch sort {
	case store.SortDuration:
		return strconv.FormatInt(t.DurationMS, 10) + ":" + strconv.Itoa(int(t.Index))
	case store.SortPeakRSS:
		return strconv.FormatInt(t.PeakRSSBytes, 10) + ":" + strconv.Itoa(int(t.Index))
	}
	return strconv.Itoa(int(t.Index))
}
