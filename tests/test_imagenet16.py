"""ImageNet16-120 end to end: 16 px images and 120 classes carried from training through eval, search and sample
(costs at 16 px, not at CIFAR's 32), on a small fake copy of the benchmark's pickles."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from khnet.cli.main import main
from khnet.export import load_network
from khnet.files import read_model_config
from khnet.space import Arch


@pytest.fixture(scope="module")
def imagenet16(tmp_path_factory):
    """Ten training batches of 8 images and 24 validation images, labels drawn from the benchmark's 1..120."""
    root = tmp_path_factory.mktemp("imagenet16")
    rng = np.random.default_rng(0)
    for name, n in [(f"train_data_batch_{k}", 8) for k in range(1, 11)] + [("val_data", 24)]:
        with (root / name).open("wb") as f:
            data = rng.integers(0, 255, (n, 3 * 16 * 16), dtype=np.uint8)
            pickle.dump({"data": data, "labels": rng.integers(1, 121, n).tolist()}, f)
    return root


def _json(capsys, argv: list[str]):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_a_16px_supernet_is_evaluated_searched_and_exported_at_16px(imagenet16, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KHNET_RESULTS", str(tmp_path / "results"))
    run = tmp_path / "run"
    _json(capsys, ["train", "--dataset", "imagenet16-120", "--data-dir", str(imagenet16), "--epochs", "1", "--proxy",
                   "--channels", "4", "--cells-per-stage", "1", "--max-steps-per-epoch", "1", "--batch-size", "16",
                   "--device", "cpu", "-o", str(run), "--json"])  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    assert (
        read_model_config(run).num_classes == 120 == read_model_config(run / "model.safetensors").num_classes
        and config["input"]["resolution"] == 16
    )

    small = ["--test-images", "8", "--calib-images", "16"]
    summary = _json(capsys, ["eval", str(run), "6111", "0", "--split", "valid", *small, "--json"])
    assert {r["index"] for r in summary["records"]} == {6111, 0}

    def cost(arch: str, C: int = 4, N: int = 1) -> float:
        return Arch.parse(arch).cost(num_classes=120, resolution=16, C=C, N=N).mflops

    limit = Arch.from_index(6111).cost(num_classes=120, resolution=16, C=4, N=1).mflops
    assert limit < Arch.from_index(6111).cost(num_classes=120, resolution=32, C=4, N=1).mflops / 3
    search = ["search", "-s", str(run), "--max-flops", f"{limit * 1e6:.0f}", "--max-evals", "6", "--top", "3", *small]
    [result] = _json(capsys, [*search, "--json"])
    assert result["winners"] and [w["mflops"] for w in result["winners"]] == pytest.approx(
        [cost(w["arch"]) for w in result["winners"]], abs=1e-5
    )
    assert all(w["mflops"] <= limit + 1e-9 for w in result["winners"])
    [benchmark] = _json(capsys, [*search[:4], "1000M", *search[5:], "--budget-net", "benchmark", "--json"])
    assert all(w["mflops"] == pytest.approx(cost(w["arch"], 16, 5), abs=1e-5) for w in benchmark["winners"])

    net_file = tmp_path / "net.safetensors"
    exported = _json(capsys, ["sample", "6111", "-s", str(run), "-o", str(net_file), "--calib-images", "16", "--json"])
    assert exported["mflops"] == pytest.approx(limit, abs=1e-5) and exported["num_classes"] == 120
    net = load_network(net_file)
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 120)
