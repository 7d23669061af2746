"""Reproducible files, honest exit codes, strict JSON, locks and checksums: what a user scripting khnet relies on."""

from __future__ import annotations

import json
import multiprocessing
import tempfile
from pathlib import Path

import pytest
import torch

from khnet.checkpoint import CheckpointError, canonical_safetensors, state_hash
from khnet.cli._common import print_json
from khnet.cli.main import main
from khnet.config import SupernetConfig
from khnet.errors import UsageError
from khnet.evaluate import EvalSettings, evaluate_archs
from khnet.hub import pull_from_zoo, resolve_supernet, save_pretrained, sha256_of
from khnet.search import measure_latency
from khnet.space import Arch
from khnet.supernet import SuperNet
from khnet.train import StoppedEvent, TrainConfig, train_supernet

TINY = SupernetConfig(channels=4, cells_per_stage=1, hidden=8, mixer_token_hidden=8, mixer_channel_hidden=16)
FAST = EvalSettings(dataset="sample", split="valid", test_images=32, calib_images=32)


def test_two_seeded_runs_write_byte_identical_supernets(tmp_path):
    config = TrainConfig(epochs=1, batch_size=32, max_steps_per_epoch=2, device="cpu", seed=3)
    for name in ("a", "b"):
        list(train_supernet(tmp_path / name, config, TINY))
    a, b = (tmp_path / n / "model.safetensors" for n in ("a", "b"))
    assert a.read_bytes() == b.read_bytes() and sha256_of(a) == sha256_of(b)
    assert canonical_safetensors(a.read_bytes()) == a.read_bytes()  # already canonical


def test_a_seeded_run_depends_on_its_seed_only(tmp_path):
    """Not on the loader's worker count (augmentation is drawn from the epoch's generator, not in the workers)
    nor on torch's global generator, which training leaves as it found it."""
    config = dict(epochs=1, batch_size=32, max_steps_per_epoch=2, device="cpu", seed=5)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    list(train_supernet(tmp_path / "a", TrainConfig(**config, num_workers=0), TINY))
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(999)
    list(train_supernet(tmp_path / "b", TrainConfig(**config, num_workers=2), TINY))
    list(train_supernet(tmp_path / "c", TrainConfig(**{**config, "seed": 6}, num_workers=0), TINY))
    a, b, c = ((tmp_path / n / "model.safetensors").read_bytes() for n in "abc")
    assert a == b and a != c


def test_canonical_safetensors_sorts_the_header_and_keeps_the_tensors():
    from safetensors.torch import load, save

    tensors = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3, dtype=torch.float64)}
    blob = save(tensors, metadata={"z": "1", "a": "2", "format": "pt"})
    out = canonical_safetensors(blob)
    size = int.from_bytes(out[:8], "little")
    assert size % 8 == 0 and list(json.loads(out[8 : 8 + size])["__metadata__"]) == ["a", "format", "z"]
    assert all(torch.equal(load(out)[k], v) for k, v in tensors.items())


def test_strict_json_has_no_nan(capsys):
    print_json({"tau": float("nan"), "list": [float("inf"), 1.5], "nested": {"x": float("-inf")}})
    text = capsys.readouterr().out
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"tau": None, "list": [None, 1.5], "nested": {"x": None}}


@pytest.mark.parametrize(("reason", "code"), [("SIGINT", 130), ("SIGTERM", 143), ("stop_after_epochs", 0)])
def test_train_exit_code_says_how_the_run_stopped(tmp_path, capsys, monkeypatch, reason, code):
    """``khnet train`` exits 128 + the signal after a saved stop (so scripts see the interruption), 0 when
    ``--stop-after-epochs`` stopped it as asked; either way it says how to resume."""
    import khnet.train

    def stopped(run_dir, *args, **kwargs):
        yield StoppedEvent(0, 3, reason, str(run_dir))

    monkeypatch.setattr(khnet.train, "train_supernet", stopped)
    assert main(["train", "--dataset", "sample", "-o", str(tmp_path / "run")]) == code
    assert f"khnet train --resume {tmp_path / 'run'}" in capsys.readouterr().err


def _concurrent_eval(results: str, out: str) -> None:
    torch.manual_seed(0)
    net = SuperNet(TINY).eval()
    records = list(evaluate_archs(net, [Arch.from_index(i) for i in (1, 2, 3, 4)], FAST, results))
    Path(out).write_text(json.dumps([r.reused for r in records]))


def test_two_concurrent_evals_of_one_folder_evaluate_each_arch_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_concurrent_eval, args=(str(tmp_path / "r"), str(tmp_path / f"{i}.json")))
             for i in range(2)]  # fmt: skip
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    reused = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(2)]
    assert sorted(all(r) for r in reused) == [False, True]  # one evaluated, the other waited and reused
    (csv_file,) = (tmp_path / "r").glob("eval-*.csv")
    assert len(csv_file.read_text().splitlines()) == 1 + 4  # header + each class once


def test_zoo_checks_its_config_and_names_are_unambiguous(tmp_path, monkeypatch):
    torch.manual_seed(0)
    zoo = tmp_path / "zoo"
    save_pretrained(SuperNet(TINY).eval(), zoo / "tiny")
    entry = {"name": "tiny", "description": "t", "dataset": "sample", "method": "kshot-hypernet",
             "source": {"path": "tiny/model.safetensors"}, "sha256": sha256_of(zoo / "tiny" / "model.safetensors"),
             "config_sha256": sha256_of(zoo / "tiny" / "config.json"), "metrics": {}, "command": "none"}  # fmt: skip
    (zoo / "registry.json").write_text(json.dumps({"supernets": [entry]}))
    monkeypatch.setenv("KHNET_ZOO", str(zoo))
    monkeypatch.chdir(tmp_path)
    assert resolve_supernet("zoo:tiny").zoo.name == "tiny"
    (tmp_path / "tiny").mkdir()  # a local folder with the entry's name
    with pytest.raises(UsageError, match=r"both a zoo entry and a local path; write zoo:tiny"):
        resolve_supernet("tiny")
    assert resolve_supernet("zoo:tiny").model.config.channels == 4
    config = zoo / "tiny" / "config.json"
    config.write_text(config.read_text().replace('"channels": 4', '"channels": 8'))
    with pytest.raises(CheckpointError, match=r"config\.json has sha256"):
        pull_from_zoo("tiny")


def test_export_refuses_a_file_and_a_failed_push_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    save_pretrained(SuperNet(TINY).eval(), tmp_path / "net")
    (tmp_path / "file").write_text("x")
    assert main(["export", str(tmp_path / "net"), "--to", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = set(Path(tempfile.gettempdir()).glob("khnet-export-*"))
    assert main(["export", str(tmp_path / "net"), "--push", "org/name"]) == 1
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    assert set(Path(tempfile.gettempdir()).glob("khnet-export-*")) == before


def test_latency_cache_is_keyed_by_threads_and_torch_and_can_be_remeasured(tmp_path):
    cache = tmp_path / "latency.json"
    arch = Arch.from_index(1462)
    first = measure_latency(arch, C=4, N=1, repeats=2, cache=cache)
    (key,) = json.loads(cache.read_text())
    assert f"{torch.get_num_threads()}threads" in key and f"torch{torch.__version__}" in key and "|b1|" in key
    cache.write_text(json.dumps({key: 12345.0}))
    assert measure_latency(arch, C=4, N=1, repeats=2, cache=cache) == 12345.0  # cached
    again = measure_latency(arch, C=4, N=1, repeats=2, cache=cache, remeasure=True)
    assert again != 12345.0 and again > 0 and first > 0
    cache.write_text("{broken")
    assert measure_latency(arch, C=4, N=1, repeats=2, cache=cache) > 0  # a damaged cache is measured anew


def test_a_read_only_plots_folder_fails_before_any_work(tmp_path, capsys):
    torch.manual_seed(0)
    net = SuperNet(TINY).eval()
    save_pretrained(net, tmp_path / "net")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the folder should go")
    code = main(["eval", str(tmp_path / "net"), "1", "--plots", str(blocker / "plots")])
    assert code == 1 and "cannot be written to" in capsys.readouterr().err
    assert not list((tmp_path / "net").glob("eval-*.csv"))  # nothing was evaluated
    assert state_hash(net.state_dict())  # (the supernet itself is untouched)
