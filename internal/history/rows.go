package history

import (
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// The row types below are the Parquet schemas of the five tables: one
// struct per table, one field per column, in the order the columns appear
// in the files. Times are TIMESTAMP(MICROS, UTC), null for the zero time;
// maps are MAP<STRING,STRING>, lists of records LIST<STRUCT>, nested
// records STRUCT. docs/history.md describes every column.

// JobRow is a row of the jobs table. The job's spec (which may hold
// secrets) and its secret environment are not exported.
type JobRow struct {
	ID              string            `parquet:"id"`
	Name            string            `parquet:"name"`
	Team            string            `parquet:"team"`
	Labels          map[string]string `parquet:"labels"`
	Env             map[string]string `parquet:"env"`
	Tiers           []TierRow         `parquet:"tiers,list"`
	Worker          WorkerTemplateRow `parquet:"worker"`
	MaxWorkers      int32             `parquet:"max_workers"`
	Priority        int32             `parquet:"priority"`
	State           string            `parquet:"state"`
	TaskCount       int64             `parquet:"task_count"`
	CancelRequested bool              `parquet:"cancel_requested"`
	Counts          CountsRow         `parquet:"counts"`
	WorkerSeconds   float64           `parquet:"worker_seconds"`
	CostUSD         float64           `parquet:"cost_usd"`
	Usage           JobUsageRow       `parquet:"usage"`
	CreatedAt       *time.Time        `parquet:"created_at,optional,timestamp(microsecond)"`
	StartedAt       *time.Time        `parquet:"started_at,optional,timestamp(microsecond)"`
	FinishedAt      *time.Time        `parquet:"finished_at,optional,timestamp(microsecond)"`
	SubmittedBy     string            `parquet:"submitted_by"`
	ExportBatch     int64             `parquet:"export_batch"`
}

// TierRow is a job's tier (store.Tier).
type TierRow struct {
	Name         string            `parquet:"name"`
	CPU          float64           `parquet:"cpu"`
	MemoryBytes  int64             `parquet:"memory_bytes"`
	GPU          int32             `parquet:"gpu"`
	GPUType      string            `parquet:"gpu_type"`
	NodeSelector map[string]string `parquet:"node_selector"`
	Tolerations  []TolerationRow   `parquet:"tolerations,list"`
}

// TolerationRow is a tier's Kubernetes toleration.
type TolerationRow struct {
	Key      string `parquet:"key"`
	Operator string `parquet:"operator"`
	Value    string `parquet:"value"`
	Effect   string `parquet:"effect"`
}

// WorkerTemplateRow is a job's worker pod override; volumes and mounts
// are the Kubernetes objects as JSON text.
type WorkerTemplateRow struct {
	Image          string            `parquet:"image"`
	ServiceAccount string            `parquet:"service_account"`
	Env            map[string]string `parquet:"env"`
	Volumes        []string          `parquet:"volumes,list"`
	VolumeMounts   []string          `parquet:"volume_mounts,list"`
}

// CountsRow is how many of a job's tasks ended in each state.
type CountsRow struct {
	Blocked        int64 `parquet:"blocked"`
	Queued         int64 `parquet:"queued"`
	Running        int64 `parquet:"running"`
	Succeeded      int64 `parquet:"succeeded"`
	Failed         int64 `parquet:"failed"`
	UpstreamFailed int64 `parquet:"upstream_failed"`
	Cancelled      int64 `parquet:"cancelled"`
}

// JobUsageRow is a job's requested-versus-used totals (store.JobUsage).
type JobUsageRow struct {
	MemoryRequestedByteSeconds float64 `parquet:"memory_requested_byte_seconds"`
	MemoryUsedByteSeconds      float64 `parquet:"memory_used_byte_seconds"`
	CPURequestedSeconds        float64 `parquet:"cpu_requested_seconds"`
	CPUUsedSeconds             float64 `parquet:"cpu_used_seconds"`
	PeakRSSBytes               int64   `parquet:"peak_rss_bytes"`
	OOMAttempts                int64   `parquet:"oom_attempts"`
}

// TaskRow is a row of the tasks table.
type TaskRow struct {
	JobID       string            `parquet:"job_id"`
	Team        string            `parquet:"team"`
	JobName     string            `parquet:"job_name"`
	TaskIndex   int32             `parquet:"task_index"`
	Key         string            `parquet:"key"`
	Argv        []string          `parquet:"argv,list"`
	Env         map[string]string `parquet:"env"`
	Cwd         string            `parquet:"cwd"`
	After       []string          `parquet:"after,list"`
	Tier        int32             `parquet:"tier"`
	TierName    string            `parquet:"tier_name"`
	RunTier     int32             `parquet:"run_tier"`
	RunTierName string            `parquet:"run_tier_name"`
	Retries     int32             `parquet:"retries"`
	TimeoutMS   int64             `parquet:"timeout_ms"`
	State       string            `parquet:"state"`
	Attempts    int32             `parquet:"attempts"`
	ExitCode    int32             `parquet:"exit_code"`
	Reason      string            `parquet:"reason"`
	StartedAt   *time.Time        `parquet:"started_at,optional,timestamp(microsecond)"`
	FinishedAt  *time.Time        `parquet:"finished_at,optional,timestamp(microsecond)"`
}

// AttemptRow is a row of the attempts table.
type AttemptRow struct {
	JobID           string     `parquet:"job_id"`
	Team            string     `parquet:"team"`
	JobName         string     `parquet:"job_name"`
	TaskIndex       int32      `parquet:"task_index"`
	TaskKey         string     `parquet:"task_key"`
	Number          int32      `parquet:"number"`
	Tier            int32      `parquet:"tier"`
	TierName        string     `parquet:"tier_name"`
	TierMemoryBytes int64      `parquet:"tier_memory_bytes"`
	WorkerID        string     `parquet:"worker_id"`
	State           string     `parquet:"state"`
	ExitCode        int32      `parquet:"exit_code"`
	Signal          int32      `parquet:"signal"`
	Reason          string     `parquet:"reason"`
	Message         string     `parquet:"message"`
	OOM             bool       `parquet:"oom"`
	StartedAt       *time.Time `parquet:"started_at,optional,timestamp(microsecond)"`
	FinishedAt      *time.Time `parquet:"finished_at,optional,timestamp(microsecond)"`
	DurationSeconds *float64   `parquet:"duration_seconds,optional"`
	Enforcement     string     `parquet:"enforcement"`
	Usage           UsageRow   `parquet:"usage"`
}

// UsageRow is what an attempt's processes used (store.Usage).
type UsageRow struct {
	CPUUserSeconds   float64  `parquet:"cpu_user_seconds"`
	CPUSystemSeconds float64  `parquet:"cpu_system_seconds"`
	PeakRSSBytes     int64    `parquet:"peak_rss_bytes"`
	AvgRSSBytes      int64    `parquet:"avg_rss_bytes"`
	GPUs             []GPURow `parquet:"gpus,list"`
	GPUNote          string   `parquet:"gpu_note"`
}

// GPURow is what an attempt used of one GPU (store.GPUUsage).
type GPURow struct {
	Index                 int32   `parquet:"index"`
	Name                  string  `parquet:"name"`
	PeakMemoryBytes       int64   `parquet:"peak_memory_bytes"`
	AvgUtilizationPercent float64 `parquet:"avg_utilization_percent"`
}

// WorkerRow is a row of the workers table (store.WorkerRecord).
type WorkerRow struct {
	ID        string     `parquet:"id"`
	JobID     string     `parquet:"job_id"`
	Team      string     `parquet:"team"`
	JobName   string     `parquet:"job_name"`
	Tier      int32      `parquet:"tier"`
	TierName  string     `parquet:"tier_name"`
	Cluster   string     `parquet:"cluster"`
	StartedAt *time.Time `parquet:"started_at,optional,timestamp(microsecond)"`
	EndedAt   *time.Time `parquet:"ended_at,optional,timestamp(microsecond)"`
	EndReason string     `parquet:"end_reason"`
	Attempts  int64      `parquet:"attempts"`
}

// LogEntryRow is a row of the log_entries table (store.LogEntry).
type LogEntryRow struct {
	JobID        string     `parquet:"job_id"`
	Team         string     `parquet:"team"`
	JobName      string     `parquet:"job_name"`
	TaskIndex    int32      `parquet:"task_index"`
	Attempt      int32      `parquet:"attempt"`
	Object       string     `parquet:"object"`
	Offset       int64      `parquet:"offset"`
	Length       int64      `parquet:"length"`
	StdoutBytes  int64      `parquet:"stdout_bytes"`
	StderrBytes  int64      `parquet:"stderr_bytes"`
	FirstAt      *time.Time `parquet:"first_at,optional,timestamp(microsecond)"`
	LastAt       *time.Time `parquet:"last_at,optional,timestamp(microsecond)"`
	Truncated    bool       `parquet:"truncated"`
	Note         string     `parquet:"note"`
	Destination  string     `parquet:"destination"`
	ArchiveError string     `parquet:"archive_error"`
}

// ts is a time as a column value: nil for the zero time, else UTC.
func ts(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func tierName(tiers []store.Tier, i int32) string {
	if i >= 0 && int(i) < len(tiers) {
		return tiers[i].Name
	}
	return ""
}

func tierMemory(tiers []store.Tier, i int32) int64 {
	if i >= 0 && int(i) < len(tiers) {
		return tiers[i].MemoryBytes
	}
	return 0
}

func jobRow(j *store.Job, batch int64) JobRow {
	r := JobRow{
		ID: j.ID, Name: j.Name, Team: j.Namespace, Labels: j.Labels, Env: j.Env,
		Worker:     WorkerTemplateRow{Image: j.Worker.Image, ServiceAccount: j.Worker.ServiceAccount, Env: j.Worker.Env},
		MaxWorkers: j.MaxWorkers, Priority: j.Priority, State: string(j.State), TaskCount: j.TaskCount,
		CancelRequested: j.CancelRequested,
		Counts: CountsRow{Blocked: j.Counts.Blocked, Queued: j.Counts.Queued, Running: j.Counts.Running, Succeeded: j.Counts.Succeeded,
			Failed: j.Counts.Failed, UpstreamFailed: j.Counts.UpstreamFailed, Cancelled: j.Counts.Cancelled},
		WorkerSeconds: j.WorkerSeconds, CostUSD: j.CostUSD,
		Usage: JobUsageRow{MemoryRequestedByteSeconds: j.Usage.MemoryRequestedByteSeconds, MemoryUsedByteSeconds: j.Usage.MemoryUsedByteSeconds,
			CPURequestedSeconds: j.Usage.CPURequestedSeconds, CPUUsedSeconds: j.Usage.CPUUsedSeconds,
			PeakRSSBytes: j.Usage.PeakRSSBytes, OOMAttempts: j.Usage.OOMAttempts},
		CreatedAt: ts(j.CreatedAt), StartedAt: ts(j.StartedAt), FinishedAt: ts(j.FinishedAt),
		SubmittedBy: j.SubmittedBy, ExportBatch: batch,
	}
	for _, t := range j.Tiers {
		tr := TierRow{Name: t.Name, CPU: t.CPU, MemoryBytes: t.MemoryBytes, GPU: t.GPU, GPUType: t.GPUType, NodeSelector: t.NodeSelector}
		for _, tol := range t.Tolerations {
			tr.Tolerations = append(tr.Tolerations, TolerationRow(tol))
		}
		r.Tiers = append(r.Tiers, tr)
	}
	for _, v := range j.Worker.Volumes {
		r.Worker.Volumes = append(r.Worker.Volumes, string(v))
	}
	for _, v := range j.Worker.VolumeMounts {
		r.Worker.VolumeMounts = append(r.Worker.VolumeMounts, string(v))
	}
	return r
}

func taskRow(j *store.Job, t *store.Task) TaskRow {
	return TaskRow{
		JobID: t.JobID, Team: j.Namespace, JobName: j.Name, TaskIndex: t.Index, Key: t.Key,
		Argv: t.Argv, Env: t.Env, Cwd: t.Cwd, After: t.After,
		Tier: t.Tier, TierName: tierName(j.Tiers, t.Tier), RunTier: t.RunTier, RunTierName: tierName(j.Tiers, t.RunTier),
		Retries: t.Retries, TimeoutMS: t.TimeoutMS, State: string(t.State), Attempts: t.Attempts, ExitCode: t.ExitCode,
		Reason: t.Reason, StartedAt: ts(t.StartedAt), FinishedAt: ts(t.FinishedAt),
	}
}

func attemptRow(j *store.Job, key string, a *store.Attempt) AttemptRow {
	r := AttemptRow{
		JobID: a.JobID, Team: j.Namespace, JobName: j.Name, TaskIndex: a.TaskIndex, TaskKey: key, Number: a.Number,
		Tier: a.Tier, TierName: tierName(j.Tiers, a.Tier), TierMemoryBytes: tierMemory(j.Tiers, a.Tier),
		WorkerID: a.WorkerID, State: string(a.State), ExitCode: a.ExitCode, Signal: a.Signal, Reason: a.Reason, Message: a.Message,
		OOM: a.OOM(), StartedAt: ts(a.StartedAt), FinishedAt: ts(a.FinishedAt), Enforcement: a.Enforcement,
		Usage: UsageRow{CPUUserSeconds: a.Usage.CPUUserSeconds, CPUSystemSeconds: a.Usage.CPUSystemSeconds,
			PeakRSSBytes: a.Usage.PeakRSSBytes, AvgRSSBytes: a.Usage.AvgRSSBytes, GPUNote: a.Usage.GPUNote},
	}
	if !a.StartedAt.IsZero() && !a.FinishedAt.IsZero() {
		d := a.FinishedAt.Sub(a.StartedAt).Seconds()
		r.DurationSeconds = &d
	}
	for _, g := range a.Usage.GPUs {
		r.Usage.GPUs = append(r.Usage.GPUs, GPURow(g))
	}
	return r
}

func workerRow(j *store.Job, w *store.WorkerRecord) WorkerRow {
	return WorkerRow{
		ID: w.ID, JobID: w.JobID, Team: j.Namespace, JobName: j.Name, Tier: w.Tier, TierName: tierName(j.Tiers, w.Tier),
		Cluster: w.Cluster, StartedAt: ts(w.StartedAt), EndedAt: ts(w.EndedAt), EndReason: w.EndReason, Attempts: w.Attempts,
	}
}

func logEntryRow(j *store.Job, e *store.LogEntry) LogEntryRow {
	return LogEntryRow{
		JobID: e.JobID, Team: j.Namespace, JobName: j.Name, TaskIndex: e.TaskIndex, Attempt: e.Attempt,
		Object: e.Object, Offset: e.Offset, Length: e.Length, StdoutBytes: e.StdoutBytes, StderrBytes: e.StderrBytes,
		FirstAt: ts(e.FirstAt), LastAt: ts(e.LastAt), Truncated: e.Truncated, Note: e.Note,
		Destination: e.Destination, ArchiveError: e.ArchiveError,
	}
}
