"""Faults on several hosts reach them at the same time, with one command per host to start
and one to heal. Over SSH a command costs a round trip plus the remote login shell's start
(0.3-0.4 s on the testbed): applied host by host, a five-host partition took 2-5 s in `make
lab` and cut the hosts off at different moments. The fake hosts here make every host wait at
a barrier for all the others, so a fault applied one host at a time fails instead of passing
slowly."""

from __future__ import annotations

import random
import re
import threading
from collections import defaultdict

import pytest

from deploy.nemesis import net
from deploy.nemesis.faults import FaultContext, rules_of, start_fault
from deploy.nemesis.spec import parse_fault
from deploy.remote import CommandResult

NODES = ["h1", "h2", "h3", "h4", "h5"]
ADD = re.compile(rf"-A {net.CHAIN} (.*?) -m comment --comment (\S+)")


class BarrierHosts:
    """Five hosts over "SSH": iptables rules kept per host, process signals recorded. Every
    command that changes a host (and every signal) waits until all the fault's hosts are
    changing at once."""

    kind = "inventory"
    own_network = True

    def __init__(self, parties: int, fail_on: str | None = None) -> None:
        self.barrier = threading.Barrier(parties, timeout=10)
        self.fail_on = fail_on
        self.rules: dict[str, list[str]] = defaultdict(list)
        self.commands: dict[str, list[str]] = defaultdict(list)
        self.signals: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def nodes(self) -> list[str]:
        return list(NODES)

    def leader(self) -> str:
        return "h1"

    def address(self, node: str) -> str:
        return f"10.9.0.{NODES.index(node) + 11}"

    def run(
        self, node: str, command: str, *, check: bool = True, timeout_s: float = 60.0
    ) -> CommandResult:
        with self.lock:
            self.commands[node].append(command)
        if "-A " in command or "-D" in command:
            self.barrier.wait()
        if self.fail_on == node and "-A " in command:
            raise RuntimeError(f"{node}: iptables: Resource temporarily unavailable")
        with self.lock:
            for rule, tag in ADD.findall(command):
                self.rules[node].append(f"-A {net.CHAIN} {rule} -m comment --comment {tag}")
            drop = re.search(r"--comment \"\?(\S+?)\"\?", command)
            if drop and "sed 's/^-A /-D /'" in command:
                self.rules[node] = [r for r in self.rules[node] if rules_of(r, _id(drop[1])) == 0]
            listing = "\n".join([f"-N {net.CHAIN}", *self.rules[node]])
        out = listing + "\n" if f"-S {net.CHAIN}" in command else ""
        return CommandResult(node, command, 0, out, "")

    def signal(self, node: str, sig: str) -> int:
        self.barrier.wait()
        with self.lock:
            self.signals.append((node, sig))
        return 100 + NODES.index(node)


def _id(tag: str) -> int:
    return int(tag.removeprefix(net.COMMENT_PREFIX))


def _fault(raw: dict[str, object]) -> object:
    return parse_fault({"start_s": 0, "duration_s": 1, **raw})


def test_a_partition_reaches_every_host_at_once_and_heals_likewise() -> None:
    hosts = BarrierHosts(parties=5)
    spec = _fault({"kind": "partition", "target": "leader", "params": {"mode": "isolate"}})
    ctx = FaultContext(hosts, random.Random(1), 3)
    a = start_fault(ctx, spec, ["h1"])  # type: ignore[arg-type]
    assert a.observed == {"rules": {"h1": 4, "h2": 1, "h3": 1, "h4": 1, "h5": 1}}
    assert all(len(cmds) == 1 for cmds in hosts.commands.values())  # add and list: one trip
    assert a.heal() == {"rules_left": {n: 0 for n in NODES}}
    assert all(len(cmds) == 2 for cmds in hosts.commands.values())
    assert not any(hosts.rules.values())


def test_a_failed_host_leaves_no_rule_on_the_others() -> None:
    hosts = BarrierHosts(parties=5, fail_on="h3")
    spec = _fault({"kind": "loss", "target": "all", "params": {"probability": 0.5}})
    ctx = FaultContext(hosts, random.Random(1), 4)
    with pytest.raises(RuntimeError, match="h3: iptables"):
        start_fault(ctx, spec, NODES)  # type: ignore[arg-type]
    assert not any(hosts.rules.values())


def test_kill_and_pause_of_two_hosts_signal_both_at_once() -> None:
    hosts = BarrierHosts(parties=2)
    spec = _fault({"kind": "pause", "target": "minority"})
    ctx = FaultContext(hosts, random.Random(1), 5)
    a = start_fault(ctx, spec, ["h2", "h4"])  # type: ignore[arg-type]
    assert a.observed["pids"] == {"h2": 101, "h4": 103}
    a.heal()
    assert sorted(hosts.signals) == [("h2", "CONT"), ("h2", "STOP"), ("h4", "CONT"), ("h4", "STOP")]


def test_rule_counts_do_not_mix_up_fault_1_and_fault_12() -> None:
    listing = "\n".join(
        [
            f"-N {net.CHAIN}",
            f"-A {net.CHAIN} -s 10.0.0.2/32 -m comment --comment raftlab-nemesis-12 -j DROP",
            f'-A {net.CHAIN} -s 10.0.0.3/32 -m comment --comment "raftlab-nemesis-1" -j DROP',
            f"-A {net.CHAIN} -s 10.0.0.4/32 -m comment --comment raftlab-nemesis-1",
        ]
    )
    assert rules_of(listing, 1) == 2
    assert rules_of(listing, 12) == 1
