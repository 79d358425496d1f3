"""haul_client against a real haul server: HAUL_SERVER and HAUL_API_TOKEN
(an admin's token) must name one, such as `haul up`'s
(internal/e2e/python_client_test.go runs this suite against one).

Tasks are ordinary unix processes (sh, echo, sleep) on the server's workers.
"""

from __future__ import annotations

import os
import time
import unittest
import uuid
from typing import List, Tuple

import haul_client
from haul_client import Client, JobSpec, Range, Task, Values


def server_client() -> Client:
    if not os.environ.get("HAUL_SERVER"):
        raise RuntimeError("these tests run against a haul server: set HAUL_SERVER (and HAUL_API_TOKEN)")
    return Client()


RUN = uuid.uuid4().hex[:8]


def poll(what: str, cond, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.1)


class ClientTest(unittest.TestCase):
    client: Client

    @classmethod
    def setUpClass(cls) -> None:
        cls.client = server_client()

    def test_whoami(self) -> None:
        me = self.client.whoami()
        self.assertTrue(me.subject)
        self.assertTrue(me.platform_admin, me)

    def test_submit_watch_list_get_logs(self) -> None:
        c = self.client
        spec = JobSpec(
            name="py-fanout-" + RUN,
            labels={"suite": "python", "run": RUN},
            env={"GREETING": "hello"},
            retries=1,
            timeout="1m",
            tasks=[
                Task("prep", ["sh", "-c", "echo preparing"]),
                Task("sq-{i}", ["sh", "-c", "echo $GREETING {i} $(({i}*{i}))"], foreach=Range(0, 5), after=["prep"]),
                Task("cam-{item}", ["echo", "camera", "{item}"], foreach=Values(["front", "left"]), after=["prep"]),
                Task("sum", ["sh", "-c", "echo err >&2; echo summed"], after=["sq-*", "cam-*"], env={"X": "1"}),
            ],
        )
        job_id = c.submit(spec)
        self.assertTrue(job_id)

        seen: List[haul_client.Job] = list(c.watch(job_id))
        self.assertGreaterEqual(len(seen), 1)
        final = seen[-1]
        self.assertEqual(final.id, job_id)
        self.assertEqual(final.state, "succeeded", final)
        self.assertTrue(final.done)
        self.assertEqual(final.task_count, 9)
        self.assertIsInstance(final.task_count, int)
        self.assertEqual(final.counts.succeeded, 9)
        self.assertIsInstance(final.counts.succeeded, int)
        for earlier, later in zip(seen, seen[1:]):
            self.assertLessEqual(earlier.counts.succeeded, later.counts.succeeded)

        job = c.get_job(job_id)
        self.assertEqual(job.name, "py-fanout-" + RUN)
        self.assertEqual(job.labels, {"suite": "python", "run": RUN})
        self.assertEqual(job.state, "succeeded")
        self.assertTrue(job.finished_at)
        # wait on an ended job returns at once.
        self.assertEqual(c.wait(job_id, timeout=30).state, "succeeded")

        listed = [j.id for j in c.list_jobs(labels={"run": RUN}, name_glob="py-fanout-*")]
        self.assertEqual(listed, [job_id])
        self.assertIn(job_id, [j.id for j in c.list_jobs(id_prefix=job_id[:8])])

        tasks = list(c.list_tasks(job_id, page_size=2))  # five pages
        self.assertEqual([t.key for t in tasks], ["prep", "sq-0", "sq-1", "sq-2", "sq-3", "sq-4", "cam-front", "cam-left", "sum"])
        self.assertTrue(all(t.state == "succeeded" for t in tasks))
        self.assertEqual([t.key for t in c.list_tasks(job_id, key_glob="cam-*")], ["cam-front", "cam-left"])

        detail = c.get_task(job_id, "sq-3")
        self.assertEqual(detail.task.command, ["sh", "-c", "echo $GREETING 3 $((3*3))"])
        self.assertEqual(detail.task.after, ["prep"])
        self.assertEqual(len(detail.attempts), 1)
        self.assertEqual(detail.attempts[0].state, "succeeded")
        self.assertEqual(detail.attempts[0].number, 1)
        self.assertEqual(detail.job_env.get("GREETING"), "hello")

        self.assertEqual(c.log_text(job_id, "sq-3"), "hello 3 9\n")
        chunks = list(c.logs(job_id, "sum"))
        self.assertEqual(b"".join(d for s, d in chunks if s == "stdout"), b"summed\n")
        self.assertEqual(b"".join(d for s, d in chunks if s == "stderr"), b"err\n")
        self.assertEqual(b"".join(d for _, d in c.logs(job_id, "sum", streams=["stderr"])), b"err\n")

        why = c.why(job_id)
        self.assertEqual(why.state, "succeeded")
        self.assertEqual(why.blockers, [])

    def test_list_pages(self) -> None:
        c = self.client
        label = "pages-" + RUN
        ids = [c.submit({"name": "py-page-%d" % i, "labels": {"run": label}, "tasks": [{"key": "t", "command": ["true"]}]}) for i in range(3)]
        got = [j.id for j in c.list_jobs(labels={"run": label}, page_size=1)]
        self.assertEqual(sorted(got), sorted(ids))
        self.assertEqual(len(got), 3)
        for i in ids:
            c.wait(i, timeout=120)

    def test_follow_running_task(self) -> None:
        c = self.client
        job_id = c.submit(
            JobSpec(
                name="py-follow-" + RUN,
                tasks=[Task("talk", ["sh", "-c", "echo one; sleep 2; echo two; sleep 1; echo three >&2"])],
            )
        )
        poll("the task to run", lambda: c.get_task(job_id, "talk").task.state == "running")
        got: List[Tuple[str, bytes]] = []
        times: List[float] = []
        for stream, data in c.logs(job_id, "talk", follow=True):
            got.append((stream, data))
            times.append(time.monotonic())
        out = b"".join(d for s, d in got if s == "stdout")
        err = b"".join(d for s, d in got if s == "stderr")
        self.assertEqual(out, b"one\ntwo\n")
        self.assertEqual(err, b"three\n")
        # Followed, not read at the end: the chunks came over seconds.
        self.assertGreater(times[-1] - times[0], 1.0, got)
        self.assertEqual(c.wait(job_id, timeout=60).state, "succeeded")

    def test_cancel(self) -> None:
        c = self.client
        job_id = c.submit(JobSpec(name="py-cancel-" + RUN, tasks=[Task("long-{i}", ["sleep", 300], foreach=Range(0, 2)), Task("after", ["true"], after=["long-*"])]))
        poll("a task to run", lambda: c.get_job(job_id).counts.running > 0)
        job = c.cancel(job_id)
        self.assertEqual(job.id, job_id)
        final = c.wait(job_id, timeout=60)
        self.assertEqual(final.state, "cancelled", final)
        self.assertEqual(final.counts.succeeded, 0)
        states = {t.key: t.state for t in c.list_tasks(job_id)}
        self.assertEqual(set(states.values()) - {"cancelled", "upstream_failed"}, set(), states)

    def test_cancel_task(self) -> None:
        c = self.client
        job_id = c.submit(JobSpec(name="py-cancel-task-" + RUN, tasks=[Task("stuck", ["sleep", 300]), Task("fine", ["true"])]))
        poll("stuck to run", lambda: c.get_task(job_id, "stuck").task.state == "running")
        t = c.cancel_task(job_id, "stuck")
        self.assertEqual(t.key, "stuck")
        final = c.wait(job_id, timeout=60)
        self.assertEqual(c.get_task(job_id, "stuck").task.state, "cancelled")
        self.assertEqual(c.get_task(job_id, "fine").task.state, "succeeded")
        self.assertNotEqual(final.state, "succeeded")

    def test_add_tasks_to_running_job(self) -> None:
        c = self.client
        job_id = c.submit(JobSpec(name="py-dynamic-" + RUN, tasks=[Task("hold", ["sleep", 6])]))
        poll("hold to run", lambda: c.get_task(job_id, "hold").task.state == "running")
        added = c.add_tasks(
            job_id,
            [
                Task("part-{i}", ["sh", "-c", "echo part {i}"], foreach=Range(0, 3), after=["hold"]),
                Task("merge", ["echo", "merged"], after=["part-*"]),
            ],
        )
        self.assertEqual(added.keys, ["part-0", "part-1", "part-2", "merge"])
        self.assertEqual(added.task_count, 5)
        self.assertIsInstance(added.task_count, int)
        # Text works as well (YAML).
        more = c.add_tasks(job_id, "tasks:\n  - key: tail\n    command: [echo, tail]\n    after: [merge]\n")
        self.assertEqual(more.keys, ["tail"])
        final = c.wait(job_id, timeout=120)
        self.assertEqual(final.state, "succeeded", final)
        self.assertEqual(final.task_count, 6)
        self.assertEqual(final.counts.succeeded, 6)
        self.assertEqual(c.log_text(job_id, "part-2"), "part 2\n")

    def test_retry_failed_job(self) -> None:
        c = self.client
        # fail-1's first attempt fails; any later attempt (numbered on after
        # a retry) succeeds.
        spec = JobSpec(
            name="py-retry-" + RUN,
            retries=0,
            tasks=[
                Task("fail-{i}", ["sh", "-c", 'echo attempt $HAUL_ATTEMPT of {i}; test {i} != 1 || test "$HAUL_ATTEMPT" -gt 1'], foreach=Range(0, 3)),
                Task("report", ["echo", "report"], after=["fail-*"]),
            ],
        )
        job_id = c.submit(spec)
        job = c.wait(job_id, timeout=120)
        self.assertEqual(job.state, "failed", job)
        self.assertEqual((job.counts.succeeded, job.counts.failed, job.counts.upstream_failed), (2, 1, 1))

        failed = list(c.list_tasks(job_id, states=["failed"]))
        self.assertEqual([t.key for t in failed], ["fail-1"])
        self.assertEqual(failed[0].exit_code, 1)
        self.assertEqual(c.log_text(job_id, "fail-1"), "attempt 1 of 1\n")

        try:
            res = c.retry(job_id)
        except haul_client.Unimplemented as e:
            self.fail("RetryJob is not implemented by this server: %s" % e)
        # The failed element and report (upstream_failed) match; both run again.
        self.assertEqual(res.keys, ["fail-1", "report"])
        self.assertEqual(res.retried, 2)
        self.assertIsInstance(res.retried, int)

        # At once, as a user would: a watch must not serve the run before
        # the retry (retries 0, the old end state).
        final = c.wait(job_id, timeout=120)
        self.assertEqual((final.state, final.retries), ("succeeded", 1), final)
        self.assertEqual(final.counts.succeeded, 4)
        detail = c.get_task(job_id, "fail-1")
        self.assertEqual([a.number for a in detail.attempts], [1, 2])
        self.assertEqual([a.state for a in detail.attempts], ["failed", "succeeded"])
        self.assertEqual(c.log_text(job_id, "fail-1", attempt=1), "attempt 1 of 1\n")
        self.assertEqual(c.log_text(job_id, "fail-1"), "attempt 2 of 1\n")
        # fail-0 succeeded and did not run again.
        self.assertEqual(len(c.get_task(job_id, "fail-0").attempts), 1)

    def test_retry_running_job_refused(self) -> None:
        c = self.client
        job_id = c.submit(JobSpec(name="py-retry-running-" + RUN, tasks=[Task("long", ["sleep", 300])]))
        poll("long to run", lambda: c.get_task(job_id, "long").task.state == "running")
        try:
            with self.assertRaises(haul_client.HaulError) as cm:
                c.retry(job_id)
            self.assertNotIsInstance(cm.exception, haul_client.Unimplemented, "RetryJob is not implemented by this server")
            self.assertIsInstance(cm.exception, haul_client.FailedPrecondition)
        finally:
            c.cancel(job_id)

    def test_errors(self) -> None:
        c = self.client
        with self.assertRaises(haul_client.NotFound) as cm:
            c.get_job("no-such-job-" + RUN)
        self.assertEqual(cm.exception.code, "not_found")
        with self.assertRaises(haul_client.NotFound):
            list(c.watch("no-such-job-" + RUN))
        with self.assertRaises(haul_client.InvalidArgument) as cm2:
            c.submit(JobSpec(name="py-bad-" + RUN, tasks=[Task("t", ["true"], after=["nowhere"])]))
        self.assertIn("nowhere", cm2.exception.message)
        with self.assertRaises(haul_client.InvalidArgument):
            c.submit("name: [unterminated\n")
        with self.assertRaises(haul_client.Unauthenticated):
            Client(c.server, token="haul_not-a-real-token").get_job("x")
        with self.assertRaises(haul_client.Unavailable):
            Client("http://127.0.0.1:1", token="t").whoami()

    def test_wait_timeout(self) -> None:
        c = self.client
        job_id = c.submit(JobSpec(name="py-timeout-" + RUN, tasks=[Task("long", ["sleep", 300])]))
        try:
            start = time.monotonic()
            with self.assertRaises(TimeoutError):
                c.wait(job_id, timeout=1.5)
            self.assertLess(time.monotonic() - start, 15)
        finally:
            c.cancel(job_id)


if __name__ == "__main__":
    unittest.main()
