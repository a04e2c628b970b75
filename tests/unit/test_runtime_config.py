"""cluster.yml parsing: the documented example loads, mistakes name their field."""

from __future__ import annotations

from pathlib import Path

import pytest

from raft.runtime.config import (
    ConfigFileError,
    FsyncMode,
    ReadMode,
    load_config,
    parse_address_list,
    parse_config,
    render_config,
)

EXAMPLE = """
version: 1
cluster: raftlab
machine: kv
secret_file: /etc/raftlab/secret
data_dir: /var/lib/raftlab
log_dir: /var/log/raftlab
fsync: always
read_mode: read_index
tick_ms: 50
election_timeout_ticks: 10
heartbeat_ticks: 1
nodes:
  n1: {peer: "10.77.0.11:7000", client: "10.77.0.11:7001", http: "10.77.0.11:7002"}
  n2: {peer: "10.77.0.12:7000", client: "10.77.0.12:7001", http: "10.77.0.12:7002"}
"""


def test_documented_example_loads(tmp_path: Path) -> None:
    p = tmp_path / "cluster.yml"
    p.write_text(EXAMPLE)
    cfg = load_config(str(p))
    assert cfg.cluster == "raftlab" and cfg.fsync is FsyncMode.ALWAYS
    assert cfg.read_mode is ReadMode.READ_INDEX
    assert str(cfg.nodes["n2"].client) == "10.77.0.12:7001"
    assert cfg.node_data_dir("n1") == "/var/lib/raftlab/n1"
    assert cfg.node_log_dir("n1") == "/var/log/raftlab"
    again = tmp_path / "again.yml"
    again.write_text(render_config(cfg))
    assert load_config(str(again)) == cfg


def test_id_placeholder_and_relative_paths(tmp_path: Path) -> None:
    p = tmp_path / "c.yml"
    p.write_text(
        "data_dir: d/{id}\nlog_dir: logs/{id}\nnodes:\n"
        "  a: {peer: '127.0.0.1:1', client: '127.0.0.1:2', http: '127.0.0.1:3'}\n"
    )
    cfg = load_config(str(p))
    assert cfg.node_data_dir("a") == str(tmp_path / "d" / "a")
    assert cfg.node_log_dir("a") == str(tmp_path / "logs" / "a")


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"version": 2}, "version"),
        ({"fsync": "sometimes"}, "fsync"),
        ({"read_mode": "fast"}, "read_mode"),
        ({"tick_ms": 0}, "tick_ms"),
        ({"tick_ms": "50"}, "tick_ms"),
        ({"colour": "red"}, "colour"),
        ({"nodes": {}}, "nodes"),
        ({"nodes": {"n1": {"peer": "nohost", "client": "h:1", "http": "h:2"}}}, "nodes.n1.peer"),
        ({"nodes": {"n1": {"peer": "h:70000", "client": "h:1", "http": "h:2"}}}, "nodes.n1.peer"),
        ({"nodes": {"bad id!": {"peer": "h:1", "client": "h:1", "http": "h:2"}}}, "bad node id"),
        ({"heartbeat_ticks": 10}, "heartbeat_ticks"),
    ],
)
def test_mistakes_name_the_field(patch: dict[str, object], field: str) -> None:
    import yaml

    doc = yaml.safe_load(EXAMPLE) | patch
    with pytest.raises(ConfigFileError, match=field.replace(".", r"\.")):
        parse_config(doc, "cluster.yml")


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="no such file"):
        load_config(str(tmp_path / "nope.yml"))
    bad = tmp_path / "bad.yml"
    bad.write_text("nodes: [unclosed")
    with pytest.raises(ConfigFileError, match="not valid YAML"):
        load_config(str(bad))
    danger = tmp_path / "danger.yml"
    danger.write_text("!!python/object/apply:os.system ['true']")
    with pytest.raises(ConfigFileError):
        load_config(str(danger))


def test_overrides_and_address_lists() -> None:
    import yaml

    cfg = parse_config(yaml.safe_load(EXAMPLE))
    o = cfg.with_overrides(read_mode="lease", fsync=None, machine="register")
    assert o.read_mode is ReadMode.LEASE and o.fsync is FsyncMode.ALWAYS and o.machine == "register"
    with pytest.raises(ConfigFileError):
        cfg.with_overrides(read_mode="eventually")
    assert [str(a) for a in parse_address_list("a:1, b:2")] == ["a:1", "b:2"]
    with pytest.raises(ConfigFileError):
        parse_address_list(" , ")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        # yaml keeps the last of two equal keys: n1 silently lost its first definition
        (
            "nodes:\n  n1: {peer: 'h:1', client: 'h:2', http: 'h:3'}\n"
            "  n1: {peer: 'h:4', client: 'h:5', http: 'h:6'}\n",
            "duplicate key 'n1'",
        ),
        (
            "nodes:\n  n1: {peer: 'h:1', client: 'h:2', http: 'h:3'}\n"
            "  n2: {peer: 'h:1', client: 'h:5', http: 'h:6'}\n",
            r"nodes\.n2\.peer: address h:1 is already used by nodes\.n1\.peer",
        ),
        (
            "nodes:\n  n1: {peer: 'h:1', client: 'h:2', http: 'h:2'}\n",
            r"nodes\.n1\.http: address h:2 is already used by nodes\.n1\.client",
        ),
        (
            "tick_ms: 99999999999\n" + "nodes: {n1: {peer: 'h:1', client: 'h:2', http: 'h:3'}}\n",
            r"tick_ms: expected an integer in 1\.\.10000",
        ),
        (
            "election_timeout_ticks: 1000\ntick_ms: 1000\n"
            "nodes: {n1: {peer: 'h:1', client: 'h:2', http: 'h:3'}}\n",
            "exceeds 600000 ms",
        ),
        (
            "client_connections_max: 0\nnodes: {n1: {peer: 'h:1', client: 'h:2', http: 'h:3'}}\n",
            "client_connections_max",
        ),
        (
            "client_auth: 'yes'\nnodes: {n1: {peer: 'h:1', client: 'h:2', http: 'h:3'}}\n",
            "client_auth: expected true or false",
        ),
        (
            "machine: 'os system'\nnodes: {n1: {peer: 'h:1', client: 'h:2', http: 'h:3'}}\n",
            "neither a built-in machine",
        ),
        ("nodes: {'..': {peer: 'h:1', client: 'h:2', http: 'h:3'}}\n", "bad node id '..'"),
        ("nodes: {'.hidden': {peer: 'h:1', client: 'h:2', http: 'h:3'}}\n", "bad node id"),
        ("nodes: {'a/b': {peer: 'h:1', client: 'h:2', http: 'h:3'}}\n", "bad node id"),
        ("cluster: '../x'\nnodes: {n1: {peer: 'h:1', client: 'h:2', http: 'h:3'}}\n", "cluster"),
    ],
)
def test_hostile_or_mistaken_files_are_clear_errors(tmp_path: Path, text: str, error: str) -> None:
    """Issue 10 "Also": each of these was accepted (or kept the last duplicate) before."""
    p = tmp_path / "cluster.yml"
    p.write_text(text)
    with pytest.raises(ConfigFileError, match=error):
        load_config(str(p))


def test_config_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from raft.cli import main

    good = tmp_path / "good.yml"
    good.write_text(EXAMPLE)
    assert main(["config", "check", str(good)]) == 0
    assert "valid (2 nodes" in capsys.readouterr().out
    assert main(["config", "check", str(good), "--id", "n9"]) == 1
    assert "--id n9: not a node" in capsys.readouterr().err
    bad = tmp_path / "bad.yml"
    bad.write_text(EXAMPLE.replace("machine: kv", "machine: 'os:system'"))
    assert main(["config", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "os.system is not a class" in err and "Traceback" not in err
    assert main(["config", "check", str(tmp_path / "missing.yml")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_overriding_the_machine_is_checked() -> None:
    import yaml

    cfg = parse_config(yaml.safe_load(EXAMPLE), "cluster.yml")
    with pytest.raises(ConfigFileError, match="--machine"):
        cfg.with_overrides(machine="os system")
