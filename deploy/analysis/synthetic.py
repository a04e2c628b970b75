"""A small generator of realistic node event logs, for tests and demos of the analysis.

It is not Raft: it scripts what a Raft cluster would log (docs/formats.md) for a story the
caller tells -- elections, replication, heartbeats, crashes and restarts, a partitioned leader
whose uncommitted suffix is later truncated -- with real message ids (so happens-before can be
rebuilt), per-node clock offsets, a client history and a nemesis log. Bugs can be injected
on purpose (two leaders in a term, a diverging entry, a commit going back, an apply gap) so
the checkers have something to find. Every event also carries ``true_ts`` (the unskewed time)
so tests can judge the merge; readers ignore unknown fields.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SyntheticCluster", "digest", "standard_run"]


def digest(data: bytes) -> str:
    """The entry digest of docs/formats.md."""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


@dataclass(slots=True)
class _Node:
    name: str
    alive: bool = True
    term: int = 0
    vote: str = ""
    role: str = "follower"
    known_leader: str = ""
    log: list[tuple[int, str, bytes]] = field(default_factory=list)  # log[i-1] = index i
    commit: int = 0
    applied: int = 0
    durable_commit: int = 0
    boot_ts: float = 0.0
    counter: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


class SyntheticCluster:
    """Script a cluster's life; :meth:`write_run` lays it out as a run directory."""

    def __init__(
        self,
        nodes: int = 3,
        *,
        seed: int = 1,
        offsets: dict[str, float] | None = None,
        start_ts: float = 1_700_000_000.0,
        delay_ms: tuple[float, float] = (0.5, 4.0),
        register_value_range: int = 5,
    ) -> None:
        self.rng = random.Random(seed)
        self.names = [f"n{i + 1}" for i in range(nodes)]
        self.nodes = {n: _Node(n) for n in self.names}
        self.offsets = {n: (offsets or {}).get(n, 0.0) for n in self.names}
        self.t0 = start_ts
        self.t = start_ts
        self.delay_ms = delay_ms
        self.isolated: set[str] = set()
        self.leader: str = ""
        self.history: list[dict[str, Any]] = []
        self.nemesis: list[dict[str, Any]] = []
        self._process = 0
        self._value_range = register_value_range
        self.corrupt: dict[tuple[str, int], str] = {}  # (node, index) -> wrong digest to apply

    # -- plumbing --------------------------------------------------------------------------
    def tick(self, ms: float | None = None) -> None:
        self.t += (ms if ms is not None else self.rng.uniform(*self.delay_ms)) / 1000.0

    def emit(self, node: str, ev: str, **fields: Any) -> dict[str, Any]:
        n = self.nodes[node]
        obj: dict[str, Any] = {
            "ts": round(self.t + self.offsets[node], 6),
            "node": node,
            "term": n.term,
            "ev": ev,
        }
        obj.update(fields)
        obj["true_ts"] = round(self.t, 6)
        n.events.append(obj)
        self.tick(self.rng.uniform(0.01, 0.2))
        return obj

    def _send(self, src: str, dst: str, msg: str) -> str | None:
        """Log a send; return the id if the message gets through."""
        n = self.nodes[src]
        n.counter += 1
        mid = f"{src}:{n.boot_ts:.3f}:{n.counter}"
        self.emit(src, "send", to=dst, msg=msg, id=mid)
        if not self.nodes[dst].alive or src in self.isolated or dst in self.isolated:
            return None
        self.tick()
        return mid

    def _recv(self, dst: str, src: str, msg: str, mid: str) -> None:
        self.emit(dst, "recv", **{"from": src, "msg": msg, "id": mid})

    def _now_ns(self) -> int:
        return int((self.t - self.t0) * 1e9)

    def _fault(self, fault: str, action: str, targets: list[str], **extra: Any) -> None:
        self.nemesis.append(
            {
                "time": self._now_ns(),
                "ts": round(self.t, 6),
                "fault": fault,
                "action": action,
                "targets": targets,
                **extra,
            }
        )

    def _last(self, n: _Node) -> tuple[int, int]:
        return (len(n.log), n.log[-1][0]) if n.log else (0, 0)

    # -- lifecycle -------------------------------------------------------------------------
    def boot(self) -> None:
        for name in self.names:
            self._start(name)

    def _start(self, name: str) -> None:
        n = self.nodes[name]
        n.alive, n.role, n.counter, n.known_leader = True, "follower", 0, ""
        n.boot_ts = self.t + self.offsets[name]
        n.commit, n.applied = n.durable_commit, 0
        li, lt = self._last(n)
        self.emit(
            name,
            "start",
            v=1,
            commit=n.commit,
            applied=0,
            last_index=li,
            last_term=lt,
            vote=n.vote,
            voters=list(self.names),
        )
        self.emit(name, "role", role="follower", leader="")
        self._apply_up_to(name)

    def kill(self, name: str) -> None:
        self._fault("kill", "start", [name])
        n = self.nodes[name]
        n.alive = False
        if self.leader == name:
            self.leader = ""
        self.tick(50)

    def restart(self, name: str) -> None:
        self.tick(20)
        self._start(name)
        self._fault("kill", "stop", [name])

    def isolate(self, name: str) -> None:
        self.isolated.add(name)
        self._fault("partition", "start", [name], grudge="isolate")

    def heal(self) -> None:
        self._fault("partition", "stop", sorted(self.isolated))
        self.isolated.clear()

    def pause_fault(self, name: str, ms: float) -> None:
        """A fault window with no effect on the script (for shading tests)."""
        self._fault("pause", "start", [name])
        self.tick(ms)
        self._fault("pause", "stop", [name])

    # -- elections -------------------------------------------------------------------------
    def elect(self, cand: str, *, also_leader: str | None = None) -> None:
        """``cand`` wins the next term. ``also_leader`` injects a bug: that node also claims
        leadership of the same term (Election Safety violation)."""
        c = self.nodes[cand]
        c.term += 1
        c.vote = cand
        c.role = "candidate"
        self.emit(cand, "role", role="candidate", leader="")
        li, _ = self._last(c)
        for peer in self.names:
            if peer == cand:
                continue
            mid = self._send(cand, peer, "vote")
            if mid is None:
                continue
            p = self.nodes[peer]
            self._recv(peer, cand, "vote", mid)
            if c.term > p.term:
                p.term, p.vote = c.term, ""
                if p.role != "follower":
                    p.role, p.known_leader = "follower", ""
                    self.emit(peer, "role", role="follower", leader="")
            granted = p.vote in ("", cand) and li >= len(p.log)
            if granted:
                p.vote = cand
            self.emit(peer, "vote", candidate=cand, granted=granted, pre=False)
            rid = self._send(peer, cand, "vote_resp")
            if rid is not None:
                self._recv(cand, peer, "vote_resp", rid)
        c.role, c.known_leader = "leader", cand
        self.leader = cand
        self.emit(cand, "role", role="leader", leader=cand)
        if also_leader is not None:
            o = self.nodes[also_leader]
            o.term = c.term
            o.role = "leader"
            self.emit(also_leader, "role", role="leader", leader=also_leader)
            o.role = "follower"
            self.emit(also_leader, "role", role="follower", leader=cand)
        self._append(cand, [b""])  # the new leader's no-op
        self._replicate()

    # -- replication -----------------------------------------------------------------------
    def _append(self, leader: str, datas: list[bytes]) -> int:
        n = self.nodes[leader]
        first = len(n.log) + 1
        for d in datas:
            n.log.append((n.term, digest(d), d))
        ents = [[first + k, n.term, digest(d)] for k, d in enumerate(datas)]
        self.emit(leader, "persist", first=first, last=first + len(datas) - 1, entries=ents)
        return first + len(datas) - 1

    def _replicate(self) -> None:
        """The leader brings every reachable follower up to date, then commits and tells."""
        lname = self.leader
        if not lname:
            return
        ld = self.nodes[lname]
        acks = 1
        for peer in self.names:
            if peer == lname:
                continue
            p = self.nodes[peer]
            mid = self._send(lname, peer, "app")
            if mid is None:
                continue
            self._recv(peer, lname, "app", mid)
            if ld.term > p.term:
                p.term, p.vote = ld.term, ""
            if p.role != "follower" or p.known_leader != lname:
                p.role, p.known_leader = "follower", lname
                self.emit(peer, "role", role="follower", leader=lname)
            # Find the first index where the follower's log differs from the leader's.
            k = 0
            while k < min(len(p.log), len(ld.log)) and p.log[k][:2] == ld.log[k][:2]:
                k += 1
            if k < len(p.log):
                self.emit(peer, "truncate", **{"from": k + 1})
                del p.log[k:]
            if k < len(ld.log):
                add = ld.log[k:]
                p.log.extend(add)
                ents = [[k + 1 + j, t, dg] for j, (t, dg, _) in enumerate(add)]
                self.emit(peer, "persist", first=k + 1, last=len(p.log), entries=ents)
            rid = self._send(peer, lname, "app_resp")
            if rid is not None:
                self._recv(lname, peer, "app_resp", rid)
                acks += 1
        if acks * 2 > len(self.names) and len(ld.log) > ld.commit:
            self._commit(lname, len(ld.log))
            for peer in self.names:
                if peer == lname:
                    continue
                mid = self._send(lname, peer, "heartbeat")
                if mid is None:
                    continue
                self._recv(peer, lname, "heartbeat", mid)
                p = self.nodes[peer]
                if len(p.log) >= ld.commit and p.commit < ld.commit:
                    self._commit(peer, ld.commit)
                rid = self._send(peer, lname, "heartbeat_resp")
                if rid is not None:
                    self._recv(lname, peer, "heartbeat_resp", rid)

    def _commit(self, name: str, index: int) -> None:
        n = self.nodes[name]
        n.commit = index
        n.durable_commit = index
        self.emit(name, "commit", index=index, eterm=n.log[index - 1][0])
        self._apply_up_to(name)

    def _apply_up_to(self, name: str) -> None:
        n = self.nodes[name]
        if n.commit <= n.applied:
            return
        ents = []
        for i in range(n.applied + 1, n.commit + 1):
            term, dg, data = n.log[i - 1]
            dg = self.corrupt.get((name, i), dg)
            ents.append([i, term, dg, digest(b"ok:" + data)])
        n.applied = n.commit
        self.emit(name, "apply", entries=ents)

    # -- clients ---------------------------------------------------------------------------
    def write(self, count: int, *, batch: int = 1) -> None:
        """``count`` client writes through the leader (one client process per write slot)."""
        for done in range(0, count, batch):
            k = min(batch, count - done)
            procs = [self._next_process() for _ in range(k)]
            values = [self.rng.randrange(self._value_range) for _ in range(k)]
            for p, v in zip(procs, values, strict=True):
                self.history.append(
                    {
                        "process": p,
                        "type": "invoke",
                        "f": "write",
                        "key": None,
                        "value": v,
                        "time": self._now_ns(),
                    }
                )
            self.tick()
            if not self.leader:
                for p, v in zip(procs, values, strict=True):
                    self.history.append(
                        {
                            "process": p,
                            "type": "fail",
                            "f": "write",
                            "key": None,
                            "value": v,
                            "time": self._now_ns(),
                            "error": "no leader",
                        }
                    )
                continue
            lname = self.leader
            before = self.nodes[lname].commit
            last = self._append(lname, [json.dumps(["w", v]).encode() for v in values])
            self._replicate()
            ok = self.nodes[lname].commit >= last > before
            for p, v in zip(procs, values, strict=True):
                self.history.append(
                    {
                        "process": p,
                        "type": "ok" if ok else "info",
                        "f": "write",
                        "key": None,
                        "value": v,
                        "time": self._now_ns(),
                        "node": lname,
                    }
                )
                self.emit(
                    lname, "client", op="write", req=f"c{p}", outcome="ok" if ok else "timeout"
                )
            self.tick(self.rng.uniform(1, 10))

    def _next_process(self) -> int:
        self._process += 1
        return self._process - 1

    # -- injected bugs ---------------------------------------------------------------------
    def corrupt_apply(self, node: str, index: int) -> None:
        """``node`` will apply a different digest at ``index`` (State Machine Safety bug)."""
        self.corrupt[(node, index)] = digest(b"corrupt-%d" % index)

    def commit_regression(self, node: str) -> None:
        n = self.nodes[node]
        self.emit(node, "commit", index=max(n.commit - 2, 0), eterm=n.term)

    def apply_gap(self, node: str) -> None:
        n = self.nodes[node]
        i = n.applied + 2
        self.emit(node, "apply", entries=[[i, n.term, digest(b"gap"), digest(b"r")]])
        n.applied = i

    # -- output ----------------------------------------------------------------------------
    def write_run(self, run_dir: Path, *, with_history: bool = True) -> Path:
        """Lay out ``run_dir/nodes/<n>/events.jsonl``, ``history.jsonl``, ``nemesis.jsonl``."""
        run_dir.mkdir(parents=True, exist_ok=True)
        for name, n in self.nodes.items():
            d = run_dir / "nodes" / name
            d.mkdir(parents=True, exist_ok=True)
            (d / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in n.events))
        if with_history:
            (run_dir / "history.jsonl").write_text(
                "".join(json.dumps(h) + "\n" for h in self.history)
            )
        (run_dir / "nemesis.jsonl").write_text("".join(json.dumps(x) + "\n" for x in self.nemesis))
        return run_dir


def standard_run(
    run_dir: Path,
    *,
    seed: int = 1,
    nodes: int = 3,
    offsets: dict[str, float] | None = None,
    writes: int = 20,
    bug: str | None = None,
) -> SyntheticCluster:
    """A typical faulty run: elections, writes, leader kills and restarts, a partitioned
    leader whose uncommitted entries are later truncated. ``bug`` in ``double_leader``,
    ``diverge``, ``commit_regression``, ``apply_gap`` injects one violation."""
    c = SyntheticCluster(nodes, seed=seed, offsets=offsets)
    c.boot()
    c.tick(100)
    c.elect("n1")
    c.write(writes)
    if bug == "diverge":
        c.corrupt_apply("n3", c.nodes["n1"].commit + 3)
    c.write(writes)
    c.kill("n1")
    c.elect("n2", also_leader="n3" if bug == "double_leader" else None)
    c.write(writes)
    c.restart("n1")
    c.write(2)
    c.pause_fault("n3", 30)
    c.isolate("n2")
    c.write(3)  # n2 persists but cannot commit: uncommitted suffix
    c.elect("n3")
    c.write(writes)
    c.heal()
    c.write(writes)  # n2 learns it was deposed: truncate + persist
    if bug == "commit_regression":
        c.commit_regression("n1")
    if bug == "apply_gap":
        c.apply_gap("n2")
    c.kill("n3")
    c.elect("n1")
    c.write(writes)
    c.restart("n3")
    c.write(5)
    c.write_run(run_dir)
    return c


def add_impossible_read(run_dir: Path, c: SyntheticCluster) -> None:
    """Append to ``run_dir``'s history a read that returns a value nobody wrote, after
    everything else: the history is then not linearizable, whatever the nodes did."""
    t = c.history[-1]["time"] + 1000
    bad = [
        {"process": 900, "type": "invoke", "f": "read", "key": None, "value": None, "time": t},
        {"process": 900, "type": "ok", "f": "read", "key": None, "value": 42, "time": t + 10},
    ]
    with (run_dir / "history.jsonl").open("a", encoding="utf-8") as fh:
        fh.writelines(json.dumps(x) + "\n" for x in bad)
