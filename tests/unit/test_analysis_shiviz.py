"""ShiViz export: regex header, every event parses, vector clocks ShiViz accepts."""

from __future__ import annotations

import json
from pathlib import Path

from deploy.analysis.events import find_event_files, load_event_logs
from deploy.analysis.merge import merge
from deploy.analysis.shiviz import SHIVIZ_PY_REGEX, SHIVIZ_REGEX, write_shiviz
from deploy.analysis.synthetic import standard_run


def test_shiviz_file_structure_and_clocks(tmp_path: Path) -> None:
    standard_run(tmp_path / "run", offsets={"n2": 5.0, "n3": -3.0}, writes=5)
    logs = load_event_logs(find_event_files(tmp_path / "run"), tmp_path / "run")
    tl = merge(logs)
    out = tmp_path / "shiviz.log"
    write_shiviz(tl, out)
    text = out.read_text()
    lines = text.split("\n")
    assert lines[0] == SHIVIZ_REGEX
    assert lines[1] == ""  # one execution: empty delimiter line
    body = "\n".join(lines[2:])
    matches = list(SHIVIZ_PY_REGEX.finditer(body))
    assert len(matches) == logs.count()
    # The matches tile the body: nothing is left unparsed.
    assert "".join(m.group(0) + "\n" for m in matches) == body
    own: dict[str, int] = {}
    last: dict[str, dict[str, int]] = {}
    for m in matches:
        host = m.group("host")
        clock = json.loads(m.group("clock"))
        assert clock[host] == own.get(host, 0) + 1  # starts at 1, grows by exactly one
        own[host] = clock[host]
        prev = last.get(host, {})
        assert all(clock.get(k, 0) >= v for k, v in prev.items())  # never decreases
        last[host] = clock
        assert m.group("src").startswith("nodes/" + host + "/events.jsonl:")
        assert m.group("term").startswith("t")
    assert set(own) == {"n1", "n2", "n3"}
    assert any("recv app <- n1" in m.group("event") for m in matches)
