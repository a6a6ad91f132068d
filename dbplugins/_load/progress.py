"""Progress of a long loop on stderr: a ``click.progressbar`` on a terminal, else a line every few seconds.

    with Progress(total=size, position=raw.tell, unit="rows", label="dbp load") as bar:
        for row in bar.count(rows):
            ...
    print(f"{bar.done:,} rows in {bar.elapsed:.1f} s, {bar.rate:,.0f} rows/s")   # the bar's final figures

``dbp load`` and ``bench.ingest`` both use it. Two things it guarantees:

* **The rate agrees with the summary.** ``rate`` is ``done / elapsed`` from the moment the object was made; at
  ``close()`` the clock stops and the bar is drawn one last time with those figures, so a summary printed from
  ``bar.rate`` and ``bar.elapsed`` shows the very numbers the bar ended on.
* **100% only at the end.** Until ``close()`` the figure stops at 99% (a file read to its end may still wait
  for its COMMIT); ``close()`` draws 100% once.
* **No silence.** Without a terminal (a CI log, ``nohup``, a pipe) a line such as
  ``dbp load: 45%  1,234,567 rows  45,678 rows/s  ETA 12 s`` goes to the stream every ``interval`` seconds
  (default 5), so a long run shows it is alive; a run shorter than that prints nothing.

The drawing happens on a small daemon thread, woken every ``redraw`` seconds on a terminal and every
``interval`` seconds otherwise: the loop itself only adds 1 to a counter per item, and the display keeps
moving while the loop waits (a slow input, a long final COMMIT). ``position`` is called from that thread, so
it must be safe to call while the loop runs (``BufferedReader.tell`` of the file being read is).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TextIO, TypeVar

import click

__all__ = ["Progress", "DEFAULT_INTERVAL", "DEFAULT_REDRAW"]

T = TypeVar("T")

#: Seconds between progress lines when the stream is not a terminal: often enough to show a run is alive,
#: rarely enough that a CI log of a 10-minute load stays about a hundred lines.
DEFAULT_INTERVAL = 5.0
#: Seconds between redraws of the bar on a terminal (5 per second looks live and costs nothing measurable).
DEFAULT_REDRAW = 0.2


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """Count items, draw the progress on ``file`` (stderr by default) until :meth:`close`.

    ``total`` is the length of the bar, in the units of ``position()`` (bytes of a file, say) or, without
    ``position``, in items counted. ``unit`` names the items (``"rows"``, ``"alerts"``). ``enabled=False`` (a
    ``--silent`` flag) draws nothing but still counts and times. ``interval`` is the period of the plain lines
    written when ``file`` is not a terminal; ``redraw`` the period of the bar on a terminal.
    """

    def __init__(
        self,
        *,
        total: int | None = None,
        position: Callable[[], int] | None = None,
        unit: str = "rows",
        label: str = "",
        file: TextIO | None = None,
        enabled: bool = True,
        interval: float = DEFAULT_INTERVAL,
        redraw: float = DEFAULT_REDRAW,
        width: int = 30,
    ) -> None:
        self.total = total if total and total > 0 else None
        self.unit = unit
        self.label = label
        self.file: TextIO = file if file is not None else sys.stderr
        self.done = 0
        self._position = position
        self._start = time.monotonic()
        self._end: float | None = None
        self._closed = False
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the thread's draw and close()'s final draw never interleave
        self._terminal = enabled and _is_terminal(self.file)
        self._bar: Any = None
        if self._terminal:
            self._bar = click.progressbar(
                length=self.total or 1,
                file=self.file,
                width=width,
                bar_template="[%(bar)s] %(info)s" if self.total else "%(info)s",
                show_eta=False,
                show_percent=False,
                show_pos=False,
                item_show_func=lambda _item: self._info(),
            )
        self._thread: threading.Thread | None = None
        if enabled:
            period = redraw if self._terminal else interval
            self._thread = threading.Thread(
                target=self._run, args=(period,), name="dbp-progress", daemon=True
            )
            self._thread.start()

    # -- counting -------------------------------------------------------------------------------------------

    def count(self, items: Iterable[T]) -> Iterator[T]:
        """Yield ``items``, counting each one."""
        for item in items:
            self.done += 1
            yield item

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items done."""
        self.done += n

    @property
    def elapsed(self) -> float:
        """Seconds since the start; fixed once :meth:`close` ran."""
        return (self._end if self._end is not None else time.monotonic()) - self._start

    @property
    def rate(self) -> float:
        """Items per second so far (``done / elapsed``); fixed once :meth:`close` ran."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    # -- drawing --------------------------------------------------------------------------------------------

    def _where(self) -> int:
        if self._position is None:
            return self.done
        try:
            return max(self._position(), 0)
        except (OSError, ValueError):  # the file was closed under us: the bar stays where it was
            return 0

    def _info(self) -> str:
        elapsed = self.elapsed
        parts = []
        eta = None
        if self.total is not None:
            done = 1.0 if self._closed else min(self._where() / self.total, 1.0)
            if 0 < done < 1:
                eta = elapsed * (1 - done) / done
            # 100% is said once, by close(): a file read to its end may still wait for its COMMIT.
            parts.append(f"{done if self._closed else min(done, 0.99):4.0%}")
        if self.total is not None and self._position is None:
            parts.append(f"{self.done:,}/{self.total:,} {self.unit}")
        else:
            one = self.done == 1 and self.unit.endswith("s")
            parts.append(f"{self.done:,} {self.unit[:-1] if one else self.unit}")
        parts.append(f"{self.rate:,.0f} {self.unit}/s")
        parts.append(f"{elapsed:,.1f} s" if eta is None else f"ETA {eta:,.0f} s")
        return "  ".join(parts)

    def _draw_bar(self) -> None:
        bar = self._bar
        if self.total is not None:
            where = self.total if self._closed else min(self._where(), self.total - 1)
            if where > bar.pos:
                bar.update(where - bar.pos)  # moves the bar and redraws it
                return
        bar.render_progress()

    def _run(self, period: float) -> None:
        while not self._stop.wait(period):
            with self._lock:
                if self._closed:
                    return
                try:
                    if self._terminal:
                        self._draw_bar()
                    else:
                        prefix = f"{self.label}: " if self.label else ""
                        click.echo(prefix + self._info(), file=self.file)
                except (OSError, ValueError):  # stderr closed or gone: stop drawing, never break the loop
                    return

    def close(self) -> None:
        """Stop the clock and the thread; on a terminal draw the bar a last time and end its line."""
        if self._closed:
            return
        self._stop.set()
        with self._lock:
            self._end = time.monotonic()
            self._closed = True
            if self._bar is not None:
                self._draw_bar()
                self._bar.render_finish()
        if self._thread is not None:
            self._thread.join(timeout=5.0)  # it only ever waits on _stop or draws one line

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
