"""The zoo with shipped whole-space tables: search answered from a table with no data, budgets that say which
network they apply to and whether they bind, the calibration fallback of ``khnet sample``, the packaged entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from khnet.benchmark import ShippedGroundTruth
from khnet.checkpoint import CheckpointError, state_hash
from khnet.cli.deploy import DEFAULT_SUPERNET
from khnet.cli.main import main
from khnet.config import SupernetConfig
from khnet.data import dataset_info, load_dataset
from khnet.errors import DataError, KhnetError
from khnet.evaluate import EvalSettings, read_result_rows, read_results, write_results_table
from khnet.hub import pull_from_zoo, resolve_supernet, save_pretrained, sha256_of, zoo_entries
from khnet.search import budget_shape, cost_range, parse_budgets, parse_quantity
from khnet.space import Arch, isomorphism_classes
from khnet.supernet import SuperNet

TINY = SupernetConfig(channels=4, cells_per_stage=1, hidden=8, mixer_token_hidden=8, mixer_channel_hidden=16)
TABLE = {"test_images": 2000, "calib_images": 512, "calib_seed": 0}


def _table_key(dataset: str = "cifar10-jpeg") -> str:
    return EvalSettings(dataset=dataset, split="valid", **TABLE).key()


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch) -> Path:
    """A zoo with one entry trained on cifar10-jpeg (absent here) whose fake table holds, for every class,
    the benchmark's CIFAR-10 test accuracy minus 30, so the right answer of any budget is known."""
    torch.manual_seed(0)
    supernet = SuperNet(TINY).eval()
    zoo = tmp_path / "zoo"
    config = {"train": {"dataset": "cifar10-jpeg", "seed": 0, "valid_fraction": 0.1}}
    save_pretrained(supernet, zoo / "tiny", config)
    model_hash = state_hash(supernet.state_dict())
    gt = ShippedGroundTruth.load()
    rows = [
        {"settings": _table_key(), "iso_class": members[0], "accuracy": gt.accuracy(members[0]) - 30, "loss": 1.0,
         "seconds": 0.1, "images": 2000, "calib_images": 512, "time": "2026-12-01T00:00:00"}
        for members in isomorphism_classes().values()
    ]  # fmt: skip
    write_results_table(zoo / "tiny" / f"eval-{model_hash}.csv.gz", rows)
    entry = {
        "name": "tiny", "description": "test", "dataset": "cifar10-jpeg", "method": "kshot-hypernet",
        "source": {"path": "tiny/model.safetensors"}, "sha256": sha256_of(zoo / "tiny" / "model.safetensors"),
        "metrics": {"space_valid_mean": 59.76, "space_valid_max": 64.37, "space_kendall_tau": 1.0},
        "command": "none", "scale": {"channels": 4, "cells_per_stage": 1, "mparams": 0.1},
        "recipe": "fake", "calibration_fallback": "sample",
        "table": {"file": f"eval-{model_hash}.csv.gz", "state_hash": model_hash, "settings": TABLE},
    }  # fmt: skip
    (zoo / "registry.json").write_text(json.dumps({"supernets": [entry]}))
    monkeypatch.setenv("KHNET_ZOO", str(zoo))
    monkeypatch.setenv("KHNET_DATA", str(tmp_path / "no-data"))  # any attempt to read data fails
    monkeypatch.setenv("KHNET_RESULTS", str(tmp_path / "results"))
    return zoo


def _brute_force_best(limit: float, shape: dict) -> float:
    """The best fake-table accuracy (+30) over classes with a member within the budget."""
    gt, classes = ShippedGroundTruth.load(), isomorphism_classes()
    return max(gt.accuracy(classes[a.unique_key][0]) for a in Arch.all() if a.cost(**shape).mflops <= limit + 1e-9)


# ---------------------------------------------------------------- data and tables
def test_dataset_info_needs_no_images_and_cifar10_jpeg_says_where_to_put_it(tmp_path):
    assert dataset_info("sample") == load_dataset("sample", "test").info
    jpeg = dataset_info("cifar10-jpeg")
    assert jpeg.benchmark == "cifar10" and jpeg.num_classes == 10 and "JPEG" in jpeg.note
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        dataset_info("nope")
    with pytest.raises(DataError, match=r"cifar10-jpeg is not in .*no-data.*extract cifar10-jpeg\.tar\.gz"):
        load_dataset("cifar10-jpeg", "valid", root=tmp_path / "no-data")


def test_results_table_round_trip_is_byte_stable(tmp_path):
    rows = [{"settings": "k", "iso_class": c, "accuracy": 50.0 + c / 1e4, "loss": 1.0, "seconds": 0.5,
             "images": 10, "calib_images": 4, "time": "t"} for c in (7, 3, 3000)]  # fmt: skip
    a = write_results_table(tmp_path / "a" / "eval-h.csv.gz", rows)
    b = write_results_table(tmp_path / "b" / "eval-h.csv.gz", list(reversed(rows)) + rows[:1])  # order, duplicate
    assert a.read_bytes() == b.read_bytes()
    assert [int(r["iso_class"]) for r in read_result_rows(tmp_path / "a", "h")] == [3, 7, 3000]
    settings = EvalSettings()
    assert read_results([tmp_path / "a"], "h", settings) == {}  # other settings: nothing
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "eval-h.csv").write_text(
        "settings,iso_class,accuracy,loss,seconds,images,calib_images,time\nk,7,99.0,1.0,0.5,10,4,t\n"
    )

    class Key(EvalSettings):
        def key(self) -> str:
            return "k"

    merged = read_results([tmp_path / "a", tmp_path / "c"], "h", Key())
    assert merged[3]["accuracy"] == 50.0003 and merged[7]["accuracy"] == 99.0  # the later folder wins


# ---------------------------------------------------------------- budgets
def test_budget_parsing_rejects_what_would_start_the_wrong_work():
    assert parse_quantity("5M") == 5e6
    for bad in ("", "1e400", "-5M", "inf", "nan", "0"):
        with pytest.raises(KhnetError, match=r"positive|not a number"):
            parse_quantity(bad, "--max-flops")
    with pytest.raises(KhnetError, match="latency"):
        parse_budgets([], [], [-2.0])
    with pytest.raises(KhnetError, match="given 2 times"):
        parse_budgets(["1M", "2M"], ["1M", "2M", "3M"])
    assert [b.max_mflops for b in parse_budgets(["1M", "2M"], ["0.5M"])] == [1.0, 2.0]


def test_budget_shape_and_cost_range():
    deployed = budget_shape(TINY, 32, "deployed")
    benchmark = budget_shape(TINY, 32, "benchmark")
    assert (deployed["C"], deployed["N"], benchmark["C"], benchmark["N"]) == (4, 1, 16, 5)
    lo, hi = cost_range(benchmark)
    assert lo.mflops == pytest.approx(7.78305) and hi.mflops == pytest.approx(7.78305 + 6 * 35.38944)
    with pytest.raises(KhnetError, match="choose deployed or benchmark"):
        budget_shape(TINY, 32, "phone")


# ---------------------------------------------------------------- search from a shipped table
def test_search_answers_from_the_shipped_table_with_no_data(tiny_zoo, capsys):
    shape = budget_shape(TINY, 32, "deployed")
    lo, hi = cost_range(shape)
    limit = (lo.mflops + hi.mflops) / 2
    assert main(["search", "-s", "tiny", "--max-flops", f"{limit * 1e6:.0f}", "--top", "3", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["strategy"] == "stored" and result["binds"] is True
    assert result["evaluated"] == result["feasible_classes"] > 300  # more than --max-evals: no evolution needed
    winner = result["winners"][0]
    assert winner["mflops"] <= limit and winner["accuracy"] == pytest.approx(_brute_force_best(limit, shape) - 30)
    assert winner["benchmark"] == pytest.approx(ShippedGroundTruth.load().accuracy(winner["index"]), abs=0.01)
    assert result["budget_network"] == {"name": "deployed", **shape}
    assert not (tiny_zoo.parent / "results").exists() or not any((tiny_zoo.parent / "results").iterdir())


def test_benchmark_size_budgets_and_budgets_that_bind_nothing(tiny_zoo, capsys):
    assert main(["search", "-s", "tiny", "--budget-net", "benchmark", "--max-flops", "50M", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    shape = budget_shape(TINY, 32, "benchmark")
    w = result["winners"][0]
    assert (
        w["mflops"] == pytest.approx(Arch.from_index(w["index"]).cost(**shape).mflops, abs=1e-4) and w["mflops"] <= 50
    )
    assert w["accuracy"] == pytest.approx(_brute_force_best(50, shape) - 30, abs=1e-6) and result["binds"]
    assert main(["search", "-s", "tiny", "--max-flops", "1G", "--top", "4", "--json"]) == 0
    winners = json.loads(capsys.readouterr().out)[0]["winners"]
    assert main(["search", "-s", "tiny", "--max-flops", "1G", "--top", "4"]) == 0
    captured = capsys.readouterr()
    for w in winners:  # every row keeps its index, accuracies and cost at the 80 columns of a pipe
        row = next(line for line in captured.out.splitlines() if f" {w['index']} " in line)
        assert all(f"{v:.2f}" in row for v in (w["accuracy"], w["benchmark"], w["mflops"])), row
    assert "binds nothing" in captured.err and "--budget-net benchmark" in captured.err
    assert "winner: index" in captured.out and "NB201 cifar10 test %" in captured.out
    assert main(["search", "-s", "tiny", "--max-flops", "1G", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["binds"] is False
    assert main(["search", "-s", "tiny", "--budget-net", "phone", "--max-flops", "1M"]) == 2


def test_search_with_other_settings_needs_the_data(tiny_zoo, capsys):
    # a different validation subset is not in the table: it must be evaluated, which needs the data
    code = main(["search", "-s", "tiny", "--max-flops", "1M", "--test-images", "100", "--max-evals", "5"])
    assert code == 1 and "cifar10-jpeg is not in" in capsys.readouterr().err


def test_sample_falls_back_to_the_shipped_sample_and_says_so(tiny_zoo, tmp_path, capsys):
    out = tmp_path / "net.safetensors"
    assert main(["sample", "6111", "-s", "tiny", "-o", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    info = json.loads(captured.out)
    assert out.is_file() and info["index"] == 6111
    assert "recalibrated on 'sample' instead of 'cifar10-jpeg'" in captured.err
    resolved = resolve_supernet("tiny")
    assert resolved.calibration_dataset("sample") == ("sample", "")


def test_zoo_list_and_confined_paths(tiny_zoo, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "4 / 1" in out and "1.000" in out and "59.76" in out
    registry = json.loads((tiny_zoo / "registry.json").read_text())
    registry["supernets"][0]["source"]["path"] = "../../etc/passwd"
    (tiny_zoo / "registry.json").write_text(json.dumps(registry))
    with pytest.raises(CheckpointError, match="leaves the zoo folder"):
        pull_from_zoo("tiny")
    (tiny_zoo / "registry.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"registry\.json is malformed"):
        zoo_entries()


# ---------------------------------------------------------------- the packaged entry
def test_the_packaged_default_entry_answers_every_budget_from_its_table(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KHNET_ZOO", raising=False)
    monkeypatch.setenv("KHNET_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("KHNET_RESULTS", str(tmp_path / "results"))
    entries = zoo_entries()
    assert DEFAULT_SUPERNET in entries, f"zoo/registry.json lacks {DEFAULT_SUPERNET}"
    entry = entries[DEFAULT_SUPERNET]
    folder = pull_from_zoo(DEFAULT_SUPERNET)  # sha256 checked
    model = resolve_supernet(DEFAULT_SUPERNET).model
    assert state_hash(model.state_dict()) == entry.table["state_hash"]
    assert (folder / entry.table["file"]).is_file()
    settings = EvalSettings(dataset=entry.dataset, split="valid", **entry.table["settings"])
    stored = read_results([folder], entry.table["state_hash"], settings)
    assert len(stored) == len(isomorphism_classes()) == 6466
    shape = budget_shape(model.config, 32, "deployed")
    lo, hi = cost_range(shape)
    limit = lo.mflops + (hi.mflops - lo.mflops) / 3
    assert main(["search", "--max-flops", f"{limit}M", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["strategy"] == "stored" and result["binds"] and result["winners"][0]["mflops"] <= limit
    best = max(stored.values(), key=lambda r: r["accuracy"])
    assert result["winners"][0]["accuracy"] <= best["accuracy"]


def test_eval_of_a_zoo_entry_reads_its_table_with_no_data(tiny_zoo, capsys):
    assert main(["eval", "tiny", "6111", "--sample", "5", "--split", "valid", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    gt = ShippedGroundTruth.load()
    assert len(result["records"]) == 6 and all(r["reused"] for r in result["records"])
    for r in result["records"]:
        assert r["accuracy"] == pytest.approx(gt.accuracy(r["iso_class"]) - 30)
    assert result["summary"]["settings"] == _table_key()
    # other settings are not in the table: they need the data, and say where to put it
    assert main(["eval", "tiny", "6111", "--split", "valid", "--calib-images", "64"]) == 1
    assert "cifar10-jpeg is not in" in capsys.readouterr().err


def test_pareto_front_sweep_matches_the_definition():
    """The one-sweep front (used without latencies, on pools of thousands) equals the pairwise definition."""
    import random

    from khnet.search import Candidate, pareto_front
    from khnet.space import Cost

    def by_definition(pool):
        def dominates(a, b):
            no_worse = a.accuracy >= b.accuracy and a.cost.mflops <= b.cost.mflops
            return no_worse and (a.accuracy > b.accuracy or a.cost.mflops < b.cost.mflops)

        front = [c for c in pool if not any(dominates(o, c) for o in pool if o is not c)]
        return sorted(front, key=lambda c: (c.cost.mflops, -c.accuracy))

    rng = random.Random(0)
    for _ in range(200):
        pool = []
        for i in range(rng.randint(1, 50)):
            cost = Cost(rng.choice([1.0, 2.0, 3.0, rng.random() * 4]), 0.1)
            accuracy = rng.choice([50.0, 51.0, 45 + 10 * rng.random()])  # ties in cost and in accuracy
            pool.append(Candidate(Arch.from_index(rng.randrange(15625)), i, cost, accuracy=accuracy))
        assert [id(c) for c in pareto_front(pool)] == [id(c) for c in by_definition(pool)]
