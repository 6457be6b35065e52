"""Named points where a test can have this process killed, to prove what survives a crash there.

`INVOKEAI_CRASH_AT=<point>` (read once, at import) makes the process SIGKILL itself when it reaches
that point; unset (always, outside tests), a crash point costs one comparison. The points:

* `queue.enqueue`: a batch's items are inserted, its transaction not committed yet;
* `images.write`: an image's PNG is written under its temporary name, not renamed yet;
* `sessions.commit`: a group of node results is inserted, its transaction not committed yet.
"""

from __future__ import annotations

import os
import signal

_CRASH_AT = os.environ.get("INVOKEAI_CRASH_AT") or None


def crash_point(name: str) -> None:
    """Die here, at once and without cleaning up (SIGKILL), if `INVOKEAI_CRASH_AT` names `name`."""
    if _CRASH_AT is not None and _CRASH_AT == name:
        os.kill(os.getpid(), signal.SIGKILL)
