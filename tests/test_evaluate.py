"""Evaluation: exact BN recalibration, dedup over isomorphism classes, resumable results, CLI end to end."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import khnet.evaluate as ev
from khnet.cli.main import main
from khnet.config import SupernetConfig
from khnet.evaluate import EvalSettings, evaluate_archs, read_results, recalibrate_bn, stratified_sample, summarize
from khnet.space import Arch
from khnet.supernet import SuperNet
from khnet.train import TrainConfig, train_supernet

TINY = SupernetConfig(channels=4, cells_per_stage=1, hidden=8, mixer_token_hidden=8, mixer_channel_hidden=16)
FAST = EvalSettings(dataset="sample", test_images=64, calib_images=64, batch_size=32)


def test_recalibration_is_the_exact_average_over_the_subset():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 5, 1), nn.BatchNorm2d(5)).eval()
    images = torch.randn(100, 3, 8, 8) * 2 + 1
    seen = []
    handle = net[4].register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach().clone()))
    used = recalibrate_bn(net, images, num_images=90, batch_size=32)  # 3 batches: 32, 32, 26
    handle.remove()
    assert used == 90 and not net.training
    first = net[0](images[:90]).transpose(0, 1).reshape(4, -1)
    assert torch.allclose(net[1].running_mean, first.mean(1), atol=1e-5)
    assert torch.allclose(net[1].running_var, first.var(1, unbiased=True), atol=1e-4)
    second = torch.cat(seen).transpose(0, 1).reshape(5, -1)  # what the deeper BN saw, batch by batch
    assert torch.allclose(net[4].running_mean, second.mean(1), atol=1e-5)
    assert torch.allclose(net[4].running_var, second.var(1, unbiased=True), atol=1e-4)
    # one batch holding the whole subset: the same statistics, from the BatchNorms themselves
    one = nn.Sequential(*[m for m in net]).eval()
    seen.clear()
    handle = one[4].register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach().clone()))
    assert recalibrate_bn(one, images, num_images=90) == 90
    handle.remove()
    assert torch.allclose(one[1].running_mean, first.mean(1), atol=1e-5)
    assert torch.allclose(one[1].running_var, first.var(1, unbiased=True), atol=1e-4)
    whole = seen[0].transpose(0, 1).reshape(5, -1)
    assert torch.allclose(one[4].running_var, whole.var(1, unbiased=True), atol=1e-4)
    assert one[1].momentum == 0.1  # restored
    # not an EMA: PyTorch's default momentum update would land elsewhere
    ema = nn.BatchNorm2d(4).train()
    for i in range(0, 90, 32):
        ema(net[0](images[i : min(i + 32, 90)]).detach())
    assert not torch.allclose(ema.running_mean, net[1].running_mean, atol=1e-3)


def test_all_evaluates_one_arch_per_isomorphism_class(monkeypatch):
    calls = []

    class FakeSupernet(nn.Module):
        config = TINY

        def subnet(self, arch):
            calls.append(arch)
            return nn.Sequential(nn.Conv2d(3, 1, 1))

    monkeypatch.setattr(ev, "recalibrate_bn", lambda *args, **kw: 0)
    monkeypatch.setattr(ev, "measure_accuracy", lambda net, images, labels, bs: (float(len(calls) % 97), 1.0))
    records = list(evaluate_archs(FakeSupernet(), list(Arch.all()), FAST))
    assert len(calls) == 6466 and len(set(calls)) == 6466
    assert len(records) == 15625 and [r.index for r in records] == list(range(15625))
    by_class = {}
    for r in records:
        by_class.setdefault(r.iso_class, set()).add(r.accuracy)
    assert all(len(v) == 1 for v in by_class.values())
    summary = summarize(records, "", "cifar10")
    assert summary["evaluated_classes"] == 6466 and summary["class_members"] == 15625
    assert summary["benchmark_mean_accuracy"] == pytest.approx(87.06, abs=0.005)  # sample compares with cifar10


def _supernet() -> SuperNet:
    torch.manual_seed(0)
    return SuperNet(TINY).eval()


def test_killed_and_resumed_evaluation_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    archs = [Arch.from_index(i) for i in (6111, 0, 9930, 1462, 77, 3000)]
    straight = [r.to_dict() for r in evaluate_archs(_supernet(), archs, FAST, tmp_path / "straight")]

    real, count = ev.measure_accuracy, {"n": 0}

    def dies_on_the_fourth(*args):
        count["n"] += 1
        if count["n"] == 4:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(ev, "measure_accuracy", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        list(evaluate_archs(_supernet(), archs, FAST, tmp_path / "split"))
    monkeypatch.setattr(ev, "measure_accuracy", real)
    (path,) = (tmp_path / "split").glob("eval-*.csv")
    path.write_text(path.read_text() + "FAST|cut mid-li")  # a line cut by the kill
    resumed = [r.to_dict() for r in evaluate_archs(_supernet(), archs, FAST, tmp_path / "split")]
    assert [r["reused"] for r in resumed] == [True] * 3 + [False] * 3
    for a, b in zip(straight, resumed, strict=True):
        assert {k: v for k, v in a.items() if k not in ("seconds", "reused")} == {
            k: v for k, v in b.items() if k not in ("seconds", "reused")
        }
    model_hash = path.name[len("eval-") : -len(".csv")]
    assert len(read_results(tmp_path / "split", model_hash, FAST)) == 6
    assert len(path.read_text().strip().splitlines()) == 7  # header + 6 rows: nothing lost or doubled
    again = list(evaluate_archs(_supernet(), archs, FAST, tmp_path / "split"))
    assert all(r.reused for r in again)
    other = list(
        evaluate_archs(_supernet(), archs[:1], EvalSettings(**{**FAST.__dict__, "split": "valid"}), tmp_path / "split")
    )
    assert not other[0].reused  # other settings are not mixed up


def test_stratified_sample():
    sample = stratified_sample(100, seed=3)
    assert len(set(sample)) == 100 and sample == stratified_sample(100, seed=3)
    costs = [a.cost().mflops for a in sample]
    assert costs == sorted(costs) and costs[0] < 8 and costs[-1] > 140  # the cheapest and the top stratum
    assert any(a.is_disconnected for a in stratified_sample(300, seed=0))


def test_plots_are_written(tmp_path):
    from khnet.plots import plot_accuracy_vs_rank, plot_distribution

    records = [SimpleNamespace(accuracy=50 + i, benchmark_accuracy=80 + i * 0.5) for i in range(20)]
    for path in (plot_distribution(records, tmp_path, "note"), plot_accuracy_vs_rank(records, tmp_path)):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_cli_eval_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    config = TrainConfig(epochs=1, batch_size=32, max_steps_per_epoch=2, device="cpu")
    list(train_supernet(run, config, TINY))
    argv = [
        "eval",
        str(run),
        "6111",
        "0",
        "--test-images",
        "64",
        "--calib-images",
        "64",
        "--plots",
        str(tmp_path / "p"),
    ]
    assert main([*argv, "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert "evaluating: 2/2" in err  # stderr is not a terminal here: plain progress lines, beside --json
    assert len(result["records"]) == 2 and "JPEG" in result["summary"]["note"]
    assert {"kendall_tau", "spearman_rho", "benchmark_space_mean"} <= set(result["summary"])
    assert (tmp_path / "p" / "accuracy_distribution.png").is_file()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Kendall tau" in out and "87.06" in out and "note:" in out
    assert "top-10 overlap: n/a" in out and "100%" not in out  # 2 archs: no top-10 to compare
    for record in result["records"]:  # the table stays readable at the 80 columns of a pipe
        row = next(line for line in out.splitlines() if f" {record['index']} " in line)
        assert f"{record['accuracy']:.2f}" in row and f"{record['benchmark_accuracy']:.2f}" in row
    assert main(["eval", str(run)]) == 2 and "nothing to evaluate" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing"), "1"]) == 1


def _eval_worker(rank: int, world: int, port: int, results_dir: str, out: str) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    archs = [Arch.from_index(i) for i in (6111, 0, 9930, 1462, 77)]
    records = [r.to_dict() for r in evaluate_archs(_supernet(), archs, FAST, results_dir)]
    if rank == 0:
        with open(out, "w") as f:
            json.dump(records, f)
    dist.destroy_process_group()


def test_torchrun_shards_classes_across_ranks(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_eval_worker, args=(2, port, str(tmp_path / "res"), str(tmp_path / "out.json")), nprocs=2, join=True)
    merged = json.loads((tmp_path / "out.json").read_text())
    shards = {p.name: len(p.read_text().strip().splitlines()) - 1 for p in (tmp_path / "res").glob("eval-*.csv")}
    rank1 = [name for name in shards if name.endswith("-r1.csv")]
    assert len(shards) == 2 and len(rank1) == 1
    assert shards[rank1[0]] == 2 and sum(shards.values()) == 5  # 5 classes split between the ranks, each once
    single = [
        r.to_dict() for r in evaluate_archs(_supernet(), [Arch.from_index(i) for i in (6111, 0, 9930, 1462, 77)], FAST)
    ]
    assert [r["accuracy"] for r in merged] == [r["accuracy"] for r in single]


def test_recalibration_over_several_batches_merges_exactly():
    """Batches of 7 give the exact mean and unbiased variance of the whole subset (Chan's merge) for a
    BatchNorm whose input does not depend on other BatchNorms: the same as one batch of all 40 images."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
    data = torch.randn(40, 3, 8, 8) * 3 + 1
    recalibrate_bn(net, data, 40)
    one = (net[1].running_mean.clone(), net[1].running_var.clone())
    assert recalibrate_bn(net, data, 40, batch_size=7) == 40
    assert torch.allclose(net[1].running_mean, one[0], atol=1e-5)
    assert torch.allclose(net[1].running_var, one[1], rtol=1e-5)
    batches = [(data[i : i + 9], torch.zeros(9)) for i in range(0, 40, 9)]  # (images, labels) batches
    assert recalibrate_bn(net, batches, 30) == 30
    with torch.no_grad():
        y = net[0](data[:30])
    assert torch.allclose(net[1].running_mean, y.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(net[1].running_var, y.var((0, 2, 3), unbiased=True), rtol=1e-5)


def test_evaluate_supernet_is_what_khnet_eval_reports(tmp_path):
    """The library call behind ``khnet eval``: records as evaluate_archs gives them, the summary with its
    settings and benchmark setting, saved for the model card."""
    from khnet.evaluate import evaluate_supernet

    archs = [Arch.from_index(i) for i in (6111, 0, 77)]
    settings = EvalSettings(**{**FAST.__dict__, "split": "valid"})
    records, summary = evaluate_supernet(_supernet(), archs, settings, tmp_path)

    def figures(rs):
        return [{k: v for k, v in r.to_dict().items() if k != "seconds"} for r in rs]

    assert figures(records) == figures(evaluate_archs(_supernet(), archs, settings))
    assert summary == {**summarize(records, summary["note"], "cifar10"), "settings": settings.key(),
                       "split": "valid", "benchmark_setting": "cifar10-valid valid"}  # fmt: skip
    assert json.loads((tmp_path / "eval-summary.json").read_text()) == json.loads(json.dumps(summary))
    records, _ = evaluate_supernet(_supernet(), archs[:1], settings)  # no results folder: nothing written
    assert len(records) == 1
