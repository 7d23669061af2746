"""The ``khnet`` app: wires the command modules together and turns errors into one-line messages."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.markup import escape

from khnet import __version__
from khnet.cli._common import err_console
from khnet.cli.deploy import export, sample, search, zoo_app
from khnet.cli.evaluate import evaluate
from khnet.cli.space import space
from khnet.cli.train import train
from khnet.errors import KhnetError, UsageError
from khnet.runtime import tune_allocator

__all__ = ["app", "main"]

app = typer.Typer(
    name="khnet",
    help="Kshot-Hypernet on NAS-Bench-201: train one supernet, deploy many subnets without retraining.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("space")(space)
app.command("train")(train)
app.command("eval")(evaluate)
app.command("sample")(sample)
app.command("search")(search)
app.command("export")(export)
app.add_typer(zoo_app, name="zoo")

_DEBUG = False


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"khnet {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    global _DEBUG
    _DEBUG = debug


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status: 0 ok, 2 bad usage (a value or option combination that cannot work),
    1 a run-time failure (missing or corrupt files or data, an internal error), 130 after Ctrl-C."""
    debug_env = os.environ.get("KHNET_DEBUG", "") not in ("", "0")
    tune_allocator()  # freed CPU memory stays in the process: fewer page faults (docs/performance.md)
    try:
        # in this mode Typer returns the status of a typer.Exit, and turns Ctrl-C into Exit(130), rather than raise
        status = app(args=argv, standalone_mode=False, prog_name="khnet")
        if isinstance(status, int) and not isinstance(status, bool) and status != 0:
            if status == 130:
                err_console.print("interrupted", highlight=False)
            return status
    except KhnetError as err:
        if _DEBUG or debug_env:
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        return 2 if isinstance(err, UsageError) else 1
    except typer.Exit as exit_:
        return exit_.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as err:
        # Usage errors: Typer raises click's exceptions, or its vendored copy of click in newer releases,
        # so they are recognised by their interface rather than their class.
        if callable(getattr(err, "show", None)) and isinstance(getattr(err, "exit_code", None), int):
            err.show()
            return err.exit_code
        if _DEBUG or debug_env:
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(err).__name__}: {escape(str(err))} "
            "(rerun with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
