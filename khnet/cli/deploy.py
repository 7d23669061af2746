"""``khnet sample``, ``khnet search``, ``khnet export`` and ``khnet zoo``: from one supernet to many deployments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from khnet.cli._common import (
    WIDE_TERMINAL,
    JsonOpt,
    ProgressReporter,
    ensure_writable,
    err_console,
    out_console,
    print_json,
)
from khnet.errors import KhnetError, UsageError
from khnet.files import SUMMARY_FILE

__all__ = ["export", "sample", "search", "zoo_app"]

DEFAULT_SUPERNET = "cifar10-jpeg-c8"  # the zoo entry the README's examples use

SupernetOpt = Annotated[
    str, typer.Option("--supernet", "-s", help="Run directory, .safetensors file, zoo name or hf://ORG/NAME[@REV].")
]


def sample(
    arch: Annotated[str, typer.Argument(help="Arch string or benchmark index.")],
    supernet: SupernetOpt = DEFAULT_SUPERNET,
    output: Annotated[Path, typer.Option("--output", "-o", help="net.pt / .pt2 / .safetensors / .onnx")] = Path(
        "net.pt"
    ),
    fold_bn: Annotated[bool, typer.Option("--fold-bn", help="Fold each BatchNorm into the conv before it.")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="Write an AOTInductor package (.pt2).")] = False,
    dataset: Annotated[str | None, typer.Option(help="Recalibration data (default: the training dataset).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where datasets live.")] = None,
    calib_images: Annotated[
        int | None, typer.Option(min=1, help="Images for BatchNorm recalibration (default 2048; zoo: its table's).")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Seed of the recalibration subset.")] = 0,
    device: Annotated[str, typer.Option(help="Recalibrate on: cpu, cuda[:N] or auto (saved for the CPU).")] = "cpu",
    json_output: JsonOpt = False,
) -> None:
    """Bake one subnet out of a supernet, recalibrate its BatchNorm and save it as a standalone network.

    Examples: khnet sample 6111 -o net.pt ; khnet sample 6111 -s runs/demo -o net.safetensors
    """
    from khnet.export import bake_subnet, network_config, save_network
    from khnet.hub import resolve_supernet
    from khnet.space import Arch

    parsed = Arch.coerce(arch)  # a bad arch fails before the supernet loads
    resolved = resolve_supernet(supernet, device)
    data, note = resolved.calibration_dataset(dataset, str(data_dir) if data_dir else None)
    where = resolved.data_root(data, str(data_dir) if data_dir else None)
    calib_images = resolved.eval_settings("valid", calib_images=calib_images).calib_images
    if note:
        err_console.print(f"note: {note}", highlight=False)
    net, info = bake_subnet(resolved.model, parsed, data, calib_images, seed, where)
    net = net.cpu()
    files = save_network(net, output, info, fold=fold_bn, compile=compile)
    config = network_config(net, info, fold_bn)
    if json_output:
        print_json({**config, "files": [str(f) for f in files], "supernet": resolved.source})
        return
    out_console.print(
        f"wrote {', '.join(map(str, files))}: {config['arch']} (index {config['index']}), "
        f"{config['mflops']:.2f} MFLOPs, "
        f"{config['mparams']:.4f} M params, BatchNorm recalibrated on {calib_images} {data} images"
        + (", folded" if fold_bn else ""),
        highlight=False,
    )


def search(
    supernet: SupernetOpt = DEFAULT_SUPERNET,
    max_flops: Annotated[list[str] | None, typer.Option(help="FLOPs budget(s): 5M, 5e6 or 5000000.")] = None,
    max_params: Annotated[list[str] | None, typer.Option(help="Parameter budget(s): 0.5M, 5e5.")] = None,
    max_latency_ms: Annotated[list[float] | None, typer.Option(help="Latency budget(s) in ms on --device.")] = None,
    budget_net: Annotated[
        str,
        typer.Option(
            help="Network the FLOPs/params budgets apply to: deployed (the subnet at the supernet's size, as "
            "khnet sample exports it) or benchmark (NAS-Bench-201's C=16, N=5, to train from scratch)."
        ),
    ] = "deployed",
    device: Annotated[str, typer.Option(help="Evaluate subnets and measure latency on: cpu, cuda[:N], auto.")] = "cpu",
    latency_batch: Annotated[int, typer.Option(min=1, help="Batch size of the latency measurement.")] = 1,
    remeasure: Annotated[bool, typer.Option("--remeasure", help="Measure latency anew, ignoring the cache.")] = False,
    top: Annotated[int, typer.Option(min=1, help="Winners per budget.")] = 10,
    max_evals: Annotated[int, typer.Option(min=1, help="Exhaustive up to this many classes, else evolution.")] = 300,
    dataset: Annotated[str | None, typer.Option(help="Validation data (default: the training dataset).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where datasets live.")] = None,
    test_images: Annotated[
        int | None, typer.Option(min=1, help="Rank on a seeded subset of N validation images (zoo: its table's).")
    ] = None,
    calib_images: Annotated[
        int | None, typer.Option(min=1, help="Images for BatchNorm recalibration (default 2048; zoo: its table's).")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Seed of evolution and data subsets.")] = 0,
    export_dir: Annotated[Path | None, typer.Option("--export", help="Write each budget's winner here (.pt2).")] = None,
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Exit 0 even when no arch meets a budget (default: exit 1).")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Find the best subnets under FLOPs / params / latency budgets, ranked on the VALIDATION split.

    Several budgets in one call (repeat the options) give one winner each: one training, many deployments.
    A zoo entry answers from its shipped whole-space table, with no data and no evaluation.
    Examples: khnet search --max-flops 5M ; khnet search --budget-net benchmark --max-flops 100M --top 3
    """
    from khnet.export import bake_subnet, save_network
    from khnet.hub import resolve_supernet
    from khnet.runtime import resolve_device
    from khnet.search import BUDGET_NETWORKS, parse_budgets, search_supernet

    budgets = parse_budgets(max_flops or [], max_params or [], max_latency_ms or [])
    if budget_net not in BUDGET_NETWORKS:
        raise UsageError(f"--budget-net {budget_net!r}: choose deployed or benchmark")
    device = str(resolve_device(device))
    if export_dir:
        ensure_writable(export_dir, "--export")
    resolved = resolve_supernet(supernet, device)
    settings = resolved.eval_settings("valid", dataset, test_images, calib_images, seed,
                                      data_dir=str(data_dir) if data_dir else None)  # fmt: skip
    with ProgressReporter("search: evaluating subnets on the validation split") as progress:
        results, shape = search_supernet(
            resolved.model, budgets, settings, results_dir=resolved.results_dir,
            shipped_results=resolved.shipped_results, budget_net=budget_net, top=top, max_evals=max_evals, seed=seed,
            device=device, latency_batch=latency_batch, remeasure=remeasure, progress=progress.update,
        )  # fmt: skip
    exported = {}
    if export_dir:
        for i, result in enumerate(results):
            if result.winners:
                arch = result.winners[0].arch
                net, info = bake_subnet(resolved.model, arch, settings.dataset, settings.calib_images, seed,
                                        settings.data_dir)  # fmt: skip
                path = Path(export_dir) / f"budget{i + 1}-arch{arch.index}.pt2"
                save_network(net.cpu(), path, info)
                exported[i] = str(path)
    _report(results, settings, shape, budget_net, exported, json_output)
    empty = [str(i + 1) for i, r in enumerate(results) if not r.winners]
    if empty and not allow_empty:
        raise KhnetError(f"no arch meets budget {', '.join(empty)} (the cheapest is shown above); relax it, "
                         "or pass --allow-empty to exit 0 anyway")  # fmt: skip


def _candidate(c, bench: tuple[str, str] | None) -> dict:
    from khnet.benchmark import ShippedGroundTruth

    gt = ShippedGroundTruth.load()
    return {"index": c.arch.index, "arch": str(c.arch), "mflops": round(c.cost.mflops, 5),
            "mparams": round(c.cost.mparams, 6), "accuracy": c.accuracy, "latency_ms": c.latency_ms,
            "benchmark": round(gt.accuracy(c.arch, *bench), 2) if bench else None}  # fmt: skip


def _network_words(shape: dict, budget_net: str) -> str:
    which = "deployed network" if budget_net == "deployed" else "benchmark-size network"
    return f"{which} (C={shape['C']}, N={shape['N']}, {shape['resolution']} px)"


def _report(results, settings, shape, budget_net, exported, json_output: bool) -> None:
    from khnet.data import dataset_info
    from khnet.evaluate import benchmark_setting
    from khnet.search import cost_range

    info = dataset_info(settings.dataset)
    bench = benchmark_setting(info.benchmark, "test")  # what the winners are worth trained from scratch
    bench_label = f"NB201 {bench[0]} {bench[1]} %" if bench else "benchmark"
    network = _network_words(shape, budget_net)
    if json_output:
        print_json([{"budget": str(r.budget), "budget_network": {"name": budget_net, **shape},
                     "binds": r.binds, "strategy": r.strategy, "feasible_classes": r.feasible_classes,
                     "evaluated": r.evaluated, "winners": [_candidate(c, bench) for c in r.winners],
                     "pareto": [_candidate(c, bench) for c in r.pareto],
                     "cheapest": _candidate(r.cheapest, bench) if r.cheapest else None,
                     "exported": exported.get(i), "benchmark_column": bench_label,
                     "note": info.note} for i, r in enumerate(results)])  # fmt: skip
        return
    for i, r in enumerate(results):
        if not r.winners:
            c = r.cheapest
            what = (
                f"{c.latency_ms:.2f} ms"
                if c.latency_ms is not None
                else f"{c.cost.mflops:.2f} MFLOPs, {c.cost.mparams:.4f} M params"
            )
            out_console.print(f"[bold red]budget {i + 1} ({r.budget}, {network}): no arch meets it.[/] The "
                              f"cheapest is index {c.arch.index} {c.arch} ({what}).", highlight=False)  # fmt: skip
            continue
        how = {"stored": "all from stored results", "exhaustive": "all evaluated", "evolution": "evolution"}
        table = Table(title=f"Budget {i + 1}: {r.budget} on the {network}: {r.feasible_classes} classes fit, "
                      f"{r.evaluated} ranked ({how.get(r.strategy, r.strategy)})", title_justify="left",
                      caption_justify="left")  # fmt: skip
        wide = out_console.width >= WIDE_TERMINAL  # room for the arch strings too
        for column in ("", "index", *(["arch"] if wide else []), "MFLOPs", "M params", "valid %", "ms", "NB201 %"):
            table.add_column(column, justify="left" if column == "arch" else "right", no_wrap=True)
        front = {id(c) for c in r.pareto}
        for c in r.winners:
            d = _candidate(c, bench)
            table.add_row("*" if id(c) in front else "", str(d["index"]), *([d["arch"]] if wide else []),
                          f"{d['mflops']:.2f}",
                          f"{d['mparams']:.4f}", f"{c.accuracy:.2f}", f"{c.latency_ms:.2f}" if c.latency_ms else "-",
                          f"{d['benchmark']:.2f}" if d["benchmark"] is not None else "-")  # fmt: skip
        table.caption = (f"valid % = supernet on the validation split; NB201 % = {bench_label.removesuffix(' %')} "
                         "(from scratch); * = on the Pareto front; khnet space INDEX shows an arch")  # fmt: skip
        out_console.print(table)
        w = _candidate(r.winners[0], bench)
        out_console.print(f"winner: index {w['index']} - {r.winners[0].accuracy:.2f}% valid (supernet), "
                          f"{w['mflops']:.2f} MFLOPs, {w['mparams']:.4f} M params"
                          + (f"; {bench_label}: {w['benchmark']:.2f}" if w["benchmark"] is not None else "")
                          + (f" -> {exported[i]}" if i in exported else ""), highlight=False)  # fmt: skip
        out_console.print(f"  {w['arch']}", highlight=False, soft_wrap=True)
        if not r.binds:
            lo, hi = cost_range(shape)
            err_console.print(f"[yellow]note: budget {i + 1} ({r.budget}) binds nothing: every isomorphism class "
                              f"fits it on the {network}, whose subnets cost {lo.mflops:.2f}-{hi.mflops:.2f} MFLOPs "
                              f"and {lo.mparams:.4f}-{hi.mparams:.4f} M params; the answer is the unconstrained best. "
                              "Give a tighter budget, or --budget-net benchmark to budget the C=16, N=5 network.[/]",
                              highlight=False)  # fmt: skip
    if info.note:
        out_console.print(f"note: {info.note}", highlight=False)


def export(
    supernet: Annotated[str, typer.Argument(help="Run directory, .safetensors file, zoo name or hf://ORG/NAME.")],
    to: Annotated[Path | None, typer.Option("--to", help="Write a Hub-style folder here.")] = None,
    push: Annotated[str | None, typer.Option("--push", help="Upload to this Hub repository (ORG/NAME).")] = None,
    private: Annotated[bool, typer.Option(help="Create the Hub repository as private.")] = False,
    revision: Annotated[str | None, typer.Option(help="Hub branch to push to.")] = None,
    overwrite_card: Annotated[
        bool, typer.Option("--overwrite-card", help="Replace a README.md already in the folder or repository.")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Write a supernet as a Hugging Face Hub repository (model.safetensors, config.json, model card).

    Examples: khnet export runs/c10 --to hub/c10 ; khnet export runs/c10 --push my-org/khnet-c10 --private
    """
    import tempfile

    from khnet.checkpoint import read_run_config
    from khnet.hub import push_to_hub, resolve_supernet, save_pretrained

    if not to and not push:
        raise UsageError("say where to: --to DIR and/or --push ORG/NAME")
    if to is not None and to.exists() and not to.is_dir():
        raise UsageError(f"--to {to} is a file; give a folder (it is created when missing)")
    resolved = resolve_supernet(supernet)
    config = read_run_config(resolved.directory)
    summary_file = Path(resolved.results_dir) / SUMMARY_FILE  # written by the last `khnet eval`
    metrics = json.loads(summary_file.read_text()) if summary_file.is_file() else None
    if resolved.zoo is not None and metrics is None:
        metrics = resolved.zoo.metrics  # a zoo entry's figures travel with it
    report: dict = {"metrics_from": str(summary_file) if summary_file.is_file() else ("zoo" if metrics else None)}
    if to is not None:
        save_pretrained(resolved.model, to, config, metrics, overwrite_card=overwrite_card)
        report["folder"] = str(to)
        err_console.print(f"wrote {to}/model.safetensors, config.json, training.json, README.md", highlight=False)
    if push:
        with tempfile.TemporaryDirectory(prefix="khnet-export-") as tmp:  # removed on every path out
            folder = to if to is not None else Path(tmp)
            if to is None:
                save_pretrained(resolved.model, folder, config, metrics, overwrite_card=True)
            url = push_to_hub(folder, push, private=private, revision=revision, overwrite_card=overwrite_card)
        report.update(repo=push, commit=url)
        err_console.print(f"pushed to https://huggingface.co/{push} ({url})", highlight=False)
    if json_output:
        print_json(report)


zoo_app = typer.Typer(help="The model zoo: published supernets.", no_args_is_help=True)


@zoo_app.command("list")
def zoo_list(json_output: JsonOpt = False) -> None:
    """Show the zoo's supernets: scale, data, recipe and headline metrics (accuracies in percent)."""
    from khnet.zoo import zoo_entries

    entries = zoo_entries()
    if json_output:
        print_json([e.__dict__ for e in entries.values()])
        return
    table = Table(title="khnet model zoo", title_justify="left", caption_justify="left")
    for column in ("name", "C / N", "M params", "valid mean / max %", "tau"):
        table.add_column(column, justify="left" if column == "name" else "right", no_wrap=True)
    lines = []
    for e in entries.values():
        m, sc = e.metrics, e.scale
        mean_max = f"{m['space_valid_mean']:.2f} / {m['space_valid_max']:.2f}" if "space_valid_mean" in m else "-"
        tau = f"{m['space_kendall_tau']:.3f}" if "space_kendall_tau" in m else "-"
        shape = f"{sc['channels']} / {sc['cells_per_stage']}" if sc else "-"
        table.add_row(e.name, shape, f"{sc['mparams']:.2f}" if sc.get("mparams") else "-", mean_max, tau)
        lines.append(f"{e.name}: data {e.dataset}; {e.recipe or e.description}")
    table.caption = "over all 6,466 isomorphism classes; tau = Kendall's vs NAS-Bench-201; --json for everything"
    out_console.print(table)
    out_console.print("\n".join(lines), highlight=False)


@zoo_app.command("pull")
def zoo_pull(
    name: Annotated[str, typer.Argument(help="A name from khnet zoo list.")], json_output: JsonOpt = False
) -> None:
    """Fetch (if remote) and verify a zoo supernet; prints its local folder."""
    from khnet.zoo import pull_from_zoo

    path = pull_from_zoo(name)
    if json_output:
        print_json({"name": name, "weights": str(path), "folder": str(path.parent)})
        return
    out_console.print(str(path), highlight=False)
