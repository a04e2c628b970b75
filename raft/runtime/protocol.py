"""The client protocol (version 2), spoken on each node's client port (docs/runtime.md).

Frames as on the peer port (4-byte big-endian length, then a msgpack map; limit
:data:`CLIENT_FRAME_BYTES_MAX`). A connection may pipeline requests; responses carry the
request's ``id`` and may come back in any order. Untrusted input is bounded before it is
built: :data:`REQUEST_ELEMENTS_MAX` elements, :data:`VALUE_DEPTH_MAX` levels of nesting,
:data:`VALUE_BYTES_MAX` bytes of value.

Request: ``{"id": int, "op": str, "client_id": str, "seq": int, "session_key": bytes,
"key": str, "value": any, "expect": any, "timeout_ms": int}``; only ``id`` and ``op`` are
required.

- Sessions: ``{"op": "session", "session_key": K}`` (K: 16 to 64 random bytes the client keeps
  to itself) opens a session; the ``ok`` value is the server-assigned ``client_id``. Writes
  that carry ``client_id``, ``seq`` and the same ``session_key`` are applied at most once per
  (client_id, seq), also when retried at another node after a leader change; a retry gets the
  first result only when it carries the same command. Nobody without K can write under that
  client_id, so a session cannot be hijacked or locked out.
- Authentication (when the node requires it): ``{"op": "auth_nonce"}`` returns a fresh nonce N;
  ``{"op": "auth", "value": HMAC-SHA256(token, "raftlab-client-auth" + N)}`` authenticates the
  connection. Until then every other request is answered ``unauthorized``.

Response: ``{"id", "status", "value", "error", "leader", "node"}`` with ``status`` one of
:class:`Status`.

Admin operations (docs/membership.md; :func:`parse_admin` validates them): ``member_list``,
``member_add_learner`` (``key``: the new node's id, ``value``: ``{"peer", "client", "http"}``),
``member_promote`` / ``member_remove`` (``key``: the node), ``transfer_leader`` (``key``: the
target, or none for the most up-to-date voter) and ``snapshot_now`` (served by the node asked,
never forwarded). A refused change is ``fail`` with ``error`` saying why.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from raft.machines.codec import NESTING_MAX, CommandError, check_plain
from raft.runtime.codec import CodecError, pack, unpack, unpack_bounded
from raft.runtime.config import ConfigFileError, check_node_id
from raft.runtime.members import MemberAddrs, MembersError, member_from_wire

CLIENT_PROTOCOL_VERSION = 2
CLIENT_FRAME_BYTES_MAX = 8 << 20
VALUE_BYTES_MAX = 6 << 20
"""Encoded ``value`` plus ``expect`` of one request; larger is ``bad_request``."""
REQUEST_ELEMENTS_MAX = 1 << 18
"""Arrays, maps and their items in one request, counted while decoding."""
VALUE_DEPTH_MAX = NESTING_MAX
CLIENT_ID_CHARS_MAX = 128
SESSION_KEY_BYTES_MIN = 16
SESSION_KEY_BYTES_MAX = 64
TIMEOUT_MS_DEFAULT = 5000
TIMEOUT_MS_MAX = 60000
OP_SESSION = "session"
OP_AUTH_NONCE = "auth_nonce"
OP_AUTH = "auth"
# -- begin: admin operations (membership, transfer, snapshot; issue 11) --
OP_MEMBER_LIST = "member_list"
OP_MEMBER_ADD_LEARNER = "member_add_learner"
OP_MEMBER_PROMOTE = "member_promote"
OP_MEMBER_REMOVE = "member_remove"
OP_TRANSFER_LEADER = "transfer_leader"
OP_SNAPSHOT_NOW = "snapshot_now"
ADMIN_OPS = frozenset(
    {
        OP_MEMBER_LIST,
        OP_MEMBER_ADD_LEARNER,
        OP_MEMBER_PROMOTE,
        OP_MEMBER_REMOVE,
        OP_TRANSFER_LEADER,
        OP_SNAPSHOT_NOW,
    }
)
ADMIN_LOCAL_OPS = frozenset({OP_SNAPSHOT_NOW})
"""Admin operations served by the node asked; the others run on the leader."""
_ADMIN_NEEDS_NODE = frozenset({OP_MEMBER_ADD_LEARNER, OP_MEMBER_PROMOTE, OP_MEMBER_REMOVE})
_ADMIN_TAKES_NODE = _ADMIN_NEEDS_NODE | {OP_TRANSFER_LEADER}
# -- end: admin operations --


class Status(enum.Enum):
    OK = "ok"
    """Done; ``value`` holds the result."""
    FAIL = "fail"
    """Certainly had no effect (e.g. a compare-and-set whose expected value did not match)."""
    ERROR = "error"
    """The state machine refused the command as malformed (it was replicated, had no effect)."""
    NOT_LEADER = "not_leader"
    """Not done here; ``leader`` is the leader's client address if known (retry there)."""
    TIMEOUT = "timeout"
    """Outcome unknown: the write may or may not take effect. Retry with the same seq."""
    BAD_REQUEST = "bad_request"
    """The request itself was malformed; ``error`` says how. Nothing happened."""
    UNAUTHORIZED = "unauthorized"
    """The node requires client authentication and this connection has not passed it."""


class BadRequestError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    op: str
    client_id: str = ""
    seq: int = 0
    key: str | None = None
    value: Any = None
    expect: Any = None
    timeout_ms: int = TIMEOUT_MS_DEFAULT
    session_key: bytes = b""
    forwarded: bool = False
    """Relayed by a follower (``fwd`` on the wire): never forwarded again."""


@dataclass(frozen=True, slots=True)
class Response:
    id: int
    status: Status
    value: Any = None
    error: str = ""
    leader: str = ""
    node: str = ""


_REQUEST_FIELDS = {
    "id",
    "op",
    "client_id",
    "seq",
    "session_key",
    "key",
    "value",
    "expect",
    "timeout_ms",
    "fwd",
}


def encode_request(req: Request) -> bytes:
    out: dict[str, Any] = {"id": req.id, "op": req.op}
    if req.client_id:
        out["client_id"] = req.client_id
        out["seq"] = req.seq
    if req.session_key:
        out["session_key"] = req.session_key
    if req.key is not None:
        out["key"] = req.key
    if req.value is not None:
        out["value"] = req.value
    if req.expect is not None:
        out["expect"] = req.expect
    if req.timeout_ms != TIMEOUT_MS_DEFAULT:
        out["timeout_ms"] = req.timeout_ms
    if req.forwarded:
        out["fwd"] = True
    return pack(out)


def _request_id(obj: object) -> int:
    if isinstance(obj, dict):
        rid = obj.get("id")
        if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid < 2**63:
            return rid
    return 0


def decode_request(body: bytes) -> Request:
    """Raises BadRequestError (with ``.request_id`` when one could be read)."""
    try:
        obj = unpack_bounded(body, CLIENT_FRAME_BYTES_MAX, REQUEST_ELEMENTS_MAX)
    except CodecError as exc:
        raise _bad(0, f"request refused: {exc}") from None
    rid = _request_id(obj)
    if not isinstance(obj, dict):
        raise _bad(rid, "request must be a map")
    unknown = sorted(set(obj) - _REQUEST_FIELDS)
    if unknown:
        raise _bad(rid, f"unknown request field(s): {', '.join(unknown)}")
    if "id" not in obj or rid != obj["id"]:
        raise _bad(rid, "'id' must be a non-negative integer")
    op = obj.get("op")
    if not isinstance(op, str) or not op or len(op) > 64:
        raise _bad(rid, "'op' must be a non-empty string")
    client_id = obj.get("client_id", "")
    seq = obj.get("seq", 0)
    if not isinstance(client_id, str) or len(client_id) > CLIENT_ID_CHARS_MAX:
        raise _bad(rid, f"'client_id' must be a string of at most {CLIENT_ID_CHARS_MAX} chars")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63:
        raise _bad(rid, "'seq' must be a non-negative integer")
    if client_id and seq == 0:
        raise _bad(rid, "'seq' must be given (>= 1) with 'client_id'")
    session_key = obj.get("session_key", b"")
    if not isinstance(session_key, bytes) or (
        session_key and not SESSION_KEY_BYTES_MIN <= len(session_key) <= SESSION_KEY_BYTES_MAX
    ):
        raise _bad(
            rid,
            f"'session_key' must be {SESSION_KEY_BYTES_MIN} to {SESSION_KEY_BYTES_MAX} bytes",
        )
    if client_id and not session_key:
        raise _bad(
            rid,
            "'client_id' needs its 'session_key' (protocol v2: open a session with "
            "op 'session' first)",
        )
    if op == OP_SESSION and not session_key:
        raise _bad(rid, "op 'session' needs a 'session_key' (16 to 64 random bytes)")
    key = obj.get("key")
    if key is not None and not isinstance(key, str):
        raise _bad(rid, "'key' must be a string")
    timeout_ms = obj.get("timeout_ms", TIMEOUT_MS_DEFAULT)
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
        raise _bad(rid, "'timeout_ms' must be a positive integer")
    fwd = obj.get("fwd", False)
    if not isinstance(fwd, bool):
        raise _bad(rid, "'fwd' must be a boolean")
    try:
        check_plain(obj.get("value"))
        check_plain(obj.get("expect"))
    except CommandError as exc:
        raise _bad(rid, str(exc)) from None
    if len(body) > VALUE_BYTES_MAX:  # only then can the values exceed the limit
        size = len(pack(obj.get("value"))) + len(pack(obj.get("expect")))
        if size > VALUE_BYTES_MAX:
            raise _bad(rid, f"value of {size} bytes exceeds the limit of {VALUE_BYTES_MAX}")
    return Request(
        id=rid,
        op=op,
        client_id=client_id,
        seq=seq,
        key=key,
        value=obj.get("value"),
        expect=obj.get("expect"),
        timeout_ms=min(timeout_ms, TIMEOUT_MS_MAX),
        session_key=session_key,
        forwarded=fwd,
    )


def _bad(rid: int, text: str) -> BadRequestError:
    err = BadRequestError(text)
    err.request_id = rid  # type: ignore[attr-defined]
    return err


def encode_response(resp: Response) -> bytes:
    out: dict[str, Any] = {"id": resp.id, "status": resp.status.value}
    if resp.value is not None:
        out["value"] = resp.value
    if resp.error:
        out["error"] = resp.error
    if resp.leader:
        out["leader"] = resp.leader
    if resp.node:
        out["node"] = resp.node
    return pack(out)


def decode_response(body: bytes) -> Response:
    try:
        obj = unpack(body, CLIENT_FRAME_BYTES_MAX)
    except CodecError as exc:
        raise ValueError(f"bad response: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("bad response: not a map")
    try:
        status = Status(obj.get("status"))
    except ValueError:
        raise ValueError(f"bad response: unknown status {obj.get('status')!r}") from None
    rid = obj.get("id")
    if not isinstance(rid, int):
        raise ValueError("bad response: no id")
    return Response(
        id=rid,
        status=status,
        value=obj.get("value"),
        error=str(obj.get("error", "")),
        leader=str(obj.get("leader", "")),
        node=str(obj.get("node", "")),
    )


# -- begin: admin operations (issue 11) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdminRequest:
    """A validated admin operation: ``node`` is the member it is about ("" for none),
    ``addrs`` the new member's addresses (``member_add_learner`` only), ``timeout_s`` what
    the node may spend (catch-up, leaving the joint configuration, a transfer)."""

    op: str
    node: str = ""
    addrs: MemberAddrs | None = None
    timeout_s: float = TIMEOUT_MS_DEFAULT / 1000


def parse_admin(req: Request) -> AdminRequest:
    """Validate an admin request; BadRequestError names what is wrong."""
    if req.op not in ADMIN_OPS:
        raise _bad(req.id, f"unknown admin op {req.op!r}")
    node = req.key or ""
    if req.op in _ADMIN_NEEDS_NODE and not node:
        raise _bad(req.id, f"op {req.op!r} needs the node id in 'key'")
    if node and req.op not in _ADMIN_TAKES_NODE:
        raise _bad(req.id, f"op {req.op!r} takes no 'key'")
    if node:
        try:
            check_node_id(node, "'key'")
        except ConfigFileError as exc:
            raise _bad(req.id, str(exc)) from None
    addrs = None
    if req.op == OP_MEMBER_ADD_LEARNER:
        try:
            _, addrs = member_from_wire(node, req.value, "new member")
        except MembersError as exc:
            raise _bad(req.id, str(exc)) from None
    elif req.value is not None:
        raise _bad(req.id, f"op {req.op!r} takes no 'value'")
    return AdminRequest(req.op, node, addrs, req.timeout_ms / 1000)


# -- end: admin operations ------------------------------------------------------------------
