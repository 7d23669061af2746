"""Issue 11: the generated kernels have full rank, the residual form starts as weight sharing, old configs
load as the form they were trained with, and the GPU check runs on the CPU."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from khnet import hypernet
from khnet.config import ConfigError, SupernetConfig
from khnet.hypernet import ResidualHyperKernels, SharedKernels, arch_encoding
from khnet.space import Arch
from khnet.supernet import SuperNet
from khnet.train import TrainConfig, build_optimizer, train_step

ROOT = Path(__file__).resolve().parents[1]
# the paper's channel widths (16/32/64 with h=32: stage 3 exceeds h), one cell per stage to stay fast
FULL_WIDTH = {"channels": 16, "cells_per_stage": 1, "hidden": 32}


def kernel_spectra(net: SuperNet, archs: list[Arch]) -> list[tuple[str, int, int, float]]:
    """(group, rank, C_in, share of energy in the top singular direction) per generated kernel."""
    return [(k.group, k.rank, k.in_chs, k.top_share) for k in hypernet.kernel_spectra(net.kernels, archs)]


def train_a_few_steps(net: SuperNet, steps: int = 3) -> None:
    config = TrainConfig(batch_size=8, subnet_reduction="mean", lr=0.1)
    optimizer = build_optimizer(net, config)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    for _ in range(steps):
        x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
        train_step(net, optimizer, x, y, generator, config, warmup=False)


@pytest.mark.parametrize("generator", ["paper", "residual"])
def test_generated_kernels_have_full_rank_and_no_dominant_direction(generator):
    torch.manual_seed(0)
    net = SuperNet(SupernetConfig(generator=generator, **FULL_WIDTH))
    archs = [Arch.random(random.Random(s)) for s in range(4)]
    hidden = net.config.hidden
    for when in ("init", "trained"):
        if when == "trained":
            train_a_few_steps(net)
        spectra = kernel_spectra(net, archs)
        for name, rank, chs, top in spectra:
            # W = (z A)^T B factors through h; the residual form adds a stored full-rank kernel
            expected = chs if generator == "residual" else min(chs, hidden)
            assert rank == expected, (when, name, rank, chs)
            # the rank-7 form: 0.68-0.87 in one direction at init. The paper's form concentrates as it trains
            # (0.61 in a 16x16 1x1 kernel after these 3 steps: every step moves every kernel along shared
            # directions of z; docs/results.md); the residual form (the default) keeps the stored kernel's spread.
            limit = 0.7 if (generator, when) == ("paper", "trained") else 0.5
            assert top < limit, (when, name, top)


def test_the_old_rank7_form_is_still_rank_7():
    """The defect of khnet <= 0.1 (z = Linear(6 -> h) across tokens), kept to reproduce the issue-7 runs."""
    torch.manual_seed(0)
    net = SuperNet(SupernetConfig(generator="paper-rank7", **FULL_WIDTH))
    spectra = kernel_spectra(net, [Arch.from_index(6111)])
    assert {rank for _, rank, _, _ in spectra} == {7}
    assert max(top for *_, top in spectra) > 0.5


def test_residual_form_with_zero_gain_is_weight_sharing():
    torch.manual_seed(0)
    config = SupernetConfig(generator="residual", residual_gain=0.0, **FULL_WIDTH)
    source = ResidualHyperKernels(config)
    assert isinstance(source.shared, SharedKernels)
    layers = dict.fromkeys(source.groups)
    stored = source.shared(arch_encoding(Arch.from_index(0)), layers)
    for index in (0, 6111, 9930):
        kernels = source(arch_encoding(Arch.from_index(index)), layers)
        assert all(torch.equal(kernels[name], stored[name]) for name in layers)
    # the gain still learns from a zero start: its gradient is <dL/dW, G(alpha)>
    net = SuperNet(config)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    F.cross_entropy(net(x, Arch.from_index(6111)), y).backward()
    assert any(g.grad is not None and g.grad.abs().sum() > 0 for g in net.kernels.gain.values())


def test_residual_kernels_depend_on_the_arch_and_gain_is_not_decayed():
    assert (SupernetConfig().generator, SupernetConfig().residual_gain) == ("residual", 0.0)  # the default
    torch.manual_seed(0)
    net = SuperNet(SupernetConfig(residual_gain=0.1, **FULL_WIDTH))
    a = net.kernels(arch_encoding(Arch.from_index(6111)), {"s0_k3": None})["s0_k3"]
    b = net.kernels(arch_encoding(Arch.from_index(9930)), {"s0_k3": None})["s0_k3"]
    assert not torch.allclose(a, b)
    # relative size of the arch-specific part: about the initial gain
    shared = net.kernels.shared(None, {"s0_k3": None})["s0_k3"]
    assert 0.05 < ((a - shared).norm() / shared.norm()).item() < 0.2
    optimizer = build_optimizer(net, TrainConfig())
    gains = {id(p) for p in net.kernels.gain.values()}
    for group in optimizer.param_groups:
        if any(id(p) in gains for p in group["params"]):
            assert group["base_weight_decay"] == 0.0


def test_teacher_can_use_the_shared_kernels_alone():
    torch.manual_seed(0)
    # a non-zero gain, so that the generator matters to the single paths (the default gain is 0)
    net = SuperNet(SupernetConfig(residual_gain=0.1, **FULL_WIDTH)).eval()
    assert net.config.teacher_kernels == "shared"  # the default
    x = torch.randn(2, 3, 32, 32)
    before = net.forward_teacher(x)
    with torch.no_grad():
        for p in net.kernels.generated.parameters():
            p.mul_(3.0)
    assert torch.allclose(net.forward_teacher(x), before)  # the generator plays no part in the teacher
    net_beta = SuperNet(SupernetConfig(teacher_kernels="beta", residual_gain=0.1, **FULL_WIDTH)).eval()
    before = net_beta.forward_teacher(x)
    with torch.no_grad():
        for p in net_beta.kernels.generated.out_maps.values():
            p.mul_(3.0)
    assert not torch.allclose(net_beta.forward_teacher(x), before)


def test_configs_without_generator_load_as_the_form_they_were_trained_with():
    old = {"method": "kshot-hypernet", "channels": 8, "cells_per_stage": 1}
    assert SupernetConfig.from_dict(old).generator == "paper-rank7"
    assert SupernetConfig.from_dict({**old, "generator": "paper"}).generator == "paper"
    assert SupernetConfig.from_dict({"method": "weight-sharing"}).method == "weight-sharing"
    assert SupernetConfig().generator == "residual"
    for bad, message in [
        ({"generator": "hyper"}, "unknown generator 'hyper'"),
        ({"residual_gain": -1.0}, "residual_gain=-1.0"),
        ({"residual_gain": float("nan")}, "residual_gain=nan"),
        ({"teacher_kernels": "alpha"}, "unknown teacher_kernels 'alpha'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            SupernetConfig(**bad)


@pytest.mark.slow
def test_gpu_check_smoke_mode_runs_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.csv"
    result = subprocess.run(
        [sys.executable, "experiments/gpu_check.py", "--smoke", "--runs", str(tmp_path / "runs"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = out.read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
    assert [(r["method"], r["budget"]) for r in rows] == [
        ("weight-sharing", "half"), ("weight-sharing", "full"), ("default", "half"), ("default", "full")
    ]  # fmt: skip
    for row in rows:
        assert float(row["min_rank_ratio"]) == 1.0 and 0 < float(row["max_top_energy"]) < 1
        assert 0 <= float(row["mean"]) <= 100 and float(row["probe_images_per_s"]) > 0
    assert [r["generator"] for r in rows] == ["", "", "residual", "residual"]
