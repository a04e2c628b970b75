"""``python -m raft.cli``: the same as the ``raft`` command."""

import sys

from raft.cli import main

sys.exit(main())
