package storesql

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/haul-dev/haul/internal/store"
)

// TaskEnd is what Apply writes to a task's duration_ms and peak_rss
// columns for an update, in the statement that writes the update: for a
// terminal state, the run time FinishedAt - StartedAt in milliseconds (at
// least 0; -1 when the task never ran: no StartedAt or no FinishedAt) and
// the peak memory; for any other state nil, nil (the columns keep their
// values).
func TaskEnd(u *store.TaskUpdate) (durationMS, peakRSS *int64) {
	if !u.State.Terminal() {
		return nil, nil
	}
	d := int64(-1)
	if !u.StartedAt.IsZero() && !u.FinishedAt.IsZero() {
		d = max(0, u.FinishedAt.Sub(u.StartedAt).Milliseconds())
	}
	p := u.PeakRSSBytes
	return &d, &p
}

// MaxRanges is the most index ranges TaskRangeStats answers in one call.
const MaxRanges = 10_000

// CheckRanges checks TaskRangeStats's ranges: at most MaxRanges, none
// whose First is after its End (First == End is an empty range). Its
// errors wrap store.ErrRejected.
func CheckRanges(jobID string, ranges []store.IndexRange) error {
	if len(ranges) > MaxRanges {
		return Reject(fmt.Errorf("task range stats of job %s: %d ranges, more than the %d one call may ask for", jobID, len(ranges), MaxRanges))
	}
	for i, r := range ranges {
		if r.First > r.End {
			return Reject(fmt.Errorf("task range stats of job %s: range %d: first index %d after end %d", jobID, i, r.First, r.End))
		}
	}
	return nil
}

// AddRangeRow adds one row of a range's stats query (one state's count,
// earliest start and latest end, NULL for none) to rs.
func AddRangeRow(rs *store.RangeStats, state string, n int64, started, finished *int64) {
	rs.Counts.Add(store.TaskState(state), n)
	if started != nil {
		if t := FromNanos(started); rs.StartedAt.IsZero() || t.Before(rs.StartedAt) {
			rs.StartedAt = t
		}
	}
	if finished != nil {
		if t := FromNanos(finished); rs.FinishedAt.IsZero() || t.After(rs.FinishedAt) {
			rs.FinishedAt = t
		}
	}
}

// TaskSortQuery is how ListTasks reads one filter: the sort column
// ("duration_ms", "peak_rss"; "" for index order), whether descending,
// and whether the page continues after a key (After >= 0). The drivers
// build one statement per distinct TaskSortQuery.
type TaskSortQuery struct {
	Column string
	Desc   bool
	After  bool
}

// CheckTaskSort checks a filter's Sort and returns its query shape. An
// unknown Sort is an error naming it (wrapping store.ErrRejected). Desc
// orders by duration or peak memory only: index order is always
// ascending.
func CheckTaskSort(f *store.TaskFilter) (TaskSortQuery, error) {
	switch f.Sort {
	case store.SortIndex:
		return TaskSortQuery{}, nil
	case store.SortDuration:
		return TaskSortQuery{Column: "duration_ms", Desc: f.Desc, After: f.After >= 0}, nil
	case store.SortPeakRSS:
		return TaskSortQuery{Column: "peak_rss", Desc: f.Desc, After: f.After >= 0}, nil
	}
	return TaskSortQuery{}, Reject(fmt.Errorf("unknown sort %d (want %d by index, %d by duration or %d by peak memory)",
		int(f.Sort), int(store.SortIndex), int(store.SortDuration), int(store.SortPeakRSS)))
}

// IndexBounds returns the index range a filter selects as first <= idx <
// end: FirstIndex to EndIndex (EndIndex 0: no bound), narrowed in index
// order to the tasks after After.
func IndexBounds(f *store.TaskFilter, byIndex bool) (first, end int64) {
	first, end = int64(f.FirstIndex), int64(f.EndIndex)
	if f.EndIndex == 0 {
		end = math.MaxInt32 + 1
	}
	if byIndex {
		first = max(first, int64(f.After)+1)
	}
	return first, end
}

// checkGroups checks a job's groups: their names storable.
func checkGroups(gs []store.TaskGroup) error {
	for i, g := range gs {
		if err := checkText(fmt.Sprintf("groups[%d].name", i), g.Name); err != nil {
			return err
		}
	}
	return nil
}

// GroupsColumn encodes a job's groups for its groups column: nil (NULL)
// for nil groups.
func GroupsColumn(job *store.Job) ([]byte, error) {
	if job.Groups == nil {
		return nil, nil
	}
	b, err := json.Marshal(job.Groups)
	if err != nil {
		return nil, Reject(fmt.Errorf("create job %s: encode groups: %w", job.ID, err))
	}
	return b, nil
}

// DecodeGroups decodes a job's groups column (nil: NULL).
func DecodeGroups(b []byte) ([]store.TaskGroup, error) {
	if b == nil {
		return nil, nil
	}
	gs := []store.TaskGroup{}
	if err := json.Unmarshal(b, &gs); err != nil {
		return nil, fmt.Errorf("decode groups: %w", err)
	}
	return gs, nil
}

// CheckTaskReason checks ListTasks's Reason filter: text no stored task
// can hold (invalid UTF-8, a NUL byte) is refused (wrapping
// store.ErrRejected), as both drivers would otherwise disagree on it.
func CheckTaskReason(reason string) error {
	if err := checkText("reason", reason); err != nil {
		return Reject(err)
	}
	return nil
}
