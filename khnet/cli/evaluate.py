"""``khnet eval SUPERNET [ARCH|INDEX ...]``: subnets straight from a supernet, against the benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from khnet.cli._common import WIDE_TERMINAL, JsonOpt, ProgressReporter, ensure_writable, out_console, print_json
from khnet.errors import UsageError
from khnet.space import Arch

__all__ = ["evaluate"]

EXAMPLES = """Examples:

  khnet eval runs/demo 6111 9930

  khnet eval runs/demo --sample 100 --split valid

  khnet eval runs/demo --all --test-images 2000 --plots runs/demo/plots
"""


def evaluate(
    supernet: Annotated[
        str, typer.Argument(help="Run directory, .safetensors file, zoo name (khnet zoo list) or hf://ORG/NAME[@REV].")
    ],
    archs: Annotated[list[str] | None, typer.Argument(help="Arch strings or benchmark indices.")] = None,
    sample: Annotated[
        int | None, typer.Option(min=1, max=15625, help="A seeded sample of N archs spread over the cost range.")
    ] = None,
    all_archs: Annotated[bool, typer.Option("--all", help="All 15,625 archs (6,466 evaluations).")] = False,
    split: Annotated[
        str, typer.Option(help="valid (to select), test (to report); x-valid / x-test: the benchmark's test halves.")
    ] = "test",
    dataset: Annotated[str | None, typer.Option(help="Dataset (default: the one it was trained on).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where datasets live.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 512,
    test_images: Annotated[int | None, typer.Option(min=1, help="Evaluate on a seeded subset of N images.")] = None,
    calib_images: Annotated[
        int | None, typer.Option(min=1, help="Images for BatchNorm recalibration (default 2048; zoo: its table's).")
    ] = None,
    seed: Annotated[
        int, typer.Option(min=0, max=2**32 - 1, help="Seed of --sample, the recalibration and test subsets.")
    ] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    plots: Annotated[Path | None, typer.Option(help="Write the distribution and rank plots (PNG) here.")] = None,
    subnets_per_pass: Annotated[
        int, typer.Option(min=1, max=64, help="Evaluate N subnets together (stacked; 1 is the fastest measured here).")
    ] = 1,
    json_output: JsonOpt = False,
) -> None:
    """Evaluate subnets from a supernet (bake, recalibrate BatchNorm, test) and compare with NAS-Bench-201."""
    from khnet.distributed import is_main_process
    from khnet.evaluate import evaluate_supernet, stratified_sample  # torch: only when a command runs
    from khnet.hub import resolve_supernet

    if all_archs and (archs or sample):
        given = "archs" if archs else "--sample"
        raise UsageError(f"--all evaluates every arch; drop the {given} given with it, or drop --all")
    chosen = [Arch.coerce(a) for a in archs or []]
    if sample:
        chosen += stratified_sample(sample, seed)
    if all_archs:
        chosen = list(Arch.all())
    if not chosen:
        raise UsageError("nothing to evaluate: name archs or indices, or pass --sample N or --all")
    chosen = list(dict.fromkeys(chosen))
    if plots:
        from khnet.plots import require_matplotlib

        require_matplotlib()  # before any work
        ensure_writable(plots, "--plots")
    resolved = resolve_supernet(supernet, device)
    settings = resolved.eval_settings(split, dataset, test_images, calib_images, seed, batch_size,
                                      str(data_dir) if data_dir else None)  # fmt: skip
    main_process = is_main_process()
    quiet = json_output or not main_process
    with ProgressReporter("evaluating", quiet=not main_process) as progress:  # stderr: --json too
        records, summary = evaluate_supernet(
            resolved.model, chosen, settings, resolved.results_dir, shipped_results=resolved.shipped_results,
            progress=progress.update, subnets_per_pass=subnets_per_pass,
        )  # fmt: skip
    if plots:
        from khnet.plots import plot_accuracy_vs_rank, plot_distribution

        summary["plots"] = [
            str(plot_distribution(records, plots, summary["note"])),
            str(plot_accuracy_vs_rank(records, plots, summary["note"])),
        ]
    if not main_process or (quiet and not json_output):
        return  # under torchrun only rank 0 reports
    if json_output:
        print_json({"summary": summary, "records": [r.to_dict() for r in records]})
        return
    _print(records, summary)


def _print(records, summary) -> None:
    table = Table(title="Subnets from the supernet (accuracy %)", title_justify="left", caption_justify="left")
    wide = out_console.width >= WIDE_TERMINAL  # room for the arch strings too
    for column in ("index", *(["arch"] if wide else []), "MFLOPs", "M params", "accuracy", "benchmark", "reused"):
        table.add_column(column, justify="left" if column == "arch" else "right", no_wrap=True)
    shown = sorted(records, key=lambda r: -r.accuracy)
    for r in shown[:50]:
        bench = f"{r.benchmark_accuracy:.2f}" if r.benchmark_accuracy is not None else "-"
        table.add_row(str(r.index), *([r.arch] if wide else []), f"{r.mflops:.2f}", f"{r.mparams:.4f}",
                      f"{r.accuracy:.2f}", bench, "yes" if r.reused else "")  # fmt: skip
    where = f" {summary['benchmark_setting']}" if summary.get("benchmark_setting") else ""
    caption = (
        f"accuracy = supernet subnet; benchmark = NAS-Bench-201{where}, from scratch; khnet space INDEX shows an arch"
    )
    if len(shown) > 50:
        caption += f"; the best 50 of {len(shown)}, --json for all"
    table.caption = caption
    out_console.print(table)
    s = summary
    lines = [
        f"archs: {s['archs']} ({s['evaluated_classes']} isomorphism classes evaluated)",
        f"supernet: mean {s['mean_accuracy']:.2f}  max {s['max_accuracy']:.2f}"
        f"  (over all {s['class_members']} class members: mean {s['mean_accuracy_over_class_members']:.2f})",
    ]
    if "benchmark_mean_accuracy" in s:
        lines.append(
            f"benchmark, same archs: mean {s['benchmark_mean_accuracy']:.2f}  max {s['benchmark_max_accuracy']:.2f}"
        )
        lines.append(
            f"Kendall tau {s['kendall_tau']:.3f}  Spearman rho {s['spearman_rho']:.3f}  "
            + (
                f"top-10 overlap {s['top10_overlap']:.0%}"
                if s["top10_overlap"] is not None
                else "top-10 overlap: n/a (< 10 archs)"
            )
        )
    if "benchmark_space_mean" in s:
        lines.append(
            f"benchmark, all 15,625 trained from scratch: mean {s['benchmark_space_mean']:.2f}  "
            f"max {s['benchmark_space_max']:.2f}"
        )
    if s.get("note"):
        lines.append(f"note: {s['note']}")
    out_console.print("\n".join(lines), highlight=False)


evaluate.__doc__ = f"{evaluate.__doc__}\n\n{EXAMPLES}"
