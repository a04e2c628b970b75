"""Config validation: bad input gets a clear error naming the field."""

from __future__ import annotations

import pytest

from raft.core import Config, ConfigError, ReadOnlyOption


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"id": ""}, "id"),
        ({"id": "n1", "heartbeat_ticks": 0}, "heartbeat_ticks"),
        ({"id": "n1", "election_timeout_ticks": 1, "heartbeat_ticks": 1}, "election_timeout"),
        ({"id": "n1", "max_msg_bytes": 0}, "max_msg_bytes"),
        ({"id": "n1", "max_inflight_msgs": 0}, "max_inflight_msgs"),
        ({"id": "n1", "applied": -1}, "applied"),
        ({"id": "n1", "max_uncommitted_bytes": -1}, "max_uncommitted_bytes"),
        (
            {"id": "n1", "read_only": ReadOnlyOption.LEASE_BASED, "check_quorum": False},
            "check_quorum",
        ),
        ({"id": "n1", "voters": ("n1",), "learners": ("n1",)}, "voters and learners"),
        ({"id": "n1", "voters": ("",)}, "voters"),
    ],
)
def test_invalid_config_names_the_field(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Config(**kwargs)  # type: ignore[arg-type]


def test_defaults_are_valid_and_documented_ones() -> None:
    c = Config(id="n1", voters=("n1", "n2", "n3"))
    assert (c.pre_vote, c.check_quorum, c.read_only) == (True, True, ReadOnlyOption.SAFE)
    assert c.election_timeout_ticks > c.heartbeat_ticks
