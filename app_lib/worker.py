"""The web app's one inference worker: a bounded queue of jobs run one at a time on a thread of its own, with
the progress of each job readable by its token while the client waits.

The event loop only puts a job on the queue and awaits its future; decoding, inference and encoding all run on
the worker thread, so a slow request never blocks the server and two requests never share the model at once.
"""

import collections
import concurrent.futures
import queue
import threading

from dnnlib import UserError

MAX_PENDING = 64  # jobs waiting or running; more is answered 503 (busy) at once
KEEP_FINISHED = 256  # finished jobs whose progress is still readable


class Busy(UserError):
    """The queue is full (HTTP 503)."""


class _Job:
    def __init__(self, fn, token):
        self.fn = fn  # fn(report) -> result; report(done, total) updates the progress
        self.token = token
        self.future = concurrent.futures.Future()
        self.state, self.done, self.total = "queued", 0, 0


class Worker:
    """submit(fn, token) -> a concurrent.futures.Future of fn(report), run in submission order."""

    def __init__(self, max_pending=MAX_PENDING):
        self.max_pending = max_pending
        self._queue = queue.Queue()
        self._lock = threading.Lock()  # guards the bookkeeping below, never held while a job runs
        self._pending = collections.OrderedDict()  # id -> job, queued or running, in order
        self._finished = collections.OrderedDict()  # token -> last progress
        self._thread = threading.Thread(target=self._loop, name="inference-worker", daemon=True)
        self._thread.start()

    def submit(self, fn, token=None):
        job = _Job(fn, token)
        with self._lock:
            if len(self._pending) >= self.max_pending:
                raise Busy(f"the server is busy ({self.max_pending} requests waiting); try again shortly")
            self._pending[id(job)] = job
        self._queue.put(job)
        return job.future

    def progress(self, token):
        """{'state': queued|running|done|unknown, 'ahead': jobs before it, 'done': steps, 'total': steps}."""
        with self._lock:
            for ahead, job in enumerate(self._pending.values()):
                if job.token == token:
                    return dict(state=job.state, ahead=ahead, done=job.done, total=job.total)
            if token in self._finished:
                return dict(self._finished[token])
        return dict(state="unknown", ahead=0, done=0, total=0)

    def close(self):
        """Stop after the jobs already queued."""
        self._queue.put(None)
        self._thread.join(timeout=60)

    def _report(self, job):
        def report(done, total):
            with self._lock:
                job.done, job.total = int(done), int(total)
        return report

    def _loop(self):
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                job.state = "running"
            if job.future.set_running_or_notify_cancel():
                try:
                    job.future.set_result(job.fn(self._report(job)))
                except BaseException as err:  # the route re-raises it; a UserError becomes a 4xx there
                    job.future.set_exception(err)
            job.fn = job.future = None  # the route holds the future; nothing of the request stays here
            with self._lock:
                job.state = "done"
                self._pending.pop(id(job), None)
                if job.token:
                    self._finished[job.token] = dict(state="done", ahead=0, done=job.done, total=job.total)
                    while len(self._finished) > KEEP_FINISHED:
                        self._finished.popitem(last=False)
