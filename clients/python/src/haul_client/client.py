"""Client of haul's JobService over the Connect protocol in JSON."""

from __future__ import annotations

import base64
import datetime
import json
import os
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import connect
from .errors import HTTP_CODES, HaulError, Unavailable, error
from .models import (
    AddTasksResult,
    Job,
    RetryResult,
    Task,
    TaskDetail,
    WhoAmI,
    WhyResult,
    camel_request,
    decode,
    log_stream_name,
)
from .spec import JobSpec, Task as TaskEntry, tasks_fragment

DEFAULT_SERVER = "http://127.0.0.1:7070"
JOB_SERVICE = "haul.api.v1.JobService"

SpecLike = Union[JobSpec, Mapping[str, Any], str, bytes]

_SORTS = {
    "": "TASK_SORT_UNSPECIFIED",
    "index": "TASK_SORT_UNSPECIFIED",
    "duration": "TASK_SORT_DURATION",
    "peak_memory": "TASK_SORT_PEAK_MEMORY",
    "peak-memory": "TASK_SORT_PEAK_MEMORY",
    "memory": "TASK_SORT_PEAK_MEMORY",
}
_LOG_STREAMS = {"stdout": "LOG_STREAM_STDOUT", "stderr": "LOG_STREAM_STDERR"}


def spec_bytes(spec: SpecLike) -> bytes:
    """The text a spec is sent as: YAML or JSON as given, or JSON of a dict or JobSpec."""
    if isinstance(spec, JobSpec):
        return spec.to_json().encode()
    if isinstance(spec, bytes):
        return spec
    if isinstance(spec, str):
        return spec.encode()
    return json.dumps(dict(spec)).encode()


def _timestamp(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


class Client:
    """A connection to a haul server's API.

    server defaults to $HAUL_SERVER, then http://127.0.0.1:7070; token to
    $HAUL_API_TOKEN (none: calls are unauthenticated). timeout bounds each
    unary call, in seconds; streams wait as long as the server streams.
    """

    def __init__(self, server: Optional[str] = None, token: Optional[str] = None, timeout: float = 60.0) -> None:
        self.server = (server or os.environ.get("HAUL_SERVER") or DEFAULT_SERVER).rstrip("/")
        self.token = token if token is not None else os.environ.get("HAUL_API_TOKEN") or None
        self.timeout = timeout

    # -- transport --------------------------------------------------------

    def _headers(self, content_type: str) -> Dict[str, str]:
        h = {"Content-Type": content_type, "Connect-Protocol-Version": "1", "User-Agent": "haul-client-python/0.1"}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        return h

    def _open(self, method: str, body: bytes, content_type: str, timeout: Optional[float], headers: Optional[Dict[str, str]] = None) -> Any:
        url = "%s/%s/%s" % (self.server, JOB_SERVICE, method)
        h = self._headers(content_type)
        if headers:
            h.update(headers)
        req = urllib.request.Request(url, data=body, headers=h, method="POST")
        try:
            return urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            raise _http_error(e) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise error("unavailable", "cannot reach the haul server at %s: %s" % (self.server, reason)) from e

    def call(self, method: str, request: Dict[str, Any]) -> Dict[str, Any]:
        """A unary JobService call: the response's JSON."""
        with self._open(method, json.dumps(request).encode(), "application/json", self.timeout) as resp:
            data = resp.read()
        return json.loads(data or b"{}")

    def stream(self, method: str, request: Dict[str, Any], timeout: Optional[float] = None) -> Iterator[Dict[str, Any]]:
        """A server-streaming JobService call: its messages' JSON, in order.

        timeout (seconds) bounds the whole stream: the server ends it with
        deadline_exceeded (raised as DeadlineExceeded, a TimeoutError).
        """
        headers = {}
        if timeout is not None:
            headers["Connect-Timeout-Ms"] = str(max(1, int(timeout * 1000)))
        sock_timeout = None if timeout is None else timeout + 10
        resp = self._open(method, connect.encode_envelope(request), "application/connect+json", sock_timeout, headers)
        try:
            ctype = resp.headers.get("Content-Type", "")
            if not ctype.startswith("application/connect+json"):
                raise error("internal", "unexpected content type %r for a stream" % ctype)
            try:
                for msg in connect.stream_messages(resp):
                    yield msg
            except socket.timeout:
                raise error("deadline_exceeded", "no answer from the server within %ss" % timeout) from None
        finally:
            resp.close()

    # -- jobs --------------------------------------------------------------

    def submit(self, spec: SpecLike, params: Optional[Mapping[str, str]] = None, filename: str = "") -> str:
        """Submits a job: a JobSpec, a dict, or YAML/JSON text. Returns the job's ID."""
        req: Dict[str, Any] = {"spec": base64.b64encode(spec_bytes(spec)).decode()}
        if params:
            req["params"] = {k: str(v) for k, v in params.items()}
        if filename:
            req["filename"] = filename
        return str(self.call("SubmitJob", req)["jobId"])

    def get_job(self, job_id: str) -> Job:
        return decode(Job, self.call("GetJob", {"jobId": job_id}).get("job"))

    def list_jobs(self, **filters: Any) -> Iterator[Job]:
        """Every job that matches, page after page.

        Filters (ListJobsRequest): namespace, states (list), name_glob,
        labels (dict), submitted_by, created_after, created_before
        (datetimes or RFC 3339 strings), id_prefix, mine, page_size.
        """
        req = camel_request({k: _timestamp(v) for k, v in filters.items()})
        if isinstance(req.get("states"), str):
            req["states"] = [req["states"]]
        while True:
            resp = self.call("ListJobs", req)
            for j in resp.get("jobs", []):
                yield decode(Job, j)
            token = resp.get("nextPageToken")
            if not token:
                return
            req["pageToken"] = token

    def watch(self, job_id: str, timeout: Optional[float] = None) -> Iterator[Job]:
        """The job at once, then each time its state or counts change (WatchJob); ends when it has ended."""
        for msg in self.stream("WatchJob", {"jobId": job_id}, timeout=timeout):
            yield decode(Job, msg.get("job"))

    def wait(self, job_id: str, timeout: Optional[float] = None) -> Job:
        """Waits for the job to end and returns it; DeadlineExceeded (a TimeoutError) after timeout seconds.

        A watch that ends before the job did (a gateway restarting) is
        started again.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise error("deadline_exceeded", "job %s had not ended after %ss" % (job_id, timeout))
            last: Optional[Job] = None
            try:
                for job in self.watch(job_id, timeout=remaining):
                    last = job
            except Unavailable:
                pass
            if last is not None and last.done:
                return last
            time.sleep(0.5 if remaining is None else max(0.0, min(0.5, deadline - time.monotonic())))  # type: ignore[operator]

    def cancel(self, job_id: str) -> Job:
        return decode(Job, self.call("CancelJob", {"jobId": job_id}).get("job"))

    def retry(self, job_id: str, tasks: Optional[str] = None, states: Optional[Sequence[str]] = None) -> RetryResult:
        """Runs an ended job's tasks again (RetryJob).

        tasks: a glob over task keys (default all); states: the states to
        retry (default failed, upstream_failed, cancelled).
        """
        req: Dict[str, Any] = {"jobId": job_id}
        if tasks:
            req["keyGlob"] = tasks
        if states:
            req["states"] = [states] if isinstance(states, str) else list(states)
        return decode(RetryResult, self.call("RetryJob", req))

    def rerun(self, job_id: str, params: Optional[Mapping[str, str]] = None) -> str:
        """Submits a new job from a job's stored spec, with params overridden. Returns its ID."""
        req: Dict[str, Any] = {"jobId": job_id}
        if params:
            req["params"] = {k: str(v) for k, v in params.items()}
        return str(self.call("RerunJob", req)["jobId"])

    def why(self, job_id: str, key: Optional[str] = None) -> WhyResult:
        """What keeps the job's tasks (or one task) from running now."""
        req: Dict[str, Any] = {"jobId": job_id}
        if key:
            req["taskKey"] = key
        return decode(WhyResult, self.call("Why", req))

    def whoami(self) -> WhoAmI:
        return decode(WhoAmI, self.call("WhoAmI", {}))

    # -- tasks -------------------------------------------------------------

    def list_tasks(self, job_id: str, **filters: Any) -> Iterator[Task]:
        """The job's tasks that match, page after page.

        Filters (ListTasksRequest): states (list), key_glob, exit_code,
        tier, reason, first_index, end_index, sort ("duration",
        "peak_memory"), descending, page_size.
        """
        req = camel_request(filters)
        req["jobId"] = job_id
        if isinstance(req.get("states"), str):
            req["states"] = [req["states"]]
        if "sort" in req:
            req["sort"] = _SORTS.get(str(req["sort"]).lower(), req["sort"])
        while True:
            resp = self.call("ListTasks", req)
            for t in resp.get("tasks", []):
                yield decode(Task, t)
            token = resp.get("nextPageToken")
            if not token:
                return
            req["pageToken"] = token

    def get_task(self, job_id: str, key: str) -> TaskDetail:
        return decode(TaskDetail, self.call("GetTask", {"jobId": job_id, "key": key}))

    def cancel_task(self, job_id: str, key: str) -> Task:
        return decode(Task, self.call("CancelTask", {"jobId": job_id, "key": key}).get("task"))

    def add_tasks(
        self,
        job_id: str,
        spec_fragment: Union[Sequence[Union[TaskEntry, Mapping[str, Any]]], Mapping[str, Any], str, bytes],
    ) -> AddTasksResult:
        """Appends tasks to a running job: a list of Task entries, a {"tasks": [...]} dict, or YAML/JSON text."""
        if isinstance(spec_fragment, (str, bytes)):
            body = spec_fragment.encode() if isinstance(spec_fragment, str) else spec_fragment
        elif isinstance(spec_fragment, Mapping):
            frag = dict(spec_fragment)
            if "tasks" in frag:
                frag["tasks"] = [t.to_dict() if isinstance(t, TaskEntry) else t for t in frag["tasks"]]
            body = json.dumps(frag).encode()
        else:
            body = json.dumps(tasks_fragment(spec_fragment)).encode()
        resp = self.call("AddTasks", {"jobId": job_id, "spec": base64.b64encode(body).decode()})
        return decode(AddTasksResult, resp)

    def logs(
        self,
        job_id: str,
        key: str,
        attempt: int = 0,
        follow: bool = False,
        streams: Optional[Sequence[str]] = None,
    ) -> Iterator[Tuple[str, bytes]]:
        """One attempt's output (0: the latest) as (stream, data) chunks, stream "stdout" or "stderr".

        With follow, chunks keep coming until the attempt ends.
        """
        req: Dict[str, Any] = {"jobId": job_id, "key": key}
        if attempt:
            req["attempt"] = attempt
        if follow:
            req["follow"] = True
        if streams:
            req["streams"] = [_LOG_STREAMS.get(s, s) for s in streams]
        for msg in self.stream("GetLogs", req):
            for chunk in msg.get("chunks", []):
                yield log_stream_name(chunk.get("stream")), base64.b64decode(chunk.get("data", ""))

    def log_text(self, job_id: str, key: str, attempt: int = 0) -> str:
        """An attempt's whole output (both streams, in arrival order) as text."""
        return b"".join(d for _, d in self.logs(job_id, key, attempt=attempt)).decode("utf-8", "replace")


def _http_error(e: urllib.error.HTTPError) -> HaulError:
    body = b""
    try:
        body = e.read()
    except OSError:
        pass
    try:
        obj = json.loads(body)
        if isinstance(obj, dict) and obj.get("code"):
            return error(str(obj["code"]), str(obj.get("message", "")))
    except ValueError:
        pass
    code = HTTP_CODES.get(e.code, "unknown")
    text = body.decode("utf-8", "replace").strip()[:500]
    return error(code, "HTTP %d %s%s" % (e.code, e.reason, (": " + text) if text else ""))


