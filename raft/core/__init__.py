"""Sans-IO Raft: the algorithm as a deterministic state machine (see ``docs/interfaces.md``).

Feed inputs to a :class:`RawNode` (``tick``, ``step``, ``propose``, ...), then take its
:class:`Ready`, do the I/O it asks for in the documented order, and ``advance``.
"""

from raft.core.confchange import decode_conf_change, encode_conf_change
from raft.core.config import Config
from raft.core.errors import (
    CompactedError,
    ConfChangeError,
    ConfigError,
    NotLeaderError,
    ProposalDroppedError,
    RaftError,
    SnapshotOutOfDateError,
    UnavailableError,
)
from raft.core.progress import ProgressState
from raft.core.rawnode import ProgressStatus, RawNode, Status
from raft.core.readonly import ReadOnlyOption
from raft.core.storage import LogReader, LogStorage, MemoryStorage
from raft.core.types import (
    NONE,
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    ConfState,
    CoreEvent,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    NodeId,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
)

__all__ = [
    "NONE",
    "CompactedError",
    "ConfChange",
    "ConfChangeError",
    "ConfChangeSingle",
    "ConfChangeType",
    "ConfState",
    "Config",
    "ConfigError",
    "CoreEvent",
    "Entry",
    "EntryType",
    "HardState",
    "LogReader",
    "LogStorage",
    "MemoryStorage",
    "Message",
    "MessageType",
    "NodeId",
    "NotLeaderError",
    "ProgressState",
    "ProgressStatus",
    "ProposalDroppedError",
    "RaftError",
    "RawNode",
    "ReadOnlyOption",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SnapshotOutOfDateError",
    "SoftState",
    "Status",
    "UnavailableError",
    "decode_conf_change",
    "encode_conf_change",
]
