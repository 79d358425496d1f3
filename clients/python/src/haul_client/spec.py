"""A builder of job specs from Python objects (see docs/job-spec.md).

    spec = JobSpec(
        name="resim",
        workers=[Tier("small", cpu=1, memory="2Gi")],
        retries=2,
        tasks=[
            Task("sim-{i}", ["run-sim", "--scene", "{i}"], foreach=Range(0, 1000)),
            Task("report", ["make-report"], after=["sim-*"]),
        ],
    )
    client.submit(spec)

to_dict() returns the spec as the server reads it (JSON is YAML); fields
left None are left out, so the server's defaults apply.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

Duration = Union[str, int, float, datetime.timedelta]


def duration(value: Duration) -> str:
    """A spec duration: strings as they are, numbers as seconds."""
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool):
        raise TypeError("a duration is a string or a number of seconds, not a bool")
    if isinstance(value, int):
        return "%ds" % value
    if isinstance(value, float):
        if value == int(value):
            return "%ds" % int(value)
        ms = value * 1000
        if ms == int(ms):
            return "%dms" % int(ms)
        return "%gs" % value
    return str(value)


@dataclasses.dataclass
class Range:
    """foreach: {range: [start, end(, step)]}: start, start+step, ... below end."""

    start: int
    end: int
    step: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        r = [self.start, self.end] + ([self.step] if self.step is not None else [])
        return {"range": r}


@dataclasses.dataclass
class Values:
    """foreach: {values: [...]}: one task per value ({item}, {i} its index)."""

    values: Sequence[Any]

    def to_dict(self) -> Dict[str, Any]:
        return {"values": [v if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v) for v in self.values]}


Foreach = Union[Range, Values, Mapping[str, Any]]


@dataclasses.dataclass
class Tier:
    """A worker tier: cpu in cores (or "500m"), memory a quantity ("2Gi")."""

    name: str
    cpu: Optional[Union[int, float, str]] = None
    memory: Optional[Union[int, str]] = None
    gpu: Optional[int] = None
    gpu_type: Optional[str] = None
    node_selector: Optional[Dict[str, str]] = None
    tolerations: Optional[List[Dict[str, str]]] = None

    def to_dict(self) -> Dict[str, Any]:
        return _clean(dataclasses.asdict(self))


@dataclasses.dataclass
class Task:
    """One task entry; with foreach, one task per element (key needs {i} or {item})."""

    key: str
    command: Sequence[Any]
    after: Sequence[str] = ()
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    foreach: Optional[Foreach] = None
    cwd: Optional[str] = None
    retries: Optional[int] = None
    timeout: Optional[Duration] = None
    worker: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        if not self.key:
            raise ValueError("a task needs a key")
        if isinstance(self.command, (str, bytes)):
            raise TypeError("task %r: command is a list of arguments (no shell): write [\"sh\", \"-c\", %r]" % (self.key, self.command))
        if not self.command:
            raise ValueError("task %r: command must not be empty" % self.key)
        d: Dict[str, Any] = {"key": self.key, "command": [str(a) for a in self.command]}
        if self.foreach is not None:
            fe = self.foreach
            d["foreach"] = fe.to_dict() if isinstance(fe, (Range, Values)) else dict(fe)
        if self.after:
            if isinstance(self.after, str):
                raise TypeError("task %r: after is a list of keys or globs" % self.key)
            d["after"] = list(self.after)
        if self.env:
            d["env"] = {k: str(v) for k, v in self.env.items()}
        if self.cwd is not None:
            d["cwd"] = self.cwd
        if self.retries is not None:
            d["retries"] = self.retries
        if self.timeout is not None:
            d["timeout"] = duration(self.timeout)
        if self.worker is not None:
            d["worker"] = self.worker
        return d


@dataclasses.dataclass
class Notify:
    """notify: a webhook called when the job ends in one of the states of on."""

    webhook: str
    on: Sequence[str] = ("failed",)

    def to_dict(self) -> Dict[str, Any]:
        return {"webhook": self.webhook, "on": list(self.on)}


@dataclasses.dataclass
class JobSpec:
    """A job spec. extra holds any field this builder does not name (kubernetes, x-...)."""

    name: str
    tasks: Sequence[Task] = ()
    namespace: Optional[str] = None
    labels: Optional[Mapping[str, str]] = None
    env: Optional[Mapping[str, str]] = None
    secret_env: Optional[Mapping[str, str]] = None
    workers: Optional[Sequence[Tier]] = None
    retries: Optional[int] = None
    timeout: Optional[Duration] = None
    max_workers: Optional[int] = None
    priority: Optional[int] = None
    params: Optional[Mapping[str, str]] = None
    notify: Optional[Notify] = None
    extra: Optional[Mapping[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        if not self.name:
            raise ValueError("a job spec needs a name")
        if not self.tasks:
            raise ValueError("a job spec needs at least one task")
        d: Dict[str, Any] = {"name": self.name}
        for f in ("namespace", "retries", "max_workers", "priority"):
            v = getattr(self, f)
            if v is not None:
                d[f] = v
        for f in ("labels", "env", "secret_env", "params"):
            v = getattr(self, f)
            if v is not None:
                d[f] = {k: str(x) for k, x in v.items()}
        if self.workers is not None:
            d["workers"] = [w.to_dict() for w in self.workers]
        if self.timeout is not None:
            d["timeout"] = duration(self.timeout)
        if self.notify is not None:
            d["notify"] = self.notify.to_dict()
        if self.extra:
            d.update(self.extra)
        d["tasks"] = [t.to_dict() if isinstance(t, Task) else dict(t) for t in self.tasks]
        return d

    def to_json(self) -> str:
        """The spec as JSON text, which is YAML: what submit sends."""
        return json.dumps(self.to_dict())


def tasks_fragment(tasks: Sequence[Union[Task, Mapping[str, Any]]]) -> Dict[str, Any]:
    """An AddTasks fragment ({"tasks": [...]}) from task entries."""
    return {"tasks": [t.to_dict() if isinstance(t, Task) else dict(t) for t in tasks]}


def _clean(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}
