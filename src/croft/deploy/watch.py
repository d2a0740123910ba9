"""`croft deploy --watch`: rebuild and deploy on every saved edit.

Polls the stats the last build recorded (the build's own fast path, a few milliseconds) rather
than needing an inotify library; an edit is live on the machines well under a second later.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from croft.build import sources, stamp
from croft.errors import CroftError

POLL_SECONDS = 0.2


def watch(state_dir: str, key: str, on_change: Callable[[], object]) -> None:
    """Call on_change now and after every change of what the last build read, until interrupted."""
    last = None
    while True:
        # Taken before on_change: an edit saved while it runs is seen on the next turn.
        current = stamp.signature(state_dir, key)
        if current != last:
            changes = stamp.changes(state_dir, key)
            if changes is None or changes:
                sources.forget_walks()
                try:
                    on_change()
                except CroftError as exc:
                    print(exc, flush=True)
        last = current
        time.sleep(POLL_SECONDS)
