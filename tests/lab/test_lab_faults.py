"""The nemesis catalogue on the local testbed, over SSH through the inventory: each fault is
applied, observed to take effect from outside (traffic measured between the hosts' network
namespaces, process states read from /proc), and healed completely. An interrupted run
followed by `raftlab heal` leaves nothing behind. Needs root; CI runs it as root.

One testbed (3 hosts, prefix rlf, 10.81.0.0/24) deployed once for the whole module."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import REPO, Lab, module_lab

from deploy.nemesis import (
    InventoryControl,
    Nemesis,
    heal_cluster,
    leftovers,
    net,
    parse_fault,
)
from deploy.testbed.bed import node_pids

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]

PREFIX = "rlf"
SUBNET = "10.81.0.0/24"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from module_lab("faults", PREFIX, SUBNET, "10.81.250.0/24")


@pytest.fixture
def control(lab: Lab) -> Iterator[InventoryControl]:
    c = InventoryControl(lab.inventory)
    try:
        yield c
        assert_clean(c)
    finally:
        heal_cluster(c)
        c.close()


def nemesis(c: InventoryControl) -> tuple[Nemesis, list[dict[str, object]]]:
    lines: list[dict[str, object]] = []
    return Nemesis(c, lines.append, random.Random(11)), lines


def ns(lab: Lab, host: str) -> str:
    return next(h.netns for h in lab.plan.hosts if h.name == host)


def addr(lab: Lab, host: str) -> str:
    return next(str(h.address) for h in lab.plan.hosts if h.name == host)


def proc_state(root_pid: int) -> str:
    return Path(f"/proc/{root_pid}/stat").read_text().rpartition(") ")[2][:1]


def assert_clean(c: InventoryControl) -> None:
    """Nothing of the nemesis left on any host (no rule, qdisc, delayer, paused process,
    faketime or fill file), and every node running."""
    assert leftovers(c) == {n: [] for n in c.nodes()}


# -- traffic measured between namespaces -------------------------------------------------------

_RECV = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2]))); s.settimeout(0.2)
print("ready", flush=True)
seqs = []; end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    try:
        d, _ = s.recvfrom(100)
    except TimeoutError:
        continue
    seqs.append(int(d))
print(" ".join(map(str, seqs)))
"""

_SEND = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    s.sendto(str(i).encode(), (sys.argv[1], int(sys.argv[2]))); time.sleep(float(sys.argv[4]))
"""

_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    d, a = s.recvfrom(100); s.sendto(d, a)
"""

_RTT = """
import socket, sys, time, statistics
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(3)
out = []
for i in range(int(sys.argv[3])):
    t = time.monotonic(); c.sendto(b"1", (sys.argv[1], int(sys.argv[2]))); c.recvfrom(100)
    out.append((time.monotonic() - t) * 1000)
print(statistics.median(out))
"""


def _py(netns: str, code: str, *args: object) -> list[str]:
    return ["ip", "netns", "exec", netns, sys.executable, "-c", textwrap.dedent(code)] + [
        str(a) for a in args
    ]


def udp_seqs(lab: Lab, src: str, dst: str, count: int, gap_s: float, port: int) -> list[int]:
    """Send ``count`` numbered datagrams from host ``src`` to host ``dst``; what arrived."""
    listen_s = count * gap_s + 3
    recv = subprocess.Popen(
        _py(ns(lab, dst), _RECV, addr(lab, dst), port, listen_s),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert recv.stdout is not None and recv.stdout.readline().strip() == "ready"
    subprocess.run(
        _py(ns(lab, src), _SEND, addr(lab, dst), port, count, gap_s), check=True, timeout=120
    )
    out, _ = recv.communicate(timeout=listen_s + 30)
    return [int(x) for x in out.split()]


def udp_rtt_ms(lab: Lab, client: str, server: str, port: int, count: int = 20) -> float:
    echo = subprocess.Popen(
        _py(ns(lab, server), _ECHO, addr(lab, server), port), stdout=subprocess.PIPE, text=True
    )
    try:
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        out = subprocess.run(
            _py(ns(lab, client), _RTT, addr(lab, server), port, count),
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        return float(out)
    finally:
        echo.kill()
        echo.wait()


def tcp_connects(lab: Lab, src: str, dst: str, port: int = 7000) -> bool:
    code = (
        "import socket, sys\n"
        "try:\n"
        "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5).close()\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    return subprocess.run(_py(ns(lab, src), code, addr(lab, dst), port), timeout=30).returncode == 0


# -- the faults --------------------------------------------------------------------------------


def test_pause_and_kill_over_ssh_take_effect_and_heal(lab: Lab, control: InventoryControl) -> None:
    nem, lines = nemesis(control)
    (root_pid,) = node_pids(ns(lab, "h2"))
    nem.start_now(parse_fault({"kind": "pause", "target": "nodes:h2"}))
    assert proc_state(root_pid) == "T"  # seen from outside the host
    nem.heal()
    assert proc_state(root_pid) != "T"
    (before,) = node_pids(ns(lab, "h3"))
    a = nem.start_now(parse_fault({"kind": "kill", "target": "nodes:h3"}))
    assert a is not None and a.mechanism == "SIGKILL"
    assert node_pids(ns(lab, "h3")) == ()
    nem.heal()
    (after,) = node_pids(ns(lab, "h3"))
    assert after != before
    assert [(x["fault"], x["action"]) for x in lines] == [
        ("pause", "start"),
        ("pause", "stop"),
        ("kill", "start"),
        ("kill", "stop"),
    ]


def test_isolated_node_cannot_be_reached_by_its_peers(lab: Lab, control: InventoryControl) -> None:
    assert tcp_connects(lab, "h2", "h1")
    nem, lines = nemesis(control)
    a = nem.start_now(parse_fault({"kind": "partition", "target": "nodes:h1"}))
    assert a is not None and a.detail["groups"] == [["h1"], ["h2", "h3"]]
    assert not tcp_connects(lab, "h2", "h1") and not tcp_connects(lab, "h1", "h3")
    assert tcp_connects(lab, "h2", "h3")
    nem.heal()
    assert tcp_connects(lab, "h2", "h1") and tcp_connects(lab, "h1", "h3")
    assert lines[-1]["observed"] == {"rules_left": {"h1": 0, "h2": 0, "h3": 0}}


def test_one_way_partition_cuts_only_what_the_target_hears(
    lab: Lab, control: InventoryControl
) -> None:
    nem, _ = nemesis(control)
    nem.start_now(
        parse_fault({"kind": "partition", "target": "nodes:h1", "params": {"mode": "one-way"}})
    )
    got_by_h1 = udp_seqs(lab, "h2", "h1", 30, 0.005, 9101)
    got_by_h2 = udp_seqs(lab, "h1", "h2", 30, 0.005, 9102)
    nem.heal()
    assert got_by_h1 == [] and len(got_by_h2) == 30


def test_loss_drops_about_the_asked_share(lab: Lab, control: InventoryControl) -> None:
    nem, lines = nemesis(control)
    a = nem.start_now(
        parse_fault({"kind": "loss", "target": "nodes:h1", "params": {"probability": 0.5}})
    )
    assert a is not None and a.mechanism == "iptables-statistic"  # no sch_netem here
    got = udp_seqs(lab, "h2", "h1", 400, 0.002, 9103)
    nem.heal()
    assert 0.35 < len(got) / 400 < 0.65, len(got)
    assert len(udp_seqs(lab, "h2", "h1", 100, 0.002, 9104)) == 100
    assert lines[0]["mechanism"] == "iptables-statistic"


def test_duplication_delivers_copies(lab: Lab, control: InventoryControl) -> None:
    nem, _ = nemesis(control)
    a = nem.start_now(
        parse_fault({"kind": "duplicate", "target": "nodes:h1", "params": {"probability": 0.5}})
    )
    assert a is not None and a.mechanism == "iptables-tee"
    got = udp_seqs(lab, "h1", "h2", 200, 0.003, 9105)
    nem.heal()
    assert set(got) == set(range(200))
    assert 1.3 < len(got) / 200 < 1.7, len(got)


def test_delay_and_reordering_really_delay_packets(lab: Lab, control: InventoryControl) -> None:
    nem, lines = nemesis(control)
    a = nem.start_now(
        parse_fault(
            {"kind": "delay", "target": "nodes:h1", "params": {"delay_ms": 120, "jitter_ms": 10}}
        )
    )
    assert a is not None and a.mechanism == "nfqueue-delayer"
    delayed = udp_rtt_ms(lab, "h2", "h1", 9106)  # h1's echo replies wait in the delayer
    nem.heal()
    assert delayed >= 100, delayed
    assert udp_rtt_ms(lab, "h2", "h1", 9107) < 60
    nem.start_now(
        parse_fault(
            {
                "kind": "reorder",
                "target": "nodes:h1",
                "params": {"probability": 0.5, "delay_ms": 60},
            }
        )
    )
    got = udp_seqs(lab, "h1", "h2", 100, 0.005, 9108)
    nem.heal()
    assert sorted(got) == list(range(100))
    assert got != sorted(got)  # some overtook others
    assert {x["mechanism"] for x in lines} == {"nfqueue-delayer"}


def test_rate_limit_slows_a_transfer(lab: Lab, control: InventoryControl) -> None:
    code_recv = (
        "import socket, sys\n"
        "s = socket.socket(); s.bind((sys.argv[1], int(sys.argv[2]))); s.listen()\n"
        "print('ready', flush=True)\n"
        "c, _ = s.accept(); n = 0\n"
        "while (d := c.recv(65536)):\n"
        "    n += len(d)\n"
        "print(n)\n"
    )
    code_send = (
        "import socket, sys, time\n"
        "t = time.monotonic(); c = socket.create_connection((sys.argv[1], int(sys.argv[2])))\n"
        "c.sendall(b'x' * 100000); c.close(); print(time.monotonic() - t)\n"
    )

    def transfer(port: int) -> float:
        recv = subprocess.Popen(
            _py(ns(lab, "h2"), code_recv, addr(lab, "h2"), port), stdout=subprocess.PIPE, text=True
        )
        assert recv.stdout is not None and recv.stdout.readline().strip() == "ready"
        t = time.monotonic()
        subprocess.run(_py(ns(lab, "h1"), code_send, addr(lab, "h2"), port), check=True, timeout=60)
        out, _ = recv.communicate(timeout=60)
        assert int(out) == 100000
        return time.monotonic() - t

    nem, _ = nemesis(control)
    a = nem.start_now(parse_fault({"kind": "rate", "target": "nodes:h1", "params": {"kbit": 400}}))
    assert a is not None and a.mechanism == "tbf"
    slow = transfer(9109)
    nem.heal()
    assert slow > 1.2, slow  # 100 kB at 400 kbit/s takes 2 s


def test_clock_skew_shows_in_the_nodes_own_log(lab: Lab, control: InventoryControl) -> None:
    nem, _ = nemesis(control)
    events = f"{control.log_dir('h3')}/events.jsonl"
    a = nem.start_now(
        parse_fault({"kind": "clock", "target": "nodes:h3", "params": {"offset_s": -7200}})
    )
    assert a is not None and a.observed["faked"] == {"h3": True}
    assert abs(a.observed["skew_s"]["h3"] + 7200) < 5
    starts = [
        json.loads(x)
        for x in control.run("h3", f'grep \'"ev":"start"\' {events}').stdout.splitlines()
    ]
    assert starts[-1]["ts"] - time.time() < -7000  # the node booted two hours in the past
    nem.heal()
    starts = [
        json.loads(x)
        for x in control.run("h3", f'grep \'"ev":"start"\' {events}').stdout.splitlines()
    ]
    assert abs(starts[-1]["ts"] - time.time()) < 120


def test_disk_fill_fills_the_data_volume_and_heal_frees_it(
    lab: Lab, control: InventoryControl
) -> None:
    """On a small tmpfs mounted over the host's data directory (inside its own mount
    namespace), so the machine's real disk is never filled."""
    c = control
    c.stop("h3")
    c.run(
        "h3",
        "rm -rf /tmp/rlf-save && cp -a /var/lib/raftlab /tmp/rlf-save && "
        "mount -t tmpfs -o size=32m rlf-fill /var/lib/raftlab && "
        "cp -a /tmp/rlf-save/. /var/lib/raftlab/",
    )
    c.start("h3")
    try:
        nem, lines = nemesis(c)
        a = nem.start_now(parse_fault({"kind": "disk-fill", "target": "nodes:h3"}))
        assert a is not None and a.observed["avail_bytes"]["h3"] < 1 << 20
        write = c.run("h3", "dd if=/dev/zero of=/var/lib/raftlab/probe bs=1M count=2", check=False)
        assert not write.ok and "No space left" in write.stderr
        nem.heal()
        assert lines[-1]["observed"]["avail_bytes"]["h3"] > 16 << 20  # type: ignore[index]
    finally:
        c.stop("h3")
        c.run(
            "h3",
            "rm -f /var/lib/raftlab/probe; rm -rf /tmp/rlf-save && "
            "cp -a /var/lib/raftlab /tmp/rlf-save && umount /var/lib/raftlab && "
            "cp -a /tmp/rlf-save/. /var/lib/raftlab/",
        )
        c.start("h3")


_INTERRUPTED = """
import json, random, sys, asyncio
from pathlib import Path
from deploy.nemesis import InventoryControl, Nemesis, parse_schedule
out = open(sys.argv[2], "w")
def record(line):
    out.write(json.dumps(line) + "\\n"); out.flush()
sched = parse_schedule(json.loads(sys.argv[3]))
nem = Nemesis(InventoryControl(Path(sys.argv[1])), record, random.Random(5))
asyncio.run(nem.run(sched, asyncio.Event()))
"""


def test_interrupted_run_then_raftlab_heal_leaves_nothing(
    lab: Lab, control: InventoryControl, tmp_path: Path
) -> None:
    schedule = [
        {"kind": "partition", "target": "nodes:h1", "duration_s": 300},
        {"kind": "loss", "target": "nodes:h2", "duration_s": 300},
        {"kind": "duplicate", "target": "nodes:h2", "duration_s": 300},
        {"kind": "delay", "target": "nodes:h3", "duration_s": 300},
        {"kind": "rate", "target": "nodes:h1", "duration_s": 300},
        {"kind": "pause", "target": "nodes:h2", "duration_s": 300},
        {"kind": "clock", "target": "nodes:h1", "duration_s": 300, "params": {"mode": "strobe"}},
        {"kind": "disk-fsync", "target": "nodes:h3", "duration_s": 300},
    ]
    log = tmp_path / "nemesis.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTED, str(lab.inventory), str(log), json.dumps(schedule)],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            started = log.read_text().count('"action": "start"') if log.exists() else 0
            if started == len(schedule) or proc.poll() is not None:
                break
            time.sleep(0.5)
        assert started == len(schedule), log.read_text() if log.exists() else "no log"
    finally:
        proc.send_signal(signal.SIGKILL)  # the controller dies: nothing heals
        proc.wait()
    assert control.run("h1", net.rules_left_script()).stdout.strip()  # faults left behind
    heal = raftlab_heal(lab)
    assert heal.returncode == 0, heal.stderr
    for what in ("RAFTLAB-NEMESIS", "qdiscs", "delayer", "resumed", "libfaketime", "fsync shim"):
        assert what in heal.stderr, heal.stderr
    assert_clean(control)
    again = raftlab_heal(lab)
    assert again.returncode == 0 and again.stdout.strip() == "nothing to heal", again.stderr


def raftlab_heal(lab: Lab) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, deploy.cli; sys.exit(deploy.cli.main())",
            "heal",
            "-i",
            str(lab.inventory),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        check=False,
    )
