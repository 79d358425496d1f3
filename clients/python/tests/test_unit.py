"""Tests of haul_client that need no server: envelopes, errors, the spec builder, decoding."""

from __future__ import annotations

import datetime
import io
import json
import struct
import unittest

import haul_client
from haul_client import connect
from haul_client.client import _http_error
from haul_client.models import Job, TaskDetail, decode


def env(flags: int, payload: bytes) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


class TrickleReader(io.RawIOBase):
    """A reader that returns at most n bytes per read, as a socket may."""

    def __init__(self, data: bytes, n: int) -> None:
        self.data, self.n = data, n

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        k = self.n if size < 0 else min(size, self.n)
        out, self.data = self.data[:k], self.data[k:]
        return out


class EnvelopeTest(unittest.TestCase):
    def test_encode(self) -> None:
        b = connect.encode_envelope({"jobId": "j1"})
        self.assertEqual(b[0], 0)
        self.assertEqual(struct.unpack(">I", b[1:5])[0], len(b) - 5)
        self.assertEqual(json.loads(b[5:]), {"jobId": "j1"})

    def test_messages_then_end(self) -> None:
        data = env(0, b'{"a":1}') + env(0, b'{"a":2}') + env(2, b"{}")
        self.assertEqual(list(connect.parse_stream(data)), [{"a": 1}, {"a": 2}])

    def test_short_reads(self) -> None:
        data = env(0, b'{"job":{"id":"x"}}') * 3 + env(2, b'{"metadata":{}}')
        got = list(connect.stream_messages(TrickleReader(data, 3)))  # type: ignore[arg-type]
        self.assertEqual(got, [{"job": {"id": "x"}}] * 3)

    def test_end_stream_error(self) -> None:
        data = env(0, b"{}") + env(2, b'{"error":{"code":"not_found","message":"job x not found"}}')
        it = connect.parse_stream(data)
        self.assertEqual(next(it), {})
        with self.assertRaises(haul_client.NotFound) as cm:
            next(it)
        self.assertEqual(cm.exception.code, "not_found")
        self.assertEqual(cm.exception.message, "job x not found")

    def test_empty_end_stream(self) -> None:
        self.assertEqual(list(connect.parse_stream(env(2, b""))), [])

    def test_cut_streams(self) -> None:
        for data in (env(0, b"{}"), env(0, b'{"a":1}')[:-2], env(0, b"{}")[:3]):
            with self.assertRaises(haul_client.Unavailable):
                list(connect.parse_stream(data))

    def test_compressed_refused(self) -> None:
        with self.assertRaises(haul_client.Internal):
            list(connect.parse_stream(env(1, b"\x1f\x8b")))

    def test_error_classes(self) -> None:
        for code, cls in [
            ("not_found", haul_client.NotFound),
            ("permission_denied", haul_client.PermissionDenied),
            ("unauthenticated", haul_client.Unauthenticated),
            ("invalid_argument", haul_client.InvalidArgument),
            ("unimplemented", haul_client.Unimplemented),
            ("deadline_exceeded", haul_client.DeadlineExceeded),
        ]:
            e = haul_client.errors.error(code, "m")
            self.assertIsInstance(e, cls)
            self.assertIsInstance(e, haul_client.HaulError)
        self.assertIsInstance(haul_client.errors.error("deadline_exceeded", ""), TimeoutError)
        self.assertIs(type(haul_client.errors.error("brand_new", "m")), haul_client.HaulError)

    def test_http_error_body(self) -> None:
        import urllib.error

        body = io.BytesIO(b'{"code":"permission_denied","message":"no"}')
        e = _http_error(urllib.error.HTTPError("u", 403, "Forbidden", {}, body))  # type: ignore[arg-type]
        self.assertIsInstance(e, haul_client.PermissionDenied)
        self.assertEqual(e.message, "no")
        e = _http_error(urllib.error.HTTPError("u", 503, "Service Unavailable", {}, io.BytesIO(b"<html>")))  # type: ignore[arg-type]
        self.assertIsInstance(e, haul_client.Unavailable)
        self.assertIn("503", e.message)


class SpecBuilderTest(unittest.TestCase):
    def test_full_spec(self) -> None:
        spec = haul_client.JobSpec(
            name="resim",
            namespace="perception",
            labels={"purpose": "nightly"},
            env={"SCENES": "/data"},
            workers=[haul_client.Tier("small", cpu=1, memory="2Gi"), haul_client.Tier("big", cpu="4", memory="32Gi", gpu=1)],
            retries=2,
            timeout=datetime.timedelta(hours=1),
            max_workers=200,
            params={"date": ""},
            notify=haul_client.Notify("https://example.com/hook", on=["failed", "succeeded"]),
            tasks=[
                haul_client.Task("split", ["split-scenes"]),
                haul_client.Task("sim-{i}", ["run-sim", "--scene", "{i}", 3], foreach=haul_client.Range(0, 1000), after=["split"], env={"N": 1}),
                haul_client.Task("render-{item}", ["render", "{item}"], foreach=haul_client.Values(["front", "left"]), worker="big", after=["sim-*"]),
                haul_client.Task("report", ["sh", "-c", "echo done"], after=["render-*"], retries=0, timeout=600, cwd="/tmp"),
                haul_client.Task("odd-{i}", ["true"], foreach=haul_client.Range(1, 10, 2)),
            ],
        )
        d = spec.to_dict()
        self.assertEqual(
            d,
            {
                "name": "resim",
                "namespace": "perception",
                "retries": 2,
                "max_workers": 200,
                "labels": {"purpose": "nightly"},
                "env": {"SCENES": "/data"},
                "params": {"date": ""},
                "workers": [{"name": "small", "cpu": 1, "memory": "2Gi"}, {"name": "big", "cpu": "4", "memory": "32Gi", "gpu": 1}],
                "timeout": "3600s",
                "notify": {"webhook": "https://example.com/hook", "on": ["failed", "succeeded"]},
                "tasks": [
                    {"key": "split", "command": ["split-scenes"]},
                    {"key": "sim-{i}", "command": ["run-sim", "--scene", "{i}", "3"], "foreach": {"range": [0, 1000]}, "after": ["split"], "env": {"N": "1"}},
                    {"key": "render-{item}", "command": ["render", "{item}"], "foreach": {"values": ["front", "left"]}, "after": ["sim-*"], "worker": "big"},
                    {"key": "report", "command": ["sh", "-c", "echo done"], "after": ["render-*"], "cwd": "/tmp", "retries": 0, "timeout": "600s"},
                    {"key": "odd-{i}", "command": ["true"], "foreach": {"range": [1, 10, 2]}},
                ],
            },
        )
        # JSON is YAML: what submit sends.
        self.assertEqual(json.loads(haul_client.spec_bytes(spec)), d)

    def test_durations(self) -> None:
        self.assertEqual(haul_client.duration("1h30m"), "1h30m")
        self.assertEqual(haul_client.duration(90), "90s")
        self.assertEqual(haul_client.duration(0.25), "250ms")
        self.assertEqual(haul_client.duration(datetime.timedelta(minutes=2)), "120s")

    def test_mistakes(self) -> None:
        with self.assertRaises(TypeError):
            haul_client.Task("a", "echo hi").to_dict()  # type: ignore[arg-type]
        with self.assertRaises(ValueError):
            haul_client.Task("a", []).to_dict()
        with self.assertRaises(TypeError):
            haul_client.Task("a", ["true"], after="b").to_dict()  # type: ignore[arg-type]
        with self.assertRaises(ValueError):
            haul_client.JobSpec("empty").to_dict()

    def test_fragment(self) -> None:
        frag = haul_client.tasks_fragment([haul_client.Task("x-{i}", ["true"], foreach=haul_client.Range(0, 2)), {"key": "y", "command": ["true"]}])
        self.assertEqual(frag, {"tasks": [{"key": "x-{i}", "command": ["true"], "foreach": {"range": [0, 2]}}, {"key": "y", "command": ["true"]}]})

    def test_spec_text_as_given(self) -> None:
        self.assertEqual(haul_client.spec_bytes("name: a\n"), b"name: a\n")
        self.assertEqual(json.loads(haul_client.spec_bytes({"name": "a"})), {"name": "a"})


class DecodeTest(unittest.TestCase):
    def test_int64_strings(self) -> None:
        job = decode(
            Job,
            {
                "id": "j",
                "state": "running",
                "taskCount": "1000",
                "counts": {"succeeded": "998", "running": "2"},
                "workers": [{"name": "small", "cpu": 1, "memoryBytes": "1073741824"}],
                "usage": {"peakRssBytes": "12", "cpuUsedSeconds": 1.5},
                "createdAt": "2026-01-01T00:00:00Z",
                "labels": {"a": "b"},
                "future": 1,
            },
        )
        self.assertEqual(job.task_count, 1000)
        self.assertEqual(job.counts.succeeded, 998)
        self.assertEqual(job.counts.failed, 0)
        self.assertEqual(job.workers[0].memory_bytes, 1 << 30)
        self.assertEqual(job.usage.peak_rss_bytes, 12)
        self.assertEqual(job.labels, {"a": "b"})
        self.assertFalse(job.done)
        self.assertEqual(job.raw["future"], 1)

    def test_nested(self) -> None:
        d = decode(TaskDetail, {"task": {"key": "k", "state": "failed", "exitCode": 3}, "attempts": [{"number": 1, "peakRssBytes": "5"}]})
        self.assertEqual(d.task.exit_code, 3)
        self.assertTrue(d.task.done)
        self.assertEqual(d.attempts[0].peak_rss_bytes, 5)


if __name__ == "__main__":
    unittest.main()
