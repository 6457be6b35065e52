"""A terminal progress bar fed by `invocation_progress` events.

One line per running node, redrawn in place (`\\r`) at most every `interval` seconds and on the last
step: `  3 tp_sleep  [#########---------]  45/100   45%  0:01  ETA 0:02  message`. The ETA is the elapsed
time per step since the node's first progress event times the steps left. When the node finishes
the line is cleared, so results print on a clean line. Events arrive on the processor thread; a lock
keeps lines whole.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from invokeai_core.events import EventBase, EventServiceBase

EVENTS = ["invocation_started", "invocation_progress", "invocation_complete", "invocation_error"]


def format_duration(seconds: float) -> str:
    whole = max(0, round(seconds))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def render_bar(
    label: str, step: int, total: int, elapsed: float, eta: float | None, width: int, message: str | None = None
) -> str:
    """One progress line, fitted to `width` columns."""
    total = max(total, 1)
    step = min(max(step, 0), total)
    frac = step / total
    counts = f"{step}/{total}"
    times = format_duration(elapsed) + (f"  ETA {format_duration(eta)}" if eta is not None else "")
    tail = f"  {counts}  {int(frac * 100):3d}%  {times}"
    if message:
        tail += f"  {message}"
    room = width - len(label) - len(tail) - 4
    bar_w = max(10, min(40, room))
    filled = round(frac * bar_w)
    line = f"{label}  [{'#' * filled}{'-' * (bar_w - filled)}]{tail}"
    return line[: max(width - 1, 20)]


class ProgressDisplay:
    """Draws progress bars for the events of one session on `stream` (a terminal)."""

    def __init__(self, stream: TextIO, *, interval: float = 0.1, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._first: dict[str, tuple[float, int]] = {}  # node -> (time, step) of its first progress event
        self._started: dict[str, float] = {}
        self._last_draw = 0.0
        self._drawn = False
        self._unsubscribe: Callable[[], None] | None = None

    def attach(self, events: EventServiceBase, session_id: str) -> ProgressDisplay:
        self._unsubscribe = events.subscribe(self.handle, names=EVENTS, session_id=session_id)
        return self

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.clear()

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.detach()

    def handle(self, event: EventBase) -> None:
        name = event.event_name
        node = getattr(event, "node_id", "?")
        now = self.clock()
        if name == "invocation_started":
            self._started[node] = now
            return
        if name in ("invocation_complete", "invocation_error"):
            self._first.pop(node, None)
            self._started.pop(node, None)
            self.clear()
            return
        step = int(getattr(event, "step", 0))
        total = int(getattr(event, "total", 0))
        first = self._first.setdefault(node, (now, step))
        if step < total and now - self._last_draw < self.interval:
            return
        start = self._started.get(node, first[0])
        elapsed = now - start
        eta = None
        done_since_first = step - first[1]
        if done_since_first > 0:
            eta = (now - first[0]) / done_since_first * (total - step)
        elif step >= total:
            eta = 0.0
        label = f"{getattr(event, 'source_node_id', node)} {getattr(event, 'invocation_type', '')}".strip()
        width = shutil.get_terminal_size((100, 24)).columns
        line = render_bar(label, step, total, elapsed, eta, width, getattr(event, "message", None))
        with self._lock:
            self.stream.write("\r\x1b[2K" + line)
            self.stream.flush()
            self._drawn = True
            self._last_draw = now

    def clear(self) -> None:
        with self._lock:
            if self._drawn:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
                self._drawn = False
