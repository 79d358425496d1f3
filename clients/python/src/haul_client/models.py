"""The API's messages as dataclasses, decoded from Connect JSON.

Field names are the proto's (snake_case). int64 fields, which JSON carries
as strings, are ints; timestamps stay RFC 3339 strings ("" when unset); a
message's JSON as received is kept in raw.
"""

from __future__ import annotations

import dataclasses

import sys
from typing import Any, Dict, List, Optional, Type, TypeVar, Union, get_type_hints

T = TypeVar("T")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _origin(tp: Any) -> Any:
    return getattr(tp, "__origin__", None)


def _args(tp: Any) -> tuple:
    return getattr(tp, "__args__", ())


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = _origin(tp)
    if origin is Union:  # Optional[X]
        inner = [a for a in _args(tp) if a is not type(None)]
        return _convert(inner[0], value)
    if origin in (list, List):
        return [_convert(_args(tp)[0], v) for v in value]
    if origin in (dict, Dict):
        return {k: _convert(_args(tp)[1], v) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return decode(tp, value)
    if tp is int:
        return int(value)
    if tp is float:
        # NaN and infinities arrive as strings.
        return float(value)
    if tp is bool:
        return bool(value)
    if tp is str:
        return str(value)
    return value


_hints: Dict[type, Dict[str, Any]] = {}


def decode(cls: Type[T], obj: Optional[Dict[str, Any]]) -> T:
    """An instance of the dataclass cls from a message's JSON."""
    obj = obj or {}
    hints = _hints.get(cls)
    if hints is None:
        hints = get_type_hints(cls, vars(sys.modules[cls.__module__]))
        _hints[cls] = hints
    kwargs: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name == "raw":
            kwargs["raw"] = obj
            continue
        for key in (_camel(f.name), f.name):
            if key in obj:
                kwargs[f.name] = _convert(hints[f.name], obj[key])
                break
    return cls(**kwargs)


@dataclasses.dataclass
class TaskCounts:
    blocked: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    upstream_failed: int = 0
    cancelled: int = 0


@dataclasses.dataclass
class Tier:
    name: str = ""
    cpu: float = 0.0
    memory_bytes: int = 0
    gpu: int = 0


@dataclasses.dataclass
class Usage:
    memory_requested_byte_seconds: float = 0.0
    memory_used_byte_seconds: float = 0.0
    cpu_requested_seconds: float = 0.0
    cpu_used_seconds: float = 0.0
    peak_rss_bytes: int = 0
    oom_attempts: int = 0


@dataclasses.dataclass
class Notification:
    webhook: str = ""
    on: List[str] = dataclasses.field(default_factory=list)
    state: str = ""
    attempts: int = 0
    last_error: str = ""
    delivered_at: str = ""
    event: str = ""


TERMINAL_JOB_STATES = frozenset({"succeeded", "failed", "cancelled"})
TERMINAL_TASK_STATES = frozenset({"succeeded", "failed", "upstream_failed", "cancelled"})


@dataclasses.dataclass
class Job:
    id: str = ""
    name: str = ""
    namespace: str = ""
    labels: Dict[str, str] = dataclasses.field(default_factory=dict)
    # pending, running, succeeded, failed, cancelled
    state: str = ""
    workers: List[Tier] = dataclasses.field(default_factory=list)
    task_count: int = 0
    counts: TaskCounts = dataclasses.field(default_factory=TaskCounts)
    created_at: str = ""
    started_at: str = ""
    finished_at: str = ""
    cancel_requested: bool = False
    max_workers: int = 0
    worker_seconds: float = 0.0
    estimated_cost_usd: float = 0.0
    usage: Usage = dataclasses.field(default_factory=Usage)
    submitted_by: str = ""
    secret_env_names: List[str] = dataclasses.field(default_factory=list)
    params: Dict[str, str] = dataclasses.field(default_factory=dict)
    notification: Notification = dataclasses.field(default_factory=Notification)
    retries: int = 0
    raw: Dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """The job has ended (succeeded, failed or cancelled)."""
        return self.state in TERMINAL_JOB_STATES


@dataclasses.dataclass
class Task:
    job_id: str = ""
    index: int = 0
    key: str = ""
    # blocked, queued, running, succeeded, failed, upstream_failed, cancelled
    state: str = ""
    command: List[str] = dataclasses.field(default_factory=list)
    env: Dict[str, str] = dataclasses.field(default_factory=dict)
    cwd: str = ""
    after: List[str] = dataclasses.field(default_factory=list)
    tier: str = ""
    retries: int = 0
    timeout_ms: int = 0
    attempts: int = 0
    exit_code: int = 0
    reason: str = ""
    started_at: str = ""
    finished_at: str = ""
    secret_env_names: List[str] = dataclasses.field(default_factory=list)
    duration_ms: int = 0
    peak_rss_bytes: int = 0
    raw: Dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_TASK_STATES


@dataclasses.dataclass
class GPUUsage:
    index: int = 0
    name: str = ""
    peak_memory_bytes: int = 0
    avg_utilization_percent: float = 0.0


@dataclasses.dataclass
class Attempt:
    number: int = 0
    tier: str = ""
    worker_id: str = ""
    # running, succeeded, failed, lost, cancelled
    state: str = ""
    exit_code: int = 0
    signal: str = ""
    reason: str = ""
    message: str = ""
    started_at: str = ""
    finished_at: str = ""
    oom: bool = False
    enforcement: str = ""
    cpu_user_seconds: float = 0.0
    cpu_system_seconds: float = 0.0
    peak_rss_bytes: int = 0
    avg_rss_bytes: int = 0
    gpus: List[GPUUsage] = dataclasses.field(default_factory=list)
    gpu_note: str = ""
    memory_request_bytes: int = 0
    cpu_request: float = 0.0
    log_archive: str = ""


@dataclasses.dataclass
class TaskDetail:
    """GetTask's answer: the task, its job-level environment, its attempts."""

    task: Task = dataclasses.field(default_factory=Task)
    job_env: Dict[str, str] = dataclasses.field(default_factory=dict)
    attempts: List[Attempt] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Blocker:
    kind: str = ""
    detail: str = ""
    tier: int = 0
    tasks: int = 0
    parents: List[str] = dataclasses.field(default_factory=list)
    until: str = ""
    since: str = ""
    resource: str = ""
    used: int = 0
    limit: int = 0
    clusters: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class WhyResult:
    job_id: str = ""
    task_key: str = ""
    state: str = ""
    blockers: List[Blocker] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class WhoAmI:
    subject: str = ""
    kind: str = ""
    teams: Dict[str, str] = dataclasses.field(default_factory=dict)
    platform_admin: bool = False
    via: str = ""


@dataclasses.dataclass
class RetryResult:
    """RetryJob's answer: the job, how many tasks run again, the matched keys."""

    job: Job = dataclasses.field(default_factory=Job)
    retried: int = 0
    keys: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class AddTasksResult:
    keys: List[str] = dataclasses.field(default_factory=list)
    task_count: int = 0


_STREAMS = {"LOG_STREAM_STDOUT": "stdout", "LOG_STREAM_STDERR": "stderr", 1: "stdout", 2: "stderr"}


def log_stream_name(value: Any) -> str:
    """"stdout" or "stderr" for a LogStream as JSON ("" when unspecified)."""
    return _STREAMS.get(value, "")


def camel_request(fields: Dict[str, Any]) -> Dict[str, Any]:
    """A request's JSON from snake_case keyword arguments, None left out."""
    return {_camel(k): v for k, v in fields.items() if v is not None}


