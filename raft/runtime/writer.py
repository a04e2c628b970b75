"""The durable writer: one thread that makes the node's WAL writes durable while the driver
goes on (etcd-raft's "asynchronous storage writes", docs/runtime.md).

The driver writes entries into the WAL itself (a ``pwrite`` into the page cache, microseconds)
and hands the writer a :class:`~raft.storage.disk.SyncTicket` per Ready. The writer takes
every ticket queued since its last sync and makes them durable with ONE ``fdatasync`` (the
newest ticket covers the older ones: same file, or an older segment that the roll already
synced; the hard state is a record in the WAL), then reports the batch back to the driver's loop
as a local message ("durable up to here"). Tickets are reported in the order they were
submitted, which is the order :meth:`raft.core.RawNode.advance_append` needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable

from raft.storage.disk import SyncTicket


class DurableWriter:
    """Owns the fsyncs of one node; ``on_done(n, seconds)`` runs on ``loop`` when the next
    ``n`` submitted tickets are durable (or failed: each ticket's ``error`` says), with the
    seconds their one sync took."""

    def __init__(
        self,
        name: str,
        loop: asyncio.AbstractEventLoop,
        on_done: Callable[[int, float], None],
    ) -> None:
        self._loop = loop
        self._on_done = on_done
        self._q: queue.SimpleQueue[SyncTicket | None] = queue.SimpleQueue()
        self.syncs = 0
        """fdatasync batches done (for metrics: how many tickets share one sync)."""
        self._thread = threading.Thread(target=self._run, name=f"wal-writer-{name}", daemon=True)
        self._thread.start()

    def submit(self, ticket: SyncTicket) -> None:
        self._q.put(ticket)

    def stop(self) -> None:
        """Finish what was submitted, then end the thread (blocks: call via to_thread)."""
        self._q.put(None)
        self._thread.join()

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._q.get()
            if first is None:
                return
            batch = [first]
            while True:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            t0 = time.monotonic()
            run_batch(batch)
            took = time.monotonic() - t0
            self.syncs += 1
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
                self._loop.call_soon_threadsafe(self._on_done, len(batch), took)


def run_batch(batch: list[SyncTicket]) -> None:
    """Make every ticket of ``batch`` durable with one sync of the newest WAL point (an older
    point is in the same file, or in a segment its roll already synced; hard state records
    are in the WAL with the entries); every ticket shares the outcome."""
    for t in batch[:-1]:
        with contextlib.suppress(OSError):
            os.close(t.point.fd)
    last = batch[-1]
    last.run()
    for t in batch:
        t.error = last.error
