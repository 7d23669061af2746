"""The resumable results store: ``eval-<supernet hash>[-r<rank>].csv`` rows in a results folder, shipped
read-only tables (``eval-<hash>.csv.gz``), and the lock that keeps one writer per file."""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from khnet.config import EvalSettings
from khnet.errors import KhnetError
from khnet.files import atomic_write

__all__ = ["RESULT_FIELDS", "ResultsLock", "ResultsWriter", "read_result_rows", "read_results", "write_results_table"]

log = logging.getLogger(__name__)


RESULT_FIELDS = ("settings", "iso_class", "accuracy", "loss", "seconds", "images", "calib_images", "time")


def _results_files(results_dir: Path, model_hash: str) -> list[Path]:
    """Result files of one supernet in a folder: the writable ``eval-<hash>[-r<rank>].csv`` and shipped,
    read-only ``eval-<hash>.csv.gz`` tables (a zoo entry's whole-space evaluation)."""
    return sorted(results_dir.glob(f"eval-{model_hash}*.csv")) + sorted(results_dir.glob(f"eval-{model_hash}*.csv.gz"))


def _read_text(path: Path) -> str:
    if path.suffix == ".gz":
        import gzip

        return gzip.decompress(path.read_bytes()).decode()
    return path.read_text()


def read_result_rows(results_dir: str | Path, model_hash: str) -> list[dict[str, str]]:
    """Every complete stored row of one supernet in a folder (all settings), as dicts of strings."""
    rows = []
    for path in _results_files(Path(results_dir), model_hash):
        rows += [r for r in csv.DictReader(io.StringIO(_read_text(path))) if r.get("time")]
    return rows


def write_results_table(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write result rows as a shipped, read-only table (``eval-<hash>.csv.gz``): one row per (settings,
    class), sorted, gzipped with a fixed timestamp so that the same results give the same bytes."""
    import gzip

    unique = {(r["settings"], int(r["iso_class"])): r for r in rows}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=RESULT_FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(unique[k] for k in sorted(unique))
    atomic_write(path, lambda tmp: tmp.write_bytes(gzip.compress(out.getvalue().encode(), mtime=0)))
    return Path(path)


def read_results(
    results_dir: str | Path | Sequence[str | Path], model_hash: str, settings: EvalSettings
) -> dict[int, dict[str, float]]:
    """Stored results for this supernet and settings: iso class -> {accuracy, loss, seconds}.

    ``results_dir`` may be one folder or several (e.g. a zoo entry's shipped table, then the user's cache);
    later folders win on a class they share. Partial lines (a run killed mid-write) are ignored.
    """
    found: dict[int, dict[str, float]] = {}
    key = settings.key()
    folders = [results_dir] if isinstance(results_dir, (str, Path)) else list(results_dir)
    for folder in folders:
        for row in read_result_rows(folder, model_hash):
            try:
                if row["settings"] == key:
                    found[int(row["iso_class"])] = {k: float(row[k]) for k in ("accuracy", "loss", "seconds")}
            except (KeyError, TypeError, ValueError):
                continue
    return found


class ResultsLock:
    """An exclusive advisory lock (``flock``) on ``eval-<hash>[-r<rank>].lock`` beside the results file, held
    while results are written: a second evaluation of the same supernet into the same folder says it waits,
    then reuses what the first one stored instead of evaluating every arch again."""

    def __init__(self, results_dir: Path, model_hash: str, rank: int) -> None:
        import fcntl

        name = f"eval-{model_hash}.lock" if rank == 0 else f"eval-{model_hash}-r{rank}.lock"
        try:
            results_dir.mkdir(parents=True, exist_ok=True)
            self.file = (results_dir / name).open("a+")
        except OSError as err:
            raise KhnetError(f"results folder {results_dir} cannot be written to ({err.strerror}); "
                             "choose a writable one (e.g. set KHNET_RESULTS)") from None  # fmt: skip
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another evaluation is writing %s; waiting for it to finish", results_dir / name)
            fcntl.flock(self.file, fcntl.LOCK_EX)
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()

    def release(self) -> None:
        import fcntl

        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


class ResultsWriter:
    """Appends rows to ``eval-<hash>[-r<rank>].csv``; each line is written whole and fsynced."""

    def __init__(self, results_dir: Path, model_hash: str, rank: int) -> None:
        results_dir.mkdir(parents=True, exist_ok=True)
        self.path = results_dir / (f"eval-{model_hash}.csv" if rank == 0 else f"eval-{model_hash}-r{rank}.csv")
        if self.path.is_file():
            text = self.path.read_text()
            if text and not text.endswith("\n"):  # a line cut by a kill: drop it
                self.path.write_text(text[: text.rfind("\n") + 1])
        if not self.path.is_file() or self.path.stat().st_size == 0:
            self.path.write_text(",".join(RESULT_FIELDS) + "\n")

    def append(self, row: dict[str, Any]) -> None:
        out = io.StringIO()
        csv.DictWriter(out, fieldnames=RESULT_FIELDS, lineterminator="\n").writerow(row)
        with self.path.open("a") as f:
            f.write(out.getvalue())
            f.flush()
            os.fsync(f.fileno())
