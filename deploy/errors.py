"""Errors of the lab. Each says what was wrong and, where it can, what to do about it."""

from __future__ import annotations


class LabError(Exception):
    """A user-facing failure of a lab command: printed as one line, exit status 2."""
