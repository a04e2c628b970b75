"""Listen and advertise addresses apart (issue 13 §5), for 1:1-NAT clouds where the address
the other nodes and clients use (the public one) is on no interface of the host: the role's
``raft_node_listen_address`` renders into cluster.yml's ``nodes.<id>.listen``, the node
listens there and keeps advertising ``raft_node_address`` (leader hints, peers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from raft.runtime.config import (
    Address,
    ConfigFileError,
    parse_config,
    render_config,
)

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "playbooks" / "roles" / "raft_node"


def _ansible_env() -> jinja2.Environment:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["bool"] = lambda v: v if isinstance(v, bool) else str(v).lower() in ("yes", "true")
    return env


def _role_defaults() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    return doc


def _render_cluster_yml(hostvars: dict[str, dict[str, Any]]) -> str:
    """cluster.yml.j2 as the role renders it for these hosts (role defaults as play vars)."""
    d = _role_defaults()
    template = _ansible_env().from_string((ROLE / "templates" / "cluster.yml.j2").read_text())
    return template.render(
        {
            **{k: v for k, v in d.items() if "{{" not in str(v)},
            "ansible_managed": "test",
            "groups": {d["raft_node_group"]: list(hostvars)},
            "hostvars": hostvars,
        }
    )


LISTEN = "raft_node_listen_address"
HOSTS = {
    "a": {"raft_node_id": "n1", "ansible_host": "203.0.113.1", LISTEN: "0.0.0.0"},
    "b": {"raft_node_id": "n2", "raft_node_address": "203.0.113.2", LISTEN: "10.0.0.2"},
    "c": {"raft_node_id": "n3", "ansible_host": "203.0.113.3"},
}


def test_the_role_renders_listen_apart_from_the_advertised_addresses() -> None:
    cfg = parse_config(yaml.safe_load(_render_cluster_yml(HOSTS)))
    n1, n2, n3 = (cfg.nodes[n] for n in ("n1", "n2", "n3"))
    # Advertised: what peers dial and leader hints name.
    assert (n1.peer, n1.client, n1.http) == (
        Address("203.0.113.1", 7000),
        Address("203.0.113.1", 7001),
        Address("203.0.113.1", 7002),
    )
    assert n2.client == Address("203.0.113.2", 7001)
    # Listened on: the given address, same ports.
    assert n1.bind(n1.client) == Address("0.0.0.0", 7001)
    assert n2.bind(n2.peer) == Address("10.0.0.2", 7000)
    # Without raft_node_listen_address: no listen field, the advertised address is bound.
    assert n3.listen == "" and n3.bind(n3.http) == n3.http
    assert "listen" not in _render_cluster_yml({"c": HOSTS["c"]})


def test_the_role_checks_status_on_the_address_the_node_listens_on() -> None:
    expr = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["raft_node_local_address"]
    env = _ansible_env()

    def local(listen: str, address: str = "203.0.113.1") -> str:
        out: str = env.from_string(expr).render(
            raft_node_listen_address=listen, raft_node_address=address
        )
        return out.strip()

    assert local("") == "203.0.113.1"
    assert local("0.0.0.0") == "127.0.0.1"
    assert local("10.0.0.2") == "10.0.0.2"


def test_listen_is_validated_and_kept_by_render_config() -> None:
    doc = yaml.safe_load(_render_cluster_yml(HOSTS))
    again = parse_config(yaml.safe_load(render_config(parse_config(doc))))
    assert again.nodes["n1"].listen == "0.0.0.0" and again.nodes["n3"].listen == ""
    doc["nodes"]["n1"]["listen"] = "eth0"
    with pytest.raises(ConfigFileError, match=r"nodes\.n1\.listen: expected an IP address"):
        parse_config(doc)
