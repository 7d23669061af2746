"""What every command shares: the stderr console, JSON output, option aliases."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

__all__ = [
    "WIDE_TERMINAL",
    "BenchmarkFileOpt",
    "JsonOpt",
    "ProgressReporter",
    "ensure_writable",
    "err_console",
    "out_console",
    "print_json",
]

out_console = Console()  # data (tables) to stdout
WIDE_TERMINAL = 160  # columns from which tables add the full arch strings (they need ~100 columns)
err_console = Console(stderr=True)  # progress, warnings, errors to stderr

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON to stdout instead of a table.")]
BenchmarkFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--benchmark-file",
        help="Official NAS-Bench-201 .pth file to read with nas_201_api (default: the table shipped with khnet).",
    ),
]


def _strict(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) as None, so that the output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def print_json(data: Any) -> None:
    """Write ``data`` as indented, strict JSON to stdout (NaN and infinities become null)."""
    sys.stdout.write(json.dumps(_strict(data), indent=2, allow_nan=False) + "\n")


def ensure_writable(folder: Path, option: str) -> None:
    """Fail before any work when ``folder`` (created if missing) cannot be written to."""
    import tempfile

    from khnet.errors import KhnetError

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise KhnetError(f"{option} {folder} cannot be written to ({err.strerror}); choose a writable folder") from None


class ProgressReporter:
    """Progress of long work on stderr, as ``update(done, total)`` calls arrive: a live bar with count and time
    left on a terminal; when stderr is piped or logged, a plain line about every 10% (and at least every minute).

    Use it as a context manager; ``quiet`` shows nothing.
    """

    def __init__(self, what: str, quiet: bool = False) -> None:
        import time

        self.what, self.quiet, self._clock = what, quiet, time.monotonic
        self._progress = self._task = None
        self._start = self._last_line = self._clock()
        self._last_done = 0

    def __enter__(self) -> ProgressReporter:
        if not self.quiet and err_console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(TextColumn(self.what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                      TimeRemainingColumn(), console=err_console, transient=True)  # fmt: skip
            self._progress.__enter__()
        return self

    def update(self, done: int, total: int) -> None:
        """``done`` of ``total`` items of the current batch of work are finished."""
        if self.quiet:
            return
        if self._progress is not None:
            if self._task is None or self._progress.tasks[0].total != total or done < self._last_done:
                if self._task is not None:
                    self._progress.remove_task(self._task)
                self._task = self._progress.add_task("", total=total)
            self._progress.update(self._task, completed=done)
            self._last_done = done
            return
        now = self._clock()
        step = max(1, total // 10)
        if done == total or done % step == 0 or now - self._last_line > 60:
            each = (now - self._start) / max(1, done)
            left = each * (total - done)
            eta = f"{left:.0f} s" if left < 120 else f"{left / 60:.0f} min"
            err_console.print(f"{self.what}: {done}/{total}, {each:.1f} s each, about {eta} left", highlight=False)
            self._last_line = now
        if done == total:
            self._start = now

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
