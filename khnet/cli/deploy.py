"""``khnet sample``, ``khnet search``, ``khnet export`` and ``khnet zoo``: from one supernet to many deployments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from khnet.cli._common import JsonOpt, err_console, out_console, print_json
from khnet.errors import KhnetError

__all__ = ["export", "sample", "search", "zoo_app"]

SupernetOpt = Annotated[
    str, typer.Option("--supernet", "-s", help="Run directory, .safetensors file, zoo name or hf://ORG/NAME[@REV].")
]


def sample(
    arch: Annotated[str, typer.Argument(help="Arch string or benchmark index.")],
    supernet: SupernetOpt = "demo-sample",
    output: Annotated[Path, typer.Option("--output", "-o", help="net.pt / .pt2 / .safetensors / .onnx")] = Path(
        "net.pt"
    ),
    fold_bn: Annotated[bool, typer.Option("--fold-bn", help="Fold each BatchNorm into the conv before it.")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="Write an AOTInductor package (.pt2).")] = False,
    dataset: Annotated[str | None, typer.Option(help="Recalibration data (default: the training dataset).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where datasets live.")] = None,
    calib_images: Annotated[int, typer.Option(help="Images for BatchNorm recalibration.")] = 2048,
    seed: Annotated[int, typer.Option(help="Seed of the recalibration subset.")] = 0,
    json_output: JsonOpt = False,
) -> None:
    """Bake one subnet out of a supernet, recalibrate its BatchNorm and save it as a standalone network.

    Examples: khnet sample 6111 -s runs/demo -o net.pt ; khnet sample 6111 -s demo-sample -o net.safetensors
    """
    from khnet.export import bake_subnet, network_config, save_network
    from khnet.hub import resolve_supernet

    resolved = resolve_supernet(supernet)
    data = dataset or resolved.dataset or "sample"
    net, info = bake_subnet(resolved.model, arch, data, calib_images, seed, str(data_dir) if data_dir else None)
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
    supernet: SupernetOpt = "demo-sample",
    max_flops: Annotated[list[str] | None, typer.Option(help="FLOPs budget(s): 50M, 5e7 or 50000000.")] = None,
    max_params: Annotated[list[str] | None, typer.Option(help="Parameter budget(s): 0.5M, 5e5.")] = None,
    max_latency_ms: Annotated[list[float] | None, typer.Option(help="Latency budget(s) in ms on --device.")] = None,
    device: Annotated[str, typer.Option(help="Device to measure latency on.")] = "cpu",
    latency_batch: Annotated[int, typer.Option(help="Batch size of the latency measurement.")] = 1,
    top: Annotated[int, typer.Option(help="Winners per budget.")] = 10,
    max_evals: Annotated[int, typer.Option(help="Exhaustive up to this many classes, else evolution.")] = 300,
    dataset: Annotated[str | None, typer.Option(help="Validation data (default: the training dataset).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where datasets live.")] = None,
    test_images: Annotated[int | None, typer.Option(help="Rank on a seeded subset of N validation images.")] = None,
    calib_images: Annotated[int, typer.Option(help="Images for BatchNorm recalibration.")] = 2048,
    seed: Annotated[int, typer.Option(help="Seed of evolution and data subsets.")] = 0,
    export_dir: Annotated[Path | None, typer.Option("--export", help="Write each budget's winner here (.pt2).")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Find the best subnets under FLOPs / params / latency budgets, ranked on the VALIDATION split.

    Several budgets in one call (repeat the options) give one winner each: one training, many deployments.
    Examples: khnet search --max-flops 50M ; khnet search -s runs/c10 --max-flops 50M --max-flops 100M --top 3
    """
    from khnet.evaluate import EvalSettings
    from khnet.export import bake_subnet, save_network
    from khnet.hub import resolve_supernet
    from khnet.search import Budget, measure_latency, parse_quantity, search_budgets, supernet_evaluator

    lists = [max_flops or [], max_params or [], max_latency_ms or []]
    count = max(1, *map(len, lists))
    for name, values in zip(("--max-flops", "--max-params", "--max-latency-ms"), lists, strict=True):
        if len(values) not in (0, 1, count):
            raise KhnetError(f"{name} given {len(values)} times; give it once or once per budget ({count})")

    def pick(values, i):
        return values[i] if len(values) == count else (values[0] if values else None)

    budgets = [
        Budget(
            max_mflops=parse_quantity(pick(lists[0], i), "--max-flops") / 1e6 if pick(lists[0], i) else None,
            max_mparams=parse_quantity(pick(lists[1], i), "--max-params") / 1e6 if pick(lists[1], i) else None,
            max_latency_ms=pick(lists[2], i),
        )
        for i in range(count)
    ]
    resolved = resolve_supernet(supernet)
    cfg = resolved.model.config
    data = dataset or resolved.dataset or "sample"
    settings = EvalSettings(dataset=data, split="valid", test_images=test_images, calib_images=calib_images,
                            calib_seed=seed, data_dir=str(data_dir) if data_dir else None,
                            **resolved.split_settings())  # fmt: skip
    shape = {"num_classes": cfg.num_classes, "C": cfg.channels, "N": cfg.cells_per_stage}

    def latency(arch):
        return measure_latency(arch, device, latency_batch, cfg.num_classes, cfg.channels, cfg.cells_per_stage)

    with err_console.status("searching (evaluating subnets on the validation split)...", spinner="dots"):
        results = search_budgets(budgets, supernet_evaluator(resolved.model, settings, resolved.results_dir), top,
                                 max_evals, seed, latency, shape)  # fmt: skip
    exported = {}
    if export_dir:
        for i, result in enumerate(results):
            if result.winners:
                arch = result.winners[0].arch
                net, info = bake_subnet(resolved.model, arch, data, calib_images, seed, settings.data_dir)
                path = Path(export_dir) / f"budget{i + 1}-arch{arch.index}.pt2"
                save_network(net, path, info)
                exported[i] = str(path)
    _report(results, resolved, settings, exported, json_output)


def _candidate(c) -> dict:
    from khnet.benchmark import ShippedGroundTruth

    return {"index": c.arch.index, "arch": str(c.arch), "mflops": round(c.cost.mflops, 5),
            "mparams": round(c.cost.mparams, 6),
            "accuracy": c.accuracy, "latency_ms": c.latency_ms,
            "benchmark_cifar10_test": round(ShippedGroundTruth.load().accuracy(c.arch), 2)}  # fmt: skip


def _report(results, resolved, settings, exported, json_output: bool) -> None:
    from khnet.data import load_dataset

    note = load_dataset(settings.dataset, "test", root=settings.data_dir).info.note
    if json_output:
        print_json([{"budget": str(r.budget), "strategy": r.strategy, "feasible_classes": r.feasible_classes,
                     "evaluated": r.evaluated, "winners": [_candidate(c) for c in r.winners],
                     "pareto": [_candidate(c) for c in r.pareto],
                     "cheapest": _candidate(r.cheapest) if r.cheapest else None, "exported": exported.get(i),
                     "note": note} for i, r in enumerate(results)])  # fmt: skip
        return
    for i, r in enumerate(results):
        if not r.winners:
            c = r.cheapest
            what = (
                f"{c.latency_ms:.2f} ms"
                if c.latency_ms is not None
                else f"{c.cost.mflops:.2f} MFLOPs, {c.cost.mparams:.4f} M params"
            )
            out_console.print(f"[bold red]budget {i + 1} ({r.budget}): no arch meets it.[/] The cheapest is index "
                              f"{c.arch.index} {c.arch} ({what}).", highlight=False)  # fmt: skip
            continue
        table = Table(title=f"Budget {i + 1}: {r.budget} ({r.feasible_classes} classes fit, {r.evaluated} evaluated, "
                      f"{r.strategy})", title_justify="left")  # fmt: skip
        for column in ("", "index", "arch", "MFLOPs", "M params", "valid acc %", "ms", "NB201 C10 test %"):
            table.add_column(column, justify="left" if column == "arch" else "right", overflow="ellipsis", no_wrap=True)
        front = {id(c) for c in r.pareto}
        for c in r.winners:
            d = _candidate(c)
            table.add_row("*" if id(c) in front else "", str(d["index"]), d["arch"], f"{d['mflops']:.2f}",
                          f"{d['mparams']:.4f}", f"{c.accuracy:.2f}", f"{c.latency_ms:.2f}" if c.latency_ms else "-",
                          f"{d['benchmark_cifar10_test']:.2f}")  # fmt: skip
        table.caption = "* on the Pareto front (accuracy vs MFLOPs/latency); valid acc = supernet, validation split"
        out_console.print(table)
        w = r.winners[0]
        out_console.print(f"winner: index {w.arch.index} {w.arch} - {w.accuracy:.2f}% valid, {w.cost.mflops:.2f} MFLOPs"
                          + (f" -> {exported[i]}" if i in exported else ""), highlight=False)  # fmt: skip
    if note:
        out_console.print(f"note: {note}", highlight=False)


def export(
    supernet: Annotated[str, typer.Argument(help="Run directory, .safetensors file, zoo name or hf://ORG/NAME.")],
    to: Annotated[Path | None, typer.Option("--to", help="Write a Hub-style folder here.")] = None,
    push: Annotated[str | None, typer.Option("--push", help="Upload to this Hub repository (ORG/NAME).")] = None,
    private: Annotated[bool, typer.Option(help="Create the Hub repository as private.")] = False,
    revision: Annotated[str | None, typer.Option(help="Hub branch to push to.")] = None,
) -> None:
    """Write a supernet as a Hugging Face Hub repository (model.safetensors, config.json, model card).

    Examples: khnet export runs/c10 --to hub/c10 ; khnet export runs/c10 --push my-org/khnet-c10 --private
    """
    import tempfile

    from khnet.hub import push_to_hub, resolve_supernet, save_pretrained

    if not to and not push:
        raise KhnetError("say where to: --to DIR and/or --push ORG/NAME")
    resolved = resolve_supernet(supernet)
    config_file = resolved.directory / "config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    metrics_file = resolved.directory / "metrics-summary.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    folder = to or Path(tempfile.mkdtemp(prefix="khnet-export-"))
    save_pretrained(resolved.model, folder, config, metrics)
    out_console.print(f"wrote {folder}/model.safetensors, config.json, README.md", highlight=False)
    if push:
        url = push_to_hub(folder, push, private=private, revision=revision)
        out_console.print(f"pushed to https://huggingface.co/{push} ({url})", highlight=False)


zoo_app = typer.Typer(help="The model zoo: published supernets.", no_args_is_help=True)


@zoo_app.command("list")
def zoo_list(json_output: JsonOpt = False) -> None:
    """Show the zoo's supernets."""
    from khnet.hub import zoo_entries

    entries = zoo_entries()
    if json_output:
        print_json([e.__dict__ for e in entries.values()])
        return
    table = Table(title="khnet model zoo", title_justify="left")
    for column in ("name", "method", "dataset", "source", "metrics", "description"):
        table.add_column(column)
    for e in entries.values():
        source = e.source.get("path") or f"hf://{e.source.get('repo')}@{e.source.get('revision', 'main')}"
        metrics = ", ".join(f"{k} {v}" for k, v in e.metrics.items())
        table.add_row(e.name, e.method, e.dataset, source, metrics, e.description)
    out_console.print(table)


@zoo_app.command("pull")
def zoo_pull(name: Annotated[str, typer.Argument(help="A name from khnet zoo list.")]) -> None:
    """Fetch (if remote) and verify a zoo supernet; prints its local folder."""
    from khnet.hub import pull_from_zoo

    out_console.print(str(pull_from_zoo(name)), highlight=False)
