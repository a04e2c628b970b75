"""raftlab's Raft library: a sans-IO core (:mod:`raft.core`), durable storage
(:mod:`raft.storage`), an asyncio runtime (:mod:`raft.runtime`), state machines
(:mod:`raft.machines`) and a deterministic simulator (:mod:`raft.sim`)."""

__version__ = "0.1.0"
