"""``khnet space ARCH|INDEX``: one architecture, its costs and the benchmark's accuracies."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from khnet.benchmark import GroundTruthError, describe_arch, load_ground_truth, normalize_dataset
from khnet.cli._common import BenchmarkFileOpt, JsonOpt, out_console, print_json
from khnet.errors import UsageError

__all__ = ["space"]

EXAMPLES = """Examples:

  khnet space 6111

  khnet space "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"

  khnet space 6111 --json
"""


def space(
    arch: Annotated[str, typer.Argument(help="An NB201 arch string or a benchmark index (0..15624).")],
    json_output: JsonOpt = False,
    benchmark_file: BenchmarkFileOpt = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            help="Only these benchmark datasets' accuracies (cifar10, cifar10-valid, cifar100, imagenet16-120)."
        ),
    ] = None,
) -> None:
    """Show one architecture: canonical string, index, isomorphism class, costs and benchmark accuracies."""
    for name in dataset or []:
        try:
            normalize_dataset(name)
        except GroundTruthError as err:
            raise UsageError(str(err)) from None
    info = describe_arch(arch, load_ground_truth(benchmark_file), dataset or None)
    if json_output:
        print_json(info)
        return
    table = Table(title=f"NAS-Bench-201 arch {info['index']}", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("arch", info["arch"])
    table.add_row("index", str(info["index"]))
    members = info["iso_members"]
    shown = ", ".join(map(str, members[:8])) + (f", ... ({len(members)} in all)" if len(members) > 8 else "")
    table.add_row("isomorphism class", f"{info['iso_class']} ({len(members)} member(s): {shown})")
    table.add_row("unique key", info["unique_key"])
    for dataset, cost in info["cost"].items():
        table.add_row(f"cost {dataset}", f"{cost['mflops']:.5f} MFLOPs, {cost['mparams']:.6f} M params")
    out_console.print(table)

    acc = Table(title=f"Accuracy (%) trained from scratch: {info['source']}", title_justify="left")
    acc.add_column("setting / split")
    acc.add_column("200 epochs", justify="right")
    acc.add_column("12 epochs", justify="right")
    for key, values in info["accuracy"].items():
        acc.add_row(key, f"{values['200ep']:.2f}", f"{values['12ep']:.2f}")
    out_console.print(acc)


space.__doc__ = f"{space.__doc__}\n\n{EXAMPLES}"
