"""Runs the core's interaction scripts: commands in, a readable protocol trace out.

Script format (``testdata/*.txt``): blocks separated by blank lines. A block is a command
line, a ``----`` line, and the expected output (no blank lines inside). Lines starting with
``#`` before a command are comments and are kept on rewrite. Nodes are named ``n1``,
``n2``, ...; commands refer to them by number.

Commands:
  add-nodes N [pre-vote=BOOL] [check-quorum=BOOL] [read-only=safe|lease] [election=T]
            [heartbeat=T] [max-inflight=N] [max-msg-bytes=N] [max-uncommitted=N] [seed=N]
  add-node I                      fresh node, bootstrap membership (joins via conf change)
  campaign I | propose I DATA | read-index I CTX | transfer-leader I J
  propose-conf-change I [joint] [manual] v4 l5 r2   (add voter, add learner, remove)
  tick I N | tick-election I | tick-heartbeat I
  process-ready I | deliver-msgs I | stabilize | drop-msgs
  partition I [J ...] | cut I J | heal
  compact I INDEX | restart I | report-unreachable I J | report-snapshot I J ok|fail
  lose-tail I KEEP [recovering]   crash I; it restarts holding entries 1..KEEP only (a cut
                                  tail, a repair; KEEP=0: a wiped log), term and vote kept
  log I | status I | raft-state
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from raft.core import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    Config,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RaftError,
    RawNode,
    ReadOnlyOption,
    Ready,
    Role,
    decode_conf_change,
)

MT = MessageType
MAX_STABILIZE_ROUNDS = 200


def nid(arg: str) -> str:
    if not arg.isdigit():
        raise ValueError(f"node number expected, got {arg!r}")
    return f"n{arg}"


def fmt_entry(e: Entry) -> str:
    if e.type == EntryType.CONF_CHANGE:
        cc = decode_conf_change(e.data)
        if not cc.changes:
            return f"{e.index}/{e.term} conf:leave-joint"
        parts = " ".join(f"{c.type.value}:{c.node}" for c in cc.changes)
        flags = " joint" if cc.joint or len(cc.changes) > 1 else ""
        flags += "" if cc.auto_leave else " manual"
        return f"{e.index}/{e.term} conf:[{parts}]{flags}"
    return f"{e.index}/{e.term} {e.data.decode(errors='replace')!r}"


def fmt_entries(ents: tuple[Entry, ...] | list[Entry]) -> str:
    return "[" + ", ".join(fmt_entry(e) for e in ents) + "]"


def fmt_msg(m: Message) -> str:
    s = f"{m.sender}->{m.to} {m.type.name} t{m.term}"
    t = m.type
    if t == MT.APP:
        s += f" prev={m.index}/{m.log_term} commit={m.commit}"
        if m.entries:
            s += f" entries={fmt_entries(m.entries)}"
    elif t == MT.APP_RESP:
        if m.reject:
            s += f" REJECT index={m.index} hint={m.reject_hint}/{m.log_term}"
        else:
            s += f" index={m.index}"
    elif t in (MT.VOTE, MT.PRE_VOTE):
        s += f" last={m.index}/{m.log_term}"
    elif t in (MT.VOTE_RESP, MT.PRE_VOTE_RESP):
        s += " REJECT" if m.reject else " granted"
    elif t == MT.HEARTBEAT:
        s += f" commit={m.commit}"
    elif t == MT.HEARTBEAT_RESP and m.reject:
        s += f" LOST last={m.index}"
    elif t == MT.SNAP and m.snapshot is not None:
        meta = m.snapshot.meta
        s += f" snap={meta.index}/{meta.term} voters={','.join(sorted(meta.conf_state.voters))}"
    elif t == MT.READ_INDEX_RESP:
        s += f" index={m.index}"
    if m.context:
        s += f" ctx={m.context.decode(errors='replace')}"
    return s


@dataclass
class Box:
    node: RawNode
    storage: MemoryStorage
    cfg: Config
    applied_data: list[bytes] = field(default_factory=list)


class Env:
    def __init__(self) -> None:
        self.boxes: dict[str, Box] = {}
        self.inflight: list[Message] = []
        self.drop: Callable[[Message], bool] | None = None
        self.opts: dict[str, object] = {}
        self.seed = 1
        self.initial_voters: tuple[str, ...] = ()
        self.out: list[str] = []

    # -- plumbing ------------------------------------------------------------------------
    def p(self, line: str) -> None:
        self.out.append(line)

    def run(self, cmd: str) -> str:
        self.out = []
        args = cmd.split()
        name, rest = args[0], args[1:]
        handler = getattr(self, "cmd_" + name.replace("-", "_"), None)
        if handler is None:
            raise ValueError(f"unknown command {name!r}")
        try:
            handler(rest)
        except RaftError as e:
            self.p(f"error: {type(e).__name__}: {e}")
        return "\n".join(self.out) if self.out else "ok"

    def _config(self, node_id: str, voters: tuple[str, ...]) -> Config:
        o = self.opts
        return Config(
            id=node_id,
            voters=voters,
            election_timeout_ticks=int(str(o.get("election", 10))),
            heartbeat_ticks=int(str(o.get("heartbeat", 1))),
            pre_vote=o.get("pre-vote", "true") == "true",
            check_quorum=o.get("check-quorum", "true") == "true",
            read_only=ReadOnlyOption.LEASE_BASED
            if o.get("read-only") == "lease"
            else ReadOnlyOption.SAFE,
            max_inflight_msgs=int(str(o.get("max-inflight", 256))),
            max_msg_bytes=int(str(o.get("max-msg-bytes", 1 << 20))),
            max_uncommitted_bytes=int(str(o.get("max-uncommitted", 0))),
        )

    def _new_box(self, node_id: str, voters: tuple[str, ...]) -> Box:
        storage = MemoryStorage()
        cfg = self._config(node_id, voters)
        salt = int(node_id[1:])
        return Box(RawNode(cfg, storage, random.Random(self.seed * 1000 + salt)), storage, cfg)

    def node(self, arg: str) -> RawNode:
        return self.boxes[nid(arg)].node

    # -- Ready handling ------------------------------------------------------------------
    def _print_ready(self, node_id: str, rd: Ready) -> None:
        self.p(f"> {node_id} handling Ready")
        if rd.soft_state is not None:
            ss = rd.soft_state
            self.p(f"  soft: role={ss.role.value} leader={ss.leader or '-'}")
        if rd.hard_state is not None:
            hs = rd.hard_state
            self.p(f"  hard: term={hs.term} vote={hs.vote or '-'} commit={hs.commit}")
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            self.p(f"  snapshot: {meta.index}/{meta.term}")
        if rd.entries:
            self.p(f"  entries: {fmt_entries(rd.entries)}")
        if rd.must_sync:
            self.p("  must-sync")
        for m in rd.messages:
            self.p(f"  send: {fmt_msg(m)}")
        for m in rd.persisted_messages:
            self.p(f"  send-after-persist: {fmt_msg(m)}")
        if rd.committed_entries:
            self.p(f"  apply: {fmt_entries(rd.committed_entries)}")
        for rs in rd.read_states:
            self.p(f"  read-state: index={rs.index} ctx={rs.context.decode(errors='replace')}")
        for ev in rd.events:
            fields = " ".join(f"{k}={v}" for k, v in ev.fields)
            self.p(f"  event: {ev.ev} t{ev.term} {fields}")

    def _handle_ready(self, node_id: str) -> bool:
        box = self.boxes[node_id]
        if not box.node.has_ready():
            return False
        rd = box.node.ready()
        self._print_ready(node_id, rd)
        self.inflight.extend(rd.messages)
        if rd.snapshot is not None:
            box.storage.apply_snapshot(rd.snapshot)
            box.applied_data = [d for d in rd.snapshot.data.split(b",") if d]
        if rd.entries:
            box.storage.append(list(rd.entries))
        if rd.hard_state is not None:
            box.storage.set_hard_state(rd.hard_state)
        box.storage.sync()
        self.inflight.extend(rd.persisted_messages)
        for e in rd.committed_entries:
            if e.type == EntryType.CONF_CHANGE:
                cs = box.node.apply_conf_change(decode_conf_change(e.data))
                out = ",".join(sorted(cs.voters_outgoing))
                self.p(
                    f"  conf-applied: voters={','.join(sorted(cs.voters))}"
                    + (f" outgoing={out}" if out else "")
                    + (f" learners={','.join(sorted(cs.learners))}" if cs.learners else "")
                )
            elif e.data:
                box.applied_data.append(e.data)
        box.node.advance(rd)
        return True

    def _deliver_to(self, node_id: str) -> bool:
        mine = [m for m in self.inflight if m.to == node_id]
        if not mine:
            return False
        self.inflight = [m for m in self.inflight if m.to != node_id]
        self.p(f"> {node_id} receiving messages")
        for m in mine:
            if self.drop is not None and self.drop(m):
                self.p(f"  dropped: {fmt_msg(m)}")
                continue
            self.p(f"  {fmt_msg(m)}")
            try:
                self.boxes[node_id].node.step(m)
            except RaftError as e:  # pragma: no cover - peers' messages never raise
                self.p(f"  error: {type(e).__name__}: {e}")
        return True

    # -- commands ------------------------------------------------------------------------
    def cmd_add_nodes(self, args: list[str]) -> None:
        n = int(args[0])
        for kv in args[1:]:
            k, _, v = kv.partition("=")
            self.opts[k] = v
        self.seed = int(str(self.opts.get("seed", 1)))
        ids = tuple(f"n{i}" for i in range(1, n + 1))
        self.initial_voters = ids
        for node_id in ids:
            self.boxes[node_id] = self._new_box(node_id, ids)
        self.p(f"voters={','.join(ids)}")

    def cmd_add_node(self, args: list[str]) -> None:
        """A node added later starts from the bootstrap membership (like every node) and
        rebuilds the current one by applying the log's conf changes, or from a snapshot."""
        node_id = nid(args[0])
        self.boxes[node_id] = self._new_box(node_id, self.initial_voters)

    def cmd_campaign(self, args: list[str]) -> None:
        self.node(args[0]).campaign()

    def cmd_propose(self, args: list[str]) -> None:
        index, term = self.node(args[0]).propose(" ".join(args[1:]).encode())
        self.p(f"proposed index={index} term={term}")

    def cmd_propose_conf_change(self, args: list[str]) -> None:
        changes = []
        joint = False
        auto_leave = True
        kinds = {"v": ConfChangeType.ADD_NODE, "l": ConfChangeType.ADD_LEARNER}
        kinds["r"] = ConfChangeType.REMOVE_NODE
        for a in args[1:]:
            if a == "joint":
                joint = True
            elif a == "manual":
                auto_leave = False
            else:
                changes.append(ConfChangeSingle(type=kinds[a[0]], node=nid(a[1:])))
        cc = ConfChange(changes=tuple(changes), joint=joint, auto_leave=auto_leave)
        index, term = self.node(args[0]).propose_conf_change(cc)
        self.p(f"proposed index={index} term={term}")

    def cmd_read_index(self, args: list[str]) -> None:
        self.node(args[0]).read_index(args[1].encode())

    def cmd_transfer_leader(self, args: list[str]) -> None:
        self.node(args[0]).transfer_leader(nid(args[1]))

    def cmd_tick(self, args: list[str]) -> None:
        for _ in range(int(args[1])):
            self.node(args[0]).tick()

    def cmd_tick_election(self, args: list[str]) -> None:
        """Tick exactly until the node's (randomized) election timeout expires."""
        node = self.node(args[0])
        r = node.raft
        if r.role == Role.LEADER:
            n = r.cfg.election_timeout_ticks - r.election_elapsed
        else:
            n = r.randomized_election_timeout - r.election_elapsed
        for _ in range(max(n, 1)):
            node.tick()

    def cmd_tick_heartbeat(self, args: list[str]) -> None:
        node = self.node(args[0])
        for _ in range(node.raft.cfg.heartbeat_ticks):
            node.tick()

    def cmd_process_ready(self, args: list[str]) -> None:
        self._handle_ready(nid(args[0]))

    def cmd_deliver_msgs(self, args: list[str]) -> None:
        self._deliver_to(nid(args[0]))

    def cmd_drop_msgs(self, args: list[str]) -> None:
        for m in self.inflight:
            self.p(f"dropped: {fmt_msg(m)}")
        self.inflight = []

    def cmd_stabilize(self, args: list[str]) -> None:
        for _ in range(MAX_STABILIZE_ROUNDS):
            busy = False
            for node_id in sorted(self.boxes):
                busy |= self._handle_ready(node_id)
            for node_id in sorted(self.boxes):
                busy |= self._deliver_to(node_id)
            if not busy:
                return
        self.p(f"stabilize: still busy after {MAX_STABILIZE_ROUNDS} rounds")

    def cmd_partition(self, args: list[str]) -> None:
        group = {nid(a) for a in args}
        self.drop = lambda m: (m.sender in group) != (m.to in group)

    def cmd_cut(self, args: list[str]) -> None:
        pair = {nid(args[0]), nid(args[1])}
        self.drop = lambda m: {m.sender, m.to} == pair

    def cmd_heal(self, args: list[str]) -> None:
        self.drop = None

    def cmd_compact(self, args: list[str]) -> None:
        box = self.boxes[nid(args[0])]
        index = int(args[1])
        st = box.node.status()
        assert index <= st.applied, f"compact {index} beyond applied {st.applied}"
        data = b",".join(box.applied_data)
        box.storage.create_snapshot(index, st.conf_state, data)
        box.storage.compact(index)
        self.p(f"snapshot at {index}, first index now {box.storage.first_index()}")

    def cmd_restart(self, args: list[str]) -> None:
        node_id = nid(args[0])
        box = self.boxes[node_id]
        snap = box.storage.snapshot()
        cfg = self._config(node_id, box.cfg.voters)
        box.node = RawNode(cfg, box.storage, random.Random(self.seed * 7919))
        box.applied_data = [d for d in snap.data.split(b",") if d]
        self.p(f"restarted {node_id} from storage (snapshot {snap.meta.index})")

    def cmd_lose_tail(self, args: list[str]) -> None:
        node_id = nid(args[0])
        keep = int(args[1])
        recovering = "recovering" in args[2:]
        box = self.boxes[node_id]
        old = box.storage
        hs, _ = old.initial_state()
        box.storage = MemoryStorage()
        if keep:
            box.storage.append(old.entries(1, keep + 1))
        box.storage.set_hard_state(HardState(hs.term, hs.vote, min(hs.commit, keep)))
        cfg = dataclasses.replace(self._config(node_id, box.cfg.voters), recovering=recovering)
        box.node = RawNode(cfg, box.storage, random.Random(self.seed * 7919))
        box.applied_data = []
        flag = " recovering" if recovering else ""
        self.p(f"restarted {node_id} with entries 1..{keep} (term {hs.term}){flag}")

    def cmd_report_unreachable(self, args: list[str]) -> None:
        self.node(args[0]).report_unreachable(nid(args[1]))

    def cmd_report_snapshot(self, args: list[str]) -> None:
        self.node(args[0]).report_snapshot(nid(args[1]), ok=args[2] == "ok")

    def cmd_log(self, args: list[str]) -> None:
        box = self.boxes[nid(args[0])]
        st = box.storage
        ents = st.entries(st.first_index(), st.last_index() + 1)
        status = box.node.status()
        self.p(f"first={st.first_index()} commit={status.commit} applied={status.applied}")
        for e in ents:
            self.p(f"  {fmt_entry(e)}")
        data = ",".join(d.decode(errors="replace") for d in box.applied_data)
        self.p(f"  state-machine: [{data}]")

    def cmd_status(self, args: list[str]) -> None:
        s = self.node(args[0]).status()
        self.p(
            f"{s.id}: role={s.role.value} term={s.term} vote={s.vote or '-'} "
            f"leader={s.leader or '-'} commit={s.commit} applied={s.applied} last={s.last_index}"
        )
        for peer, pr in s.progress:
            self.p(
                f"  {peer}: match={pr.match} next={pr.next} {pr.state.value}"
                + (" learner" if pr.is_learner else "")
                + (f" inflight={pr.inflight}" if pr.inflight else "")
            )

    def cmd_raft_state(self, args: list[str]) -> None:
        for node_id in sorted(self.boxes):
            s = self.boxes[node_id].node.status()
            self.p(
                f"{node_id}: {s.role.value} term={s.term} leader={s.leader or '-'} "
                f"commit={s.commit} last={s.last_index}"
            )


@dataclass
class Block:
    comments: list[str]
    command: str
    expected: str


def parse_script(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        comments: list[str] = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith("#")):
            if lines[i].startswith("#"):
                comments.append(lines[i])
            i += 1
        if i >= len(lines):
            break
        command = lines[i].strip()
        i += 1
        if i >= len(lines) or lines[i].strip() != "----":
            raise ValueError(f"line {i + 1}: expected '----' after command {command!r}")
        i += 1
        out: list[str] = []
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        blocks.append(Block(comments, command, "\n".join(out)))
    return blocks


def render_script(blocks: list[Block]) -> str:
    parts = []
    for b in blocks:
        head = "\n".join([*b.comments, b.command, "----", b.expected])
        parts.append(head)
    return "\n\n".join(parts) + "\n"


def run_script(text: str) -> list[Block]:
    """Run every command of a script; returns blocks with the *actual* output."""
    env = Env()
    return [Block(b.comments, b.command, env.run(b.command)) for b in parse_script(text)]
