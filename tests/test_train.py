"""Training: files of a run, exact resume, divergence, bad checkpoints, weight decay, 2-process DDP."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from khnet.checkpoint import CheckpointError, load_supernet, read_run_config, state_hash
from khnet.cli.main import main
from khnet.config import ConfigError, SupernetConfig
from khnet.errors import KhnetError
from khnet.supernet import SuperNet
from khnet.train import (
    EpochEvent,
    StepEvent,
    StoppedEvent,
    TrainConfig,
    TrainingDiverged,
    build_optimizer,
    optimizer_step,
    train_step,
    train_supernet,
)

TINY_MODEL = SupernetConfig(channels=4, cells_per_stage=1, hidden=8, mixer_token_hidden=8, mixer_channel_hidden=16)


def tiny_train(**kw) -> TrainConfig:
    base = {"epochs": 2, "batch_size": 16, "max_steps_per_epoch": 3, "warmup_epochs": 1, "lr": 0.05, "device": "cpu"}
    return TrainConfig(**{**base, **kw})


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_supernet(run_dir).state_dict()


def test_one_epoch_run_writes_everything(tmp_path):
    events = list(train_supernet(tmp_path / "run", tiny_train(epochs=1), TINY_MODEL))
    steps = [e for e in events if isinstance(e, StepEvent)]
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert len(steps) == 3 and len(epochs) == 1 and steps[0].lr == pytest.approx(0.05)
    run = tmp_path / "run"
    files = {"config.json", "training.json", "metrics.csv", "model.safetensors", "checkpoint.pt"}
    assert {p.name for p in run.iterdir()} >= files
    flat = json.loads((run / "config.json").read_text())  # flat: what PyTorchModelHubMixin reads
    assert flat["channels"] == 4 and "train" not in flat and flat["input"]["resolution"] == 32
    config = read_run_config(run)
    assert config["model"]["channels"] == 4 and config["train"]["epochs"] == 1 and "JPEG" in config["dataset"]["note"]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    model = load_supernet(run)
    assert isinstance(model, SuperNet) and model.beta.shape == (6, 5)
    assert all(torch.isfinite(torch.tensor([s.loss_teacher, s.loss_subnets])).all() for s in steps)


def test_resume_at_epoch_boundary_is_bitwise(tmp_path):
    list(train_supernet(tmp_path / "straight", tiny_train(), TINY_MODEL))
    events = list(train_supernet(tmp_path / "split", tiny_train(), TINY_MODEL, stop_after_epochs=1))
    assert isinstance(events[-1], StoppedEvent)
    list(train_supernet(tmp_path / "split", resume=True))
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [list(csv.DictReader((tmp_path / d / "metrics.csv").open())) for d in ("straight", "split")]
    assert [(r["global_step"], r["loss_teacher"]) for r in rows[0]] == [
        (r["global_step"], r["loss_teacher"]) for r in rows[1]
    ]


def test_sigterm_mid_epoch_saves_and_resumes_exactly(tmp_path):
    list(train_supernet(tmp_path / "straight", tiny_train(), TINY_MODEL))
    events = []
    for event in train_supernet(tmp_path / "split", tiny_train(), TINY_MODEL):
        events.append(event)
        if isinstance(event, StepEvent) and event.global_step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
    assert isinstance(events[-1], StoppedEvent) and events[-1].reason == "SIGTERM" and events[-1].step == 2
    list(train_supernet(tmp_path / "split", resume=True))
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(list(csv.DictReader((tmp_path / "split" / "metrics.csv").open()))) == 6  # nothing lost or doubled


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    list(train_supernet(run, tiny_train(), TINY_MODEL, stop_after_epochs=1))
    good = state_hash(weights(run))
    original = SuperNet.forward_teacher
    monkeypatch.setattr(SuperNet, "forward_teacher", lambda self, x, warmup=False: original(self, x) * float("nan"))
    with pytest.raises(TrainingDiverged, match=r"epoch 2 step 1.*last good checkpoint"):
        list(train_supernet(run, resume=True))
    assert state_hash(weights(run)) == good
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1


def test_bad_checkpoints_and_directories(tmp_path):
    run = tmp_path / "run"
    list(train_supernet(run, tiny_train(epochs=1), TINY_MODEL))
    with pytest.raises(KhnetError, match="already holds a run"):
        list(train_supernet(run, tiny_train(), TINY_MODEL))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        list(train_supernet(tmp_path / "nothing", resume=True))
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["config"]["model"]["channels"] = 8
    torch.save(ckpt, run / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="does not match"):
        list(train_supernet(run, tiny_train(epochs=3), resume=True))
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        list(train_supernet(run, resume=True))
    (run / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_supernet(run)


def test_weight_decay_only_in_teacher_step_and_never_on_bn_or_bias():
    model = SuperNet(TINY_MODEL)
    config = TrainConfig(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.5)
    optimizer = build_optimizer(model, config)
    decay, no_decay = ({id(p) for p in g["params"]} for g in optimizer.param_groups)
    norm_names = {
        f"{module_name}.{param_name}"
        for module_name, module in model.named_modules()
        if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.LayerNorm))
        for param_name, _ in module.named_parameters(recurse=False)
    }
    assert any(".conv_a.op.2." in n for n in norm_names) and any(".edges.0.bn." in n for n in norm_names)
    for name, p in model.named_parameters():
        expected = name in norm_names or name.endswith(".bias") or name.startswith("kernels.gain.")  # gains: scales
        assert (id(p) in no_decay) == expected, name
    assert id(model.beta) in decay
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer_step(model, optimizer, config, None, None, weight_decay=False)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    optimizer_step(model, optimizer, config, None, None, weight_decay=True)
    for n, p in model.named_parameters():
        expected = before[n] * (1 - 0.1 * 0.5) if id(p) in decay else before[n]
        assert torch.allclose(p, expected), n


def test_generator_lr_scale_splits_the_kernel_source_and_scales_its_rate(tmp_path):
    model = SuperNet(TINY_MODEL)
    assert len(build_optimizer(model, TrainConfig(lr=0.1)).param_groups) == 2  # 1.0: the paper's two groups
    optimizer = build_optimizer(model, TrainConfig(lr=0.1, generator_lr_scale=0.01))
    source = {id(p) for p in model.kernels.parameters()}
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    for group in optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        assert (ids <= source) if group["lr_scale"] == 0.01 else not (ids & source)
        assert group["lr"] == pytest.approx(0.1 * group["lr_scale"])
    assert {g["lr_scale"] for g in optimizer.param_groups} == {1.0, 0.01}
    assert {g["base_weight_decay"] for g in optimizer.param_groups} == {0.0, 5e-4}
    # the loop applies the scale to the scheduled rate at every step
    list(train_supernet(tmp_path / "run", tiny_train(epochs=1, generator_lr_scale=0.25), TINY_MODEL))
    groups = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["optimizer"]["param_groups"]
    rates = {g["lr_scale"]: g["lr"] for g in groups}
    assert rates[0.25] == pytest.approx(0.25 * rates[1.0]) and rates[1.0] > 0
    with pytest.raises(ConfigError, match="generator_lr_scale=0"):
        TrainConfig(generator_lr_scale=0)


@pytest.mark.parametrize("distill", [True, False])
def test_train_step_both_distillation_modes(distill, monkeypatch):
    """With distillation the K subnets learn the teacher's softmax (soft cross-entropy, once per subnet, against
    exactly the teacher's probabilities of this step); without it the labels; the teacher step moves beta."""
    import khnet.train as train_module

    torch.manual_seed(0)
    model = SuperNet(TINY_MODEL)
    config = TrainConfig(distill=distill, num_subnets=3)
    optimizer = build_optimizer(model, config)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    beta = model.beta.detach().clone()
    teacher_logits, soft_targets = [], []
    real_teacher, real_soft = model.forward_teacher, train_module._soft_cross_entropy
    monkeypatch.setattr(
        model, "forward_teacher", lambda *a, **k: teacher_logits.append(real_teacher(*a, **k)) or teacher_logits[-1]
    )
    monkeypatch.setattr(
        train_module, "_soft_cross_entropy", lambda logits, t: soft_targets.append(t) or real_soft(logits, t)
    )
    lt, ls, acc = train_step(model, optimizer, x, y, torch.Generator().manual_seed(0), config, warmup=False)
    assert all(map(lambda v: v == v and abs(v) < 1e3, (lt, ls))) and 0 <= acc <= 100
    assert lt == pytest.approx(F.cross_entropy(teacher_logits[0].detach(), y).item(), rel=1e-6)
    if distill:
        expected = teacher_logits[0].detach().float().softmax(-1)
        assert len(soft_targets) == 3 and all(torch.equal(t, expected) for t in soft_targets)
    else:
        assert soft_targets == []
    assert not torch.equal(beta, model.beta)  # the teacher step moved beta


def _ddp_worker(rank: int, world: int, port: int, run_dir: str, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    import torch.distributed as dist

    import khnet.train as train_module

    drawn, original = [], train_module.draw_archs

    def spy(*args, **kwargs):
        archs = original(*args, **kwargs)
        drawn.append([str(a) for a in archs])
        return archs

    train_module.draw_archs = spy
    hashes = [e.weights_hash for e in train_supernet(run_dir, tiny_train(), TINY_MODEL) if isinstance(e, EpochEvent)]
    gathered = [None] * world
    dist.all_gather_object(gathered, {"hashes": hashes, "drawn": drawn})
    if rank == 0:
        with open(os.path.join(out_dir, "result.json"), "w") as f:
            json.dump(gathered, f)
    # both ranks leave together: a rank tearing gloo down while the other is still in a collective aborts it
    # ("terminate called without an active exception", about 1 run in 4 without this barrier)
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_stay_in_sync(tmp_path):
    run_dir = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(run_dir), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = json.loads((tmp_path / "result.json").read_text())
    assert len(rank0["hashes"]) == 2 and rank0["hashes"] == rank1["hashes"]  # identical weights after every epoch
    assert rank0["hashes"][-1] == state_hash(weights(run_dir))
    assert rank0["drawn"] != rank1["drawn"]  # each rank trains its own subnets on the same batch
    assert len(list(csv.DictReader((run_dir / "metrics.csv").open()))) == 6  # written once, by rank 0


def test_cli_train_end_to_end(tmp_path, capsys):
    code = main(["train", "--dataset", "sample", "--epochs", "1", "--proxy", "--max-steps-per-epoch", "2",
                 "--batch-size", "32", "--device", "cpu", "-o", str(tmp_path / "run")])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Training summary" in out and "epoch 1/1" in err
    saved = read_run_config(tmp_path / "run")
    assert saved["model"]["channels"] == 8
    # the default recipe (khnet): residual kernels, teacher on the shared kernels, mean of the subnet losses
    assert (saved["model"]["generator"], saved["model"]["teacher_kernels"]) == ("residual", "shared")
    assert saved["train"]["subnet_reduction"] == "mean"
    code = main(["train", "--resume", str(tmp_path / "nowhere")])
    assert code == 1 and "no checkpoint" in capsys.readouterr().err
    code = main(["train", "--resume", str(tmp_path / "run"), "--epochs", "2", "--json"])  # data only on stdout
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["run_dir"] == str(tmp_path / "run") and [e["epoch"] for e in report["epochs"]] == [2]
    assert report["param_counts"]["total"] > 0 and "epoch 2/2" in err


@pytest.mark.parametrize(
    ("args", "generator", "reduction"),
    [
        (["--recipe", "paper"], "paper", "sum"),
        (["--recipe", "paper", "--subnet-reduction", "mean"], "paper", "mean"),
        (["--generator", "paper-rank7"], "paper-rank7", "mean"),
    ],
)
def test_cli_train_recipes(tmp_path, capsys, args, generator, reduction):
    code = main(["train", "--dataset", "sample", "--epochs", "1", "--proxy", "--max-steps-per-epoch", "1",
                 "--batch-size", "16", "--device", "cpu", *args, "-o", str(tmp_path / "run")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    saved = read_run_config(tmp_path / "run")
    assert (saved["model"]["generator"], saved["train"]["subnet_reduction"]) == (generator, reduction)


def test_recipe_model_config_is_what_the_cli_trains():
    from khnet.config import recipe_model_config

    paper = recipe_model_config("paper", proxy=True, channels=4, num_kernels=None)
    assert (paper.generator, paper.teacher_kernels, paper.channels, paper.cells_per_stage) == ("paper", "beta", 4, 1)
    assert paper.num_kernels == 64  # None: the method's default
    assert recipe_model_config().to_dict() == SupernetConfig().to_dict()  # the khnet recipe is the default
    assert recipe_model_config("khnet", generator="paper-rank7").generator == "paper-rank7"  # overrides win
    shared = recipe_model_config("paper", "weight-sharing")  # the recipe's kernel settings are Kshot-Hypernet's
    assert shared.method == "weight-sharing" and shared.num_kernels == 1
    with pytest.raises(ConfigError, match="unknown recipe 'fast'"):
        recipe_model_config("fast")


def test_cli_train_epochs_zero_is_an_error_not_300_epochs(tmp_path, capsys):
    code = main(["train", "--dataset", "sample", "--epochs", "0", "-o", str(tmp_path / "run")])
    assert code != 0 and "epochs=0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_train_rejects_an_unknown_recipe(tmp_path, capsys):
    code = main(["train", "--recipe", "fast", "-o", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code != 0 and "unknown recipe 'fast'" in err and "khnet, paper" in err


def test_distillation_schedule_options(monkeypatch):
    import khnet.train as train_module

    calls, scaled = [], []
    real_soft, real_backward = train_module._soft_cross_entropy, train_module._backward
    monkeypatch.setattr(train_module, "_soft_cross_entropy", lambda *a: calls.append(1) or real_soft(*a))
    monkeypatch.setattr(
        train_module, "_backward", lambda loss, scaler: scaled.append(loss.item()) or real_backward(loss, scaler)
    )
    model = SuperNet(TINY_MODEL)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for reduction in ("sum", "mean"):
        config = TrainConfig(subnet_reduction=reduction, num_subnets=4)
        optimizer = build_optimizer(model, config)
        calls.clear(), scaled.clear()
        _, mean_loss, _ = train_step(
            model, optimizer, x, y, torch.Generator().manual_seed(0), config, warmup=False, distill=False
        )
        assert calls == []  # labels, not soft labels
        factor = 4 if reduction == "mean" else 1
        assert sum(scaled[1:]) * factor == pytest.approx(mean_loss * 4, rel=1e-5)
        train_step(model, optimizer, x, y, torch.Generator().manual_seed(0), config, warmup=False)
        assert len(calls) == 4
    with pytest.raises(ConfigError, match="subnet_reduction"):
        TrainConfig(subnet_reduction="max")
    with pytest.raises(ConfigError, match="distill_warmup_epochs=-1"):
        TrainConfig(distill_warmup_epochs=-1)


def test_warmup_and_distillation_switch_at_their_epochs(tmp_path, monkeypatch):
    """The loop passes warmup=True (lambda fixed to 1/N) for the first ``warmup_epochs`` and distills only from
    epoch ``distill_warmup_epochs`` on; a resumed run keeps the schedule of the epoch it resumes in."""
    import khnet.train as train_module

    seen, real = [], train_module.train_step
    monkeypatch.setattr(
        train_module, "train_step", lambda *a, **kw: seen.append((kw["warmup"], kw["distill"])) or real(*a, **kw)
    )
    config = tiny_train(epochs=4, max_steps_per_epoch=1, warmup_epochs=2, distill_warmup_epochs=1)
    list(train_supernet(tmp_path / "run", config, TINY_MODEL, stop_after_epochs=3))
    assert seen == [(True, False), (True, True), (False, True)]
    list(train_supernet(tmp_path / "run", None, None, resume=True))
    assert seen[3:] == [(False, True)]
    seen.clear()
    list(train_supernet(tmp_path / "plain", tiny_train(epochs=2, max_steps_per_epoch=1, distill=False), TINY_MODEL))
    assert seen == [(True, False), (False, False)]


def test_cosine_schedule_reaches_min_lr():
    from khnet.optim import lr_at

    config = TrainConfig(lr=0.2, min_lr=0.01)
    assert lr_at(config, 0, 100) == pytest.approx(0.2)
    assert lr_at(config, 50, 100) == pytest.approx(0.105)
    assert lr_at(config, 100, 100) == pytest.approx(0.01) and lr_at(config, 150, 100) == pytest.approx(0.01)
    assert lr_at(config, 25, 100) > lr_at(config, 26, 100)  # decays every step, not per epoch


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_grad_clip_bounds_each_optimizer_step(clip):
    """With grad_clip, each of Algorithm 1's two SGD steps moves the weights by at most lr * clip (no momentum,
    no decay); without it they move much further."""
    torch.manual_seed(0)
    model = SuperNet(TINY_MODEL).train()
    config = TrainConfig(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0, grad_clip=clip, num_subnets=2)
    optimizer = build_optimizer(model, config)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    train_step(model, optimizer, x, y, torch.Generator().manual_seed(0), config)
    moved = (torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm().item()
    if clip is None:
        assert moved > 10 * 2 * 0.1 * 1e-3
    else:
        assert moved <= 2 * 0.1 * clip * 1.001


def test_cli_trains_one_arch_from_scratch(tmp_path, capsys):
    """khnet train --arch: one network with the supernet's recipe, saved with its accuracies; supernet-only
    options are refused."""
    code = main(["train", "--arch", "6111", "--dataset", "sample", "--epochs", "1", "--proxy", "--max-steps-per-epoch",
                 "2", "--batch-size", "32", "--device", "cpu", "-o", str(tmp_path / "s"), "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["index"] == 6111 and (report["C"], report["N"]) == (8, 1) and 0 <= report["test_accuracy"] <= 100
    saved = json.loads((tmp_path / "s" / "scratch.json").read_text())
    assert saved["train"]["max_steps_per_epoch"] == 2 and (tmp_path / "s" / "net.safetensors").is_file()
    from khnet.export import load_network

    assert load_network(tmp_path / "s" / "net.safetensors")(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert main(["train", "--arch", "6111", "--distill", "--epochs", "1"]) == 2
    assert "only apply to a supernet" in capsys.readouterr().err
    assert main(["train", "--arch", "|nor_conv_3x3~0|"]) == 2
