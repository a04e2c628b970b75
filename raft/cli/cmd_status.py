"""``raft status``: each node's role, term, leader and indexes (from its HTTP /status)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "status",
        help="show each node's role, term, leader, indexes and configuration",
        description="Poll GET /status of every node. ADDRS are client addresses (as for "
        "'raft client'); the HTTP port is taken from the local cluster.yml when it matches, "
        "else client port + 1.",
    )
    p.add_argument("--cluster", help="comma-separated client addresses host:port,...")
    p.add_argument("--dir", help="'raft cluster up' directory (default .raftlab-cluster)")
    p.add_argument("--json", action="store_true", help="print JSON (one object per node)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from raft.cli._cluster_addrs import http_of, resolve
    from raft.runtime.http import fetch_json

    addrs = resolve(args.cluster, args.dir)
    rows: dict[str, Any] = {}
    for name, http in http_of(args.dir, addrs).items():
        try:
            rows[name] = fetch_json(http.host, http.port, "/status", 1.0)
        except (OSError, ValueError) as exc:
            rows[name] = {"error": str(exc) or type(exc).__name__}
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        cols = ["id", "role", "term", "leader", "commit", "applied", "last_index"]
        cols += ["voters", "learners", "joint", "conf_index"]
        table = [["node", *cols[1:]]]
        for name, st in rows.items():
            if "error" in st:
                table.append([name, "DOWN"] + [""] * (len(cols) - 2))
            else:
                table.append([str(st.get("id", name))] + [_cell(st, c) for c in cols[1:]])
        widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
        for r in table:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    up = [st for st in rows.values() if "error" not in st]
    return 0 if up else 2


def _cell(st: dict[str, Any], col: str) -> str:
    """One status field as a table cell: member lists comma-joined, joint as the outgoing
    voters (the configuration being left) or "no"."""
    if col == "joint":
        outgoing = st.get("voters_outgoing") or []
        return f"leaving {','.join(outgoing)}" if st.get("joint") else "no"
    value = st.get(col, "")
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)
