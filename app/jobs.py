"""Long engine jobs from a tab or an API endpoint: worker thread, progress, Stop and errors.

`run_job(work)` runs `work(on_step, stop_event)` in a worker thread and yields
`("step", record)` for every record the engine reports, `("tick", None)` at least every
HEARTBEAT seconds while nothing new arrived, and finally `("done", result)`; an error in the
worker is raised in the caller. A Gradio handler that iterates it is a generator, so the UI's
Stop button and a client's `Job.cancel()` both close it: closing sets the stop event at once
and the engine ends the job at its next step check (a stopped training never installs its
adapter). The ticks keep every step of the handler short, so a cancel is answered within a
heartbeat instead of waiting for a long engine step. Jobs of one `exclusive` kind run one at
a time: a new one waits until a stopped one has really ended.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator

HEARTBEAT = 0.5  # seconds
_EXCLUSIVE: dict[str, threading.Lock] = {}
_DONE = object()


def run_job(work: Callable, exclusive: str | None = None, name: str = "lethe-job",
            stop_event: threading.Event | None = None) -> Iterator[tuple[str, object]]:
    event = stop_event or threading.Event()
    q: queue.Queue = queue.Queue()
    outcome: dict = {}
    gate = _EXCLUSIVE.setdefault(exclusive, threading.Lock()) if exclusive else None

    def worker():
        try:
            if gate is not None:
                gate.acquire()
            try:
                if not event.is_set():
                    outcome["result"] = work(q.put, event)
            finally:
                if gate is not None:
                    gate.release()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc
        finally:
            q.put(_DONE)

    thread = threading.Thread(target=worker, name=name, daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = q.get(timeout=HEARTBEAT)
            except queue.Empty:
                yield "tick", None
                continue
            if item is _DONE:
                break
            yield "step", item
    finally:  # Stop, a cancel, a disconnect (the generator is closed) or an error: tell the worker
        event.set()
    if "error" in outcome:
        raise outcome["error"]
    if event.is_set() and "result" not in outcome:
        raise RuntimeError("The job was stopped before it finished.")
    yield "done", outcome.get("result")
