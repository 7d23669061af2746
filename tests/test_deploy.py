"""Deployment: exported networks, BN folding, budgeted search, the Hub and the zoo."""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from khnet.checkpoint import CheckpointError
from khnet.cli.main import main
from khnet.config import SupernetConfig
from khnet.errors import UsageError
from khnet.export import ExportError, load_network, save_network
from khnet.hub import resolve_supernet, save_pretrained, sha256_of
from khnet.network import NB201Net
from khnet.search import Budget, parse_quantity, search_budgets
from khnet.space import Arch, isomorphism_classes
from khnet.supernet import SuperNet
from khnet.train import TrainConfig, train_supernet

TINY = SupernetConfig(channels=4, cells_per_stage=1, hidden=8, mixer_token_hidden=8, mixer_channel_hidden=16)
ARCH = Arch.from_index(6111)


@pytest.fixture(scope="module")
def supernet() -> SuperNet:
    torch.manual_seed(0)
    net = SuperNet(TINY)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, 3, 32, 32), ARCH)
    return net.eval()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("deploy") / "run"
    list(train_supernet(run, TrainConfig(epochs=1, batch_size=32, max_steps_per_epoch=2, device="cpu"), TINY))
    return run


def test_pt_file_runs_without_khnet_and_matches_the_supernet(tmp_path, supernet):
    path = tmp_path / "net.pt"
    save_network(supernet.subnet(ARCH), path)
    x = torch.randn(7, 3, 32, 32)  # a batch size never seen at export: the batch dimension is dynamic
    torch.save(x, tmp_path / "x.pt")
    code = (
        "import sys, torch\n"
        f"m = torch.export.load({str(path)!r}).module()\n"
        f"torch.save(m(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})\n"
        "assert not any(k.startswith('khnet') for k in sys.modules), 'khnet was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    with torch.no_grad():
        assert torch.allclose(torch.load(tmp_path / "y.pt"), supernet(x, ARCH), atol=1e-5)


def test_safetensors_export_loads_strictly(tmp_path, supernet):
    path = tmp_path / "net.safetensors"
    files = save_network(supernet.subnet(ARCH), path)
    assert files == [path, tmp_path / "net.json"]
    config = json.loads((tmp_path / "net.json").read_text())
    assert config["arch"] == str(ARCH) and config["C"] == 4 and not config["batchnorm_folded"]
    from safetensors.torch import load_file

    net = NB201Net(ARCH, 10, C=4, N=1)
    net.load_state_dict(load_file(str(path)), strict=True)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), supernet(x, ARCH), atol=1e-5)
        assert torch.allclose(load_network(path)(x), supernet(x, ARCH), atol=1e-5)


def test_bake_subnet_needs_data_with_the_supernets_classes(supernet):
    from khnet.errors import UsageError
    from khnet.export import bake_subnet

    net, info = bake_subnet(supernet, ARCH, "sample", calib_images=16)
    assert info.num_classes == 10 and not net.training
    hundred = SuperNet(SupernetConfig(channels=4, cells_per_stage=1, num_classes=100))
    with pytest.raises(UsageError, match="has 10 classes but the supernet has 100"):
        bake_subnet(hundred, ARCH, "sample", calib_images=16)


def test_xautodl_rebuilds_an_exported_network_from_its_json(tmp_path, supernet):
    """The benchmark's own code builds the network from the exported JSON (get_cell_based_tiny_net) and loads
    the exported .safetensors strictly, with the same logits."""
    models = pytest.importorskip("xautodl.models")
    from safetensors.torch import load_file

    path = tmp_path / "net.safetensors"
    save_network(supernet.subnet(ARCH), path)
    config = json.loads((tmp_path / "net.json").read_text())
    tiny = models.get_cell_based_tiny_net(config)
    tiny.load_state_dict(load_file(str(path)), strict=True)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(tiny.eval()(x)[1], supernet(x, ARCH), atol=1e-5)
    save_network(supernet.subnet(ARCH), tmp_path / "folded.safetensors", fold=True)
    assert "name" not in json.loads((tmp_path / "folded.json").read_text())  # folded keys are not TinyNetwork's


def test_fold_bn_export_preserves_outputs(tmp_path, supernet):
    x = torch.randn(4, 3, 32, 32)
    for name in ("folded.pt", "folded.safetensors"):
        save_network(supernet.subnet(ARCH), tmp_path / name, fold=True)
        with torch.no_grad():
            assert (load_network(tmp_path / name)(x) - supernet(x, ARCH)).abs().max() <= 1e-4


def test_onnx_export_checked_with_onnxruntime(tmp_path, supernet):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "net.onnx"
    save_network(supernet.subnet(ARCH), path)  # checks itself against onnxruntime
    x = torch.randn(5, 3, 32, 32)
    got = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(got), supernet(x, ARCH), atol=1e-4)


def test_bad_formats_and_files(tmp_path, supernet):
    with pytest.raises(ExportError, match=r"unknown format '\.h5'"):
        save_network(supernet.subnet(ARCH), tmp_path / "net.h5")
    with pytest.raises(ExportError, match=r"name the output \*.pt2"):
        save_network(supernet.subnet(ARCH), tmp_path / "net.pt", compile=True)
    (tmp_path / "broken.pt").write_bytes(b"not a zip")
    with pytest.raises(ExportError, match="not a readable khnet network"):
        load_network(tmp_path / "broken.pt")


# ---------------------------------------------------------------- search
def fake_accuracy(cls: int) -> float:
    return round(random.Random(cls).uniform(10, 90), 3)


def fake_evaluate(archs):
    keys = isomorphism_classes()
    return {keys[a.unique_key][0]: fake_accuracy(keys[a.unique_key][0]) for a in archs}


def brute_force(budget: Budget, top: int) -> list[tuple[int, float]]:
    best: dict[int, tuple[float, float]] = {}
    for members in isomorphism_classes().values():
        for i in members:
            cost = Arch.from_index(i).cost()
            if budget.admits_cost(cost) and (members[0] not in best or cost.mflops < best[members[0]][1]):
                best[members[0]] = (fake_accuracy(members[0]), cost.mflops)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[1][1]))
    return [(cls, acc) for cls, (acc, _) in ranked[:top]]


def test_search_matches_brute_force_and_respects_budgets():
    rng = random.Random(0)
    budgets = [
        Budget(max_mflops=rng.uniform(8, 230), max_mparams=rng.choice([None, rng.uniform(0.1, 1.6)])) for _ in range(4)
    ]
    results = search_budgets(budgets, fake_evaluate, top=5, max_evals=10_000)
    for budget, result in zip(budgets, results, strict=True):
        assert result.strategy == "exhaustive"
        assert [(c.iso_class, c.accuracy) for c in result.winners] == brute_force(budget, 5)
        assert all(budget.admits_cost(c.cost) for c in result.winners + result.pareto)
        front = result.pareto
        assert all(a.cost.mflops <= b.cost.mflops for a, b in itertools.pairwise(front))
    evolved = search_budgets(budgets, fake_evaluate, top=3, max_evals=60, seed=1)
    for budget, result in zip(budgets, evolved, strict=True):
        assert all(budget.admits_cost(c.cost) for c in result.winners)
        assert result.evaluated <= 60 or result.strategy == "exhaustive"
        # against the brute-force ranking of the same budget: true accuracies, and better than a random pick
        ranking = brute_force(budget, 100_000)
        truth = dict(ranking)
        assert all(truth[c.iso_class] == c.accuracy for c in result.winners)
        median = sorted(acc for _, acc in ranking)[len(ranking) // 2]
        assert result.winners[0].accuracy > median


def test_latency_budget_and_impossible_budgets():
    calls = []

    def latency(arch):
        calls.append(arch)
        return arch.cost().mflops / 10  # a fake device: 10 MFLOPs per ms

    (result,) = search_budgets([Budget(max_latency_ms=5)], fake_evaluate, top=3, max_evals=10_000, latency=latency)
    assert result.winners and all(c.latency_ms <= 5 for c in result.winners)
    (none,) = search_budgets([Budget(max_mflops=1)], fake_evaluate)
    assert not none.winners and none.cheapest.cost.mflops == pytest.approx(7.78305)
    assert [parse_quantity(v) for v in ("50M", "5e7", "50000000", "0.5m", "2k")] == [5e7, 5e7, 5e7, 5e5, 2e3]
    with pytest.raises(UsageError, match="not a number"):
        parse_quantity("fifty")


# ---------------------------------------------------------------- Hub and zoo
def test_hub_round_trip_through_a_local_directory(tmp_path, supernet):
    from huggingface_hub import ModelCard

    config = {
        "train": {"dataset": "imagefolder:/home/someone/data", "data_dir": "/home/someone/data", "epochs": 3},
        "dataset": {"name": "imagefolder:/home/someone/data", "benchmark": "cifar10"},
        "input": {"resolution": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    }
    metrics = {"mean_accuracy": 61.25, "max_accuracy": 70.5, "kendall_tau": 0.61, "split": "valid", "note": "x"}
    save_pretrained(supernet, tmp_path / "hub", config, metrics)
    files = {p.name for p in (tmp_path / "hub").iterdir()}
    assert files == {"model.safetensors", "config.json", "training.json", "README.md"}
    flat = json.loads((tmp_path / "hub" / "config.json").read_text())
    assert flat["channels"] == 4 and flat["input"]["std"] == [0.25] * 3 and "train" not in flat
    shared = (tmp_path / "hub" / "training.json").read_text() + (tmp_path / "hub" / "README.md").read_text()
    assert "/home/someone" not in shared  # no local paths leave the machine
    card = ModelCard.load(tmp_path / "hub" / "README.md")
    assert card.data.library_name == "khnet" and card.data.datasets == ["cifar10"]
    results = {(r.metric_name, r.metric_value) for r in card.data.eval_results}
    assert ("Kendall tau vs NAS-Bench-201", 0.61) in results and len(results) == 3
    assert "recalibrate_bn" in card.text and "NAS-Bench-201" in card.text
    # the folder loads back, through khnet and through the Hub mixin, and a README of one's own is kept
    loaded = resolve_supernet(tmp_path / "hub").model
    mixin = SuperNet.from_pretrained(tmp_path / "hub")
    for other in (loaded, mixin):
        pairs = zip(other.state_dict().values(), supernet.state_dict().values(), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)
    (tmp_path / "hub" / "README.md").write_text("my own card")
    save_pretrained(supernet, tmp_path / "hub", config, metrics)
    assert (tmp_path / "hub" / "README.md").read_text() == "my own card"
    save_pretrained(supernet, tmp_path / "hub", config, metrics, overwrite_card=True)
    assert "model-index" in (tmp_path / "hub" / "README.md").read_text()


def test_supernet_hub_methods_and_legacy_configs(tmp_path, supernet):
    """SuperNet.save_pretrained / from_pretrained (PyTorchModelHubMixin), strict loading, the nested config.json
    of khnet 0.1 folders, and config keys that are neither fields nor metadata."""
    supernet.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["cells_per_stage"] == 1
    again = SuperNet.from_pretrained(str(tmp_path / "m"))
    assert again.config == supernet.config
    legacy = tmp_path / "legacy"
    supernet.save_pretrained(legacy)
    nested = {"model": supernet.config.to_dict(), "train": {"dataset": "sample"}, "khnet_version": "0.1.0"}
    (legacy / "config.json").write_text(json.dumps(nested))
    assert SuperNet.from_pretrained(legacy).config == supernet.config
    assert resolve_supernet(legacy).dataset == "sample"
    (legacy / "config.json").write_text(json.dumps({**supernet.config.to_dict(), "chanels": 4}))
    with pytest.raises(CheckpointError, match=r"unknown config key.*chanels"):
        SuperNet.from_pretrained(legacy)
    (tmp_path / "m" / "config.json").write_text(json.dumps({**supernet.config.to_dict(), "channels": 8}))
    with pytest.raises(CheckpointError, match="does not match its config"):
        SuperNet.from_pretrained(tmp_path / "m")


def test_hub_round_trip_through_a_prefilled_cache_offline(tmp_path, supernet):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "models--khnet-test--tiny"
    save_pretrained(supernet, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "KHNET_RESULTS": str(tmp_path / "r"),
    }
    code = (
        "from khnet.hub import resolve_supernet\n"
        "from khnet.supernet import SuperNet\n"
        "r = resolve_supernet('hf://khnet-test/tiny')\n"
        "m = SuperNet.from_pretrained('khnet-test/tiny')\n"
        "print(r.model.config.channels, m.config.channels, r.directory)\n"
    )
    ok = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert ok.returncode == 0 and ok.stdout.startswith("4 4 "), ok.stderr[-1500:]
    evaluated = subprocess.run(
        [sys.executable, "-m", "khnet", "eval", "hf://khnet-test/tiny", "6111", "--dataset", "sample",
         "--test-images", "64", "--calib-images", "32", "--json"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-1500:]
    assert json.loads(evaluated.stdout)["records"][0]["index"] == 6111
    missing = subprocess.run(
        [sys.executable, "-m", "khnet", "eval", "hf://khnet-test/absent", "1"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert missing.returncode == 1 and "not in the Hugging Face cache" in missing.stderr


def test_zoo_and_corrupt_files(tmp_path, supernet, monkeypatch):
    zoo = tmp_path / "zoo"
    save_pretrained(supernet, zoo / "tiny")
    entry = {"name": "tiny", "description": "test", "dataset": "sample", "method": "kshot-hypernet",
             "source": {"path": "tiny/model.safetensors"}, "sha256": sha256_of(zoo / "tiny" / "model.safetensors"),
             "metrics": {}, "command": "none"}  # fmt: skip
    (zoo / "registry.json").write_text(json.dumps({"supernets": [entry]}))
    monkeypatch.setenv("KHNET_ZOO", str(zoo))
    assert resolve_supernet("tiny").model.config.channels == 4
    with pytest.raises(CheckpointError, match="no zoo entry 'nope'; known: tiny"):
        from khnet.hub import pull_from_zoo

        pull_from_zoo("nope")
    weights = zoo / "tiny" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # tampered
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        resolve_supernet("tiny")
    weights.write_bytes(bytes(data[:200]))  # truncated
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        resolve_supernet(weights)


def test_cli_sample_search_export_zoo(tmp_path, trained_run, capsys, monkeypatch):
    monkeypatch.setenv("KHNET_ZOO", str(tmp_path / "nozoo"))
    assert (
        main(
            [
                "sample",
                "6111",
                "-s",
                str(trained_run),
                "-o",
                str(tmp_path / "n.safetensors"),
                "--calib-images",
                "64",
                "--json",
            ]
        )
        == 0
    )
    info = json.loads(capsys.readouterr().out)
    assert info["index"] == 6111 and (tmp_path / "n.safetensors").is_file()
    argv = ["search", "-s", str(trained_run), "--max-flops", "3M", "--max-flops", "0.1M", "--max-evals", "12",
            "--top", "3", "--test-images", "64", "--calib-images", "64", "--export", str(tmp_path / "w")]  # fmt: skip
    assert main([*argv, "--json", "--allow-empty"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 2 and results[0]["winners"] and all(w["mflops"] <= 3 for w in results[0]["winners"])
    assert not results[1]["winners"] and results[1]["cheapest"]["mflops"] > 0.1  # nothing fits 0.1 MFLOPs
    assert Path(results[0]["exported"]).is_file()
    assert main(argv[:-2]) == 1  # a budget nothing meets is a failure unless --allow-empty
    captured = capsys.readouterr()
    assert "winner: index" in captured.out and "no arch meets it" in captured.out
    assert "no arch meets budget 2" in captured.err and "--allow-empty" in captured.err
    # the last eval's summary lands in the model card's model-index; export --json says where it came from
    assert main(["eval", str(trained_run), "6111", "0", "--test-images", "64", "--calib-images", "32"]) == 0
    capsys.readouterr()
    assert main(["export", str(trained_run), "--to", str(tmp_path / "hub"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["folder"] == str(tmp_path / "hub") and report["metrics_from"].endswith("eval-summary.json")
    from huggingface_hub import ModelCard

    card = ModelCard.load(tmp_path / "hub" / "README.md")
    assert {r.metric_name for r in card.data.eval_results} >= {"mean accuracy of the evaluated subnets (%)"}
    assert main(["sample", "6111", "-s", str(trained_run), "-o", str(tmp_path / "d.pt"), "--calib-images", "32",
                 "--device", "cpu", "--dataset", "sample"]) == 0  # fmt: skip
    assert main(["sample", "6111", "-s", str(trained_run), "--device", "tpu"]) == 2
    assert main(["zoo", "pull", "missing"]) == 1 and "no zoo entry" in capsys.readouterr().err
    assert main(["search", "-s", str(trained_run), "--max-flops", "fifty"]) == 2


def test_push_keeps_a_readme_already_on_the_hub_and_names_the_library(tmp_path, supernet, monkeypatch):
    """push_to_hub (with a stand-in HfApi): library_name/version on the client, the README left out when the
    repository has one, sent with overwrite_card."""
    import huggingface_hub

    from khnet import __version__
    from khnet.hub import push_to_hub

    calls = []

    class FakeApi:
        def __init__(self, **kwargs):
            calls.append(("init", kwargs))

        def create_repo(self, repo_id, private, exist_ok):
            calls.append(("create", repo_id))

        def file_exists(self, repo_id, filename, revision=None):
            return filename == "README.md"

        def upload_folder(self, folder_path, repo_id, revision, allow_patterns):
            calls.append(("upload", sorted(allow_patterns)))
            return "https://huggingface.co/o/n/commit/1"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    save_pretrained(supernet, tmp_path / "hub")
    assert push_to_hub(tmp_path / "hub", "o/n").endswith("/commit/1")
    assert calls[0] == ("init", {"token": None, "library_name": "khnet", "library_version": __version__})
    assert calls[-1] == ("upload", ["config.json", "model.safetensors", "training.json"])
    push_to_hub(tmp_path / "hub", "o/n", overwrite_card=True)
    assert "README.md" in calls[-1][1]


def test_a_lone_safetensors_file_loads_from_its_metadata(tmp_path, supernet):
    """Only model.safetensors, no config.json: the model config stored in its metadata builds the network."""
    supernet.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").unlink()
    loaded = resolve_supernet(tmp_path / "m" / "model.safetensors").model
    assert loaded.config == supernet.config
    pairs = zip(loaded.state_dict().values(), supernet.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_latency_budget_end_to_end(trained_run, capsys, monkeypatch, tmp_path):
    """khnet search --max-latency-ms measures the candidates (cached per machine) and keeps the winners under it."""
    monkeypatch.setenv("KHNET_RESULTS", str(tmp_path / "r"))
    monkeypatch.setenv("KHNET_DATA", str(tmp_path / "data"))  # the latency cache sits beside the data root
    argv = ["search", "-s", str(trained_run), "--max-latency-ms", "1000", "--max-evals", "6", "--top", "2",
            "--test-images", "32", "--calib-images", "32", "--json", "--allow-empty"]  # fmt: skip
    assert main(argv) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["winners"] and all(0 < w["latency_ms"] <= 1000 for w in result["winners"])


@pytest.mark.slow
def test_aotinductor_package_round_trip(tmp_path):
    """khnet sample --compile: an AOTInductor package (.pt2, BatchNorm folded) that load_network runs with the
    network's logits. About 40 s of C++ compilation; skipped where there is no compiler."""
    import shutil

    if not (shutil.which("g++") or shutil.which("c++")):
        pytest.skip("no C++ compiler for AOTInductor here")
    torch.manual_seed(0)
    net = NB201Net(6111, C=4, N=1).eval()
    (path,) = save_network(net, tmp_path / "net.pt2", fold=True, compile=True)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(load_network(path)(x), net(x), atol=1e-5)
    with pytest.raises(ExportError, match="name the output"):
        save_network(net, tmp_path / "net.pt", compile=True)
