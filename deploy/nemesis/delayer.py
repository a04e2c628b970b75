"""raftlab-nemesis-delayer: delay, jitter and reorder packets in userspace through NFQUEUE.

Where the kernel has no ``sch_netem`` (this machine), packets the nemesis wants delayed are
sent by an iptables rule to an NFQUEUE; this program reads them from the queue over
netlink (no library: the nfnetlink_queue messages are built with :mod:`struct`) and gives
each its ACCEPT verdict only after its delay: ``delay_ms`` plus a uniform jitter of
``+-jitter_ms``, or, for the ``reorder_p`` share, at once (so it overtakes the packets still
waiting, as netem's ``reorder`` does). Verdicts may be given out of order by packet id.

It needs only the Python standard library, so it is copied to a host and run there as
``python3 delayer.py --queue N ...``. The iptables rule uses ``--queue-bypass``: if this
process dies, packets flow again instead of being dropped. SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_META = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NF_ACCEPT = 1
MARK = "raftlab-nemesis-delayer"


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    pad = (4 - length % 4) % 4
    return struct.pack("=HH", length, kind) + payload + b"\0" * pad


def _msg(msg_type: int, flags: int, queue: int, attrs: bytes, seq: int = 0) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return (
        struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, seq, 0)
        + body
    )


def _config(sock: socket.socket, queue: int, attrs: bytes) -> None:
    sock.send(_msg(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, queue, attrs))
    data = sock.recv(65536)
    _length, kind = struct.unpack_from("=IH", data, 0)
    if kind == NLMSG_ERROR:
        (err,) = struct.unpack_from("=i", data, 16)
        if err != 0:
            raise OSError(-err, f"nfqueue config failed: {os.strerror(-err)}")


def open_queue(queue: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    _config(sock, queue, _attr(NFQA_CFG_CMD, struct.pack("=BxH", NFQNL_CFG_CMD_BIND, 0)))
    # Copy only metadata: the verdict needs the packet id, never the payload.
    _config(sock, queue, _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)))
    return sock


def packet_ids(data: bytes) -> list[int]:
    """The packet ids of the NFQNL_MSG_PACKET messages in one netlink read."""
    ids = []
    off = 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16:
            break
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            a = off + 20
            end = off + length
            while a + 4 <= end:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype & 0x7FFF == NFQA_PACKET_HDR:
                    (pid,) = struct.unpack_from("!I", data, a + 4)
                    ids.append(pid)
                a += (alen + 3) & ~3
        off += (length + 3) & ~3
    return ids


def verdict(sock: socket.socket, queue: int, packet_id: int) -> None:
    attrs = _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))
    sock.send(_msg(NFQNL_MSG_VERDICT, NLM_F_REQUEST, queue, attrs))


def run(
    sock: socket.socket, queue: int, delay_ms: float, jitter_ms: float, reorder_p: float, seed: int
) -> None:
    rng = random.Random(seed)
    stopping = False

    def on_term(_s: int, _f: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    pending: list[tuple[float, int, int]] = []  # (due, seq, packet id)
    seq = 0
    while not stopping:
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            verdict(sock, queue, heapq.heappop(pending)[2])
        timeout = max(0.0, pending[0][0] - now) if pending else 0.5
        try:
            ready, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        if not ready:
            continue
        try:
            data = sock.recv(1 << 16)
        except OSError as exc:
            if exc.errno == 105:  # ENOBUFS: the kernel dropped some queued packets
                continue
            raise
        now = time.monotonic()
        for pid in packet_ids(data):
            if reorder_p > 0 and rng.random() < reorder_p:
                verdict(sock, queue, pid)
                continue
            d = delay_ms + (rng.uniform(-jitter_ms, jitter_ms) if jitter_ms else 0.0)
            seq += 1
            heapq.heappush(pending, (now + max(0.0, d) / 1000.0, seq, pid))
    for _due, _seq, pid in sorted(pending):
        verdict(sock, queue, pid)
    sock.send(
        _msg(
            NFQNL_MSG_CONFIG,
            NLM_F_REQUEST,
            queue,
            _attr(NFQA_CFG_CMD, struct.pack("=BxH", NFQNL_CFG_CMD_UNBIND, 0)),
        )
    )
    sock.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=MARK, description=__doc__.split("\n")[0])
    p.add_argument("--queue", type=int, required=True)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--reorder", type=float, default=0.0, help="share sent at once")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pidfile", help="written once the queue is bound")
    p.add_argument("--mark", default=MARK, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    try:
        sock = open_queue(a.queue)
        if a.pidfile:  # written once bound: the nemesis waits for it before going on
            with open(a.pidfile + ".tmp", "w", encoding="ascii") as f:
                f.write(f"{os.getpid()}\n")
            os.replace(a.pidfile + ".tmp", a.pidfile)
        run(sock, a.queue, a.delay_ms, a.jitter_ms, a.reorder, a.seed)
    except OSError as exc:
        print(f"{MARK}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
