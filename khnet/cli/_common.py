"""What every command shares: the stderr console, JSON output, option aliases."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

__all__ = ["BenchmarkFileOpt", "JsonOpt", "err_console", "out_console", "print_json"]

out_console = Console()  # data (tables) to stdout
err_console = Console(stderr=True)  # progress, warnings, errors to stderr

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON to stdout instead of a table.")]
BenchmarkFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--benchmark-file",
        help="Official NAS-Bench-201 .pth file to read with nas_201_api (default: the table shipped with khnet).",
    ),
]


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON to stdout."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
