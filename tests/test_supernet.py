"""The supernet and its kernel sources: equivalences, gradients, warm-up, initialisation, configs."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F

from khnet.config import ConfigError, SupernetConfig
from khnet.hypernet import (
    ConvGroup,
    HyperKernels,
    KshotKernels,
    ResidualHyperKernels,
    arch_encoding,
    build_kernel_source,
    conv_groups,
    standard_conv_variance,
)
from khnet.network import NB201Net
from khnet.space import OP_NAMES, Arch
from khnet.supernet import SuperCell, SuperNet

TINY = {"channels": 4, "cells_per_stage": 1, "hidden": 8, "mixer_token_hidden": 8, "mixer_channel_hidden": 16}
ARCHS = [Arch.from_index(6111), Arch.from_ops(["none"] * 6), Arch.from_index(0)] + [
    Arch.random(random.Random(s)) for s in range(6)
]


# every kernel source: the methods, with kshot-hypernet in each of its generator forms (METHOD:GENERATOR)
VARIANTS = ["kshot-hypernet", "kshot-hypernet:paper", "kshot-hypernet:paper-rank7", "kshot", "weight-sharing"]


def tiny(method: str = "kshot-hypernet", **kw) -> SuperNet:
    if ":" in method:
        method, kw["generator"] = method.split(":")
    torch.manual_seed(0)
    return SuperNet(SupernetConfig(method=method, **{**TINY, **kw}))


def exercise_bn(net: SuperNet, x: torch.Tensor) -> None:
    """A few train-mode passes so every BatchNorm has non-trivial running statistics."""
    net.train()
    with torch.no_grad():
        net.forward_teacher(x)
        for arch in ARCHS:
            net(x, arch)


@pytest.mark.parametrize("method", VARIANTS)
def test_subnet_equals_single_path_forward(method):
    net = tiny(method, cells_per_stage=2)
    x = torch.randn(4, 3, 32, 32)
    exercise_bn(net, x)
    net.eval()
    with torch.no_grad():
        for arch in ARCHS:
            sub = net.subnet(arch)
            assert isinstance(sub, NB201Net) and not sub.training
            assert (sub(x) - net(x, arch)).abs().max().item() <= 1e-5, str(arch)


def test_subnet_equals_single_path_at_full_size():
    torch.manual_seed(1)
    net = SuperNet(SupernetConfig())
    x = torch.randn(2, 3, 32, 32)
    net.train()
    with torch.no_grad():
        net(x, ARCHS[0]), net(x, ARCHS[4])
    net.eval()
    with torch.no_grad():
        for arch in (ARCHS[0], ARCHS[4]):
            assert (net.subnet(arch)(x) - net(x, arch)).abs().max().item() <= 1e-5
            assert set(net.subnet(arch).state_dict()) == set(NB201Net(arch).state_dict())


@pytest.mark.parametrize("method", VARIANTS)
def test_teacher_with_one_hot_beta_is_the_single_path(method):
    # the residual form's default teacher uses the shared kernels alone (tests/test_kernel_forms.py); with
    # teacher_kernels="beta" it generates from softmax(beta) as the paper does, and then this holds
    net = tiny(method, teacher_kernels="beta")
    x = torch.randn(3, 3, 32, 32)
    exercise_bn(net, x)
    net.eval()
    for arch in ARCHS[:5]:
        with torch.no_grad():
            net.beta.copy_(arch_encoding(arch) * 1e4)  # softmax(beta) == alpha(arch) exactly in float32
            assert torch.equal(net.op_weights(), arch_encoding(arch))
            assert torch.allclose(net.forward_teacher(x), net(x, arch), atol=1e-5)


def test_teacher_cell_matches_hand_computed_mixed_ops():
    torch.manual_seed(0)
    chs = 3
    cell = SuperCell(chs).eval()
    with torch.no_grad():
        for edge in cell.edges:
            for bn in edge.bn.values():
                bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.5, 0.5)
    weights = torch.softmax(torch.randn(6, 5), dim=-1)
    kernels = {
        (e, op): torch.randn(chs, chs, k, k) for e in range(6) for op, k in (("nor_conv_1x1", 1), ("nor_conv_3x3", 3))
    }
    x = torch.randn(2, chs, 8, 8)

    def bn(e, op, y):
        m = cell.edges[e].bn[op]
        return (y - m.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
            m.running_var.view(1, -1, 1, 1) + m.eps
        ) * m.weight.view(1, -1, 1, 1) + m.bias.view(1, -1, 1, 1)

    def mixed(e, h):
        w = weights[e]
        return (
            w[1] * h
            + w[2] * bn(e, "nor_conv_1x1", F.conv2d(h.clamp(min=0), kernels[(e, "nor_conv_1x1")]))
            + w[3] * bn(e, "nor_conv_3x3", F.conv2d(h.clamp(min=0), kernels[(e, "nor_conv_3x3")], padding=1))
            + w[4] * F.avg_pool2d(h, 3, 1, 1, count_include_pad=False)
        )  # w[0] (none) multiplies zero

    n1 = mixed(0, x)
    n2 = mixed(1, x) + mixed(2, n1)
    n3 = mixed(3, x) + mixed(4, n1) + mixed(5, n2)
    with torch.no_grad():
        assert torch.allclose(cell.forward_mixed(x, weights, kernels), n3, atol=1e-5)


@pytest.mark.parametrize(
    ("generator", "prefixes"),
    [
        ("paper", ("kernels.in_maps.", "kernels.out_maps.", "kernels.features.", "kernels.attention.", "beta")),
        ("residual", ("kernels.generated.in_maps.", "kernels.generated.out_maps.", "kernels.generated.features.",
                      "kernels.generated.attention.", "kernels.shared.", "kernels.gain.", "beta")),
    ],
)  # fmt: skip
def test_gradients_reach_generators_mixer_cab_and_beta(generator, prefixes):
    # "shared" keeps the generator out of the teacher; a zero gain (the default) keeps G from learning at first
    net = tiny(generator=generator, teacher_kernels="beta", residual_gain=0.1)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    F.cross_entropy(net.forward_teacher(x), y).backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    for prefix in prefixes:
        touched = [g for name, g in grads.items() if name.startswith(prefix)]
        assert touched and all(g is not None and g.abs().sum() > 0 for g in touched), prefix
    net.zero_grad()
    F.cross_entropy(net(x, ARCHS[0]), y).backward()
    assert net.beta.grad is None or net.beta.grad.abs().sum() == 0  # a single path does not use beta
    hyper = net.kernels.generated if generator == "residual" else net.kernels
    assert hyper.features.embed.weight.grad.abs().sum() > 0
    assert hyper.attention.mlp[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("method", ["kshot-hypernet", "kshot-hypernet:paper", "kshot"])
def test_warmup_gives_uniform_lambda(method):
    net = tiny(method)
    alpha = arch_encoding(ARCHS[0])
    lam = net.kernels.coefficients(alpha, uniform=True)
    assert torch.allclose(lam, torch.full_like(lam, 1 / net.config.num_kernels))
    assert not torch.allclose(net.kernels.coefficients(alpha), lam)  # learned lambda differs
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    F.cross_entropy(net(x, ARCHS[0], warmup=True), y).backward()
    source = net.kernels.generated if isinstance(net.kernels, ResidualHyperKernels) else net.kernels
    head = source.simplex if method == "kshot" else source.attention
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in head.parameters())


@pytest.mark.parametrize("seed", [0, 1])
def test_generated_kernels_start_at_standard_conv_variance(seed):
    torch.manual_seed(seed)
    config = SupernetConfig()
    sources = (HyperKernels(config), ResidualHyperKernels(config), KshotKernels(SupernetConfig(method="kshot")))
    for source in sources:
        for arch in (ARCHS[0], Arch.random(random.Random(seed))):
            kernels = source(arch_encoding(arch), dict.fromkeys(source.groups))
            for name, w in kernels.items():
                g = source.groups[name]
                ratio = w.var().item() / standard_conv_variance(g.chs, g.kernel_size)
                assert 0.7 < ratio < 1.4, (type(source).__name__, name, ratio)


def test_paper_worked_example_parameter_counts():
    """C_in = C_out = 256, K = 3, h = 64, N = 64 (Section 3.1)."""
    group = [ConvGroup("x", 0, "nor_conv_3x3", 3, 256, 1)]
    stored = KshotKernels(SupernetConfig(method="kshot", num_kernels=64), groups=group)
    assert sum(p.numel() for p in stored.kernels.parameters()) == 37_748_736  # the paper's 37.75M
    generated = HyperKernels(SupernetConfig(hidden=64, num_kernels=64), groups=group)
    per_layer = sum(p.numel() for p in generated.in_maps.parameters()) + sum(
        p.numel() for p in generated.out_maps.parameters()
    )
    # h*C_in*N + h*C_out*K*K; the paper prints C_in*h*N + C_out*K^2 = 1.05M, dropping h from the second map
    assert per_layer == 64 * 256 * 64 + 64 * 256 * 9 == 1_196_032
    assert 30 < 37_748_736 / per_layer < 35


@pytest.mark.parametrize("method", VARIANTS)
def test_each_method_trains_a_step(method):
    net = tiny(method).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    teacher = net.forward_teacher(x)
    loss = F.cross_entropy(teacher, y)
    for arch in ARCHS[:3]:
        loss = loss + F.cross_entropy(net(x, arch), teacher.detach().softmax(-1))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    changed = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("kernels.") for k in changed) and "beta" in changed


def test_config_round_trip_and_errors(tmp_path):
    config = SupernetConfig(method="kshot", channels=8)
    assert config.num_kernels == 12 and SupernetConfig().num_kernels == 64
    config.to_json(tmp_path / "config.json")
    assert SupernetConfig.from_json(tmp_path / "config.json") == config
    assert json.loads((tmp_path / "config.json").read_text())["method"] == "kshot"
    for bad, message in [
        ({"method": "darts"}, "unknown method 'darts'"),
        ({"channels": 0}, "channels=0"),
        ({"hidden": 2.5}, "hidden=2.5"),
        ({"method": "weight-sharing", "num_kernels": 4}, "exactly 1"),
        ({"num_kernels": 2, "cab_reduction": 4}, "cab_reduction=4"),
    ]:
        with pytest.raises(ConfigError, match=message):
            SupernetConfig(**bad)
    with pytest.raises(ConfigError, match="unknown config key"):
        SupernetConfig.from_dict({"chanels": 8})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        SupernetConfig.from_json(tmp_path / "bad.json")


def test_parameter_counts_by_part():
    residual = SuperNet(SupernetConfig()).param_counts()
    assert residual["kernels.gain"] == 180 and residual["kernels.shared"] == 5 * 6 * sum(
        c * c * (1 + 9) for c in (16, 32, 64)
    )  # one stored 1x1 and 3x3 kernel per edge
    counts = SuperNet(SupernetConfig(generator="paper")).param_counts()
    assert residual["kernels.generated"] == counts["kernels.in_maps"] + counts["kernels.out_maps"] + (
        counts["kernels.features"] + counts["kernels.attention"]
    )
    assert counts["skeleton"] == 73_306  # stem, reductions, lastact, classifier: the all-`none` network
    assert counts["op_batchnorms"] == 5 * 6 * 2 * 2 * (16 + 32 + 64)
    assert counts["beta"] == 30
    assert counts["kernels.in_maps"] == sum(30 * 64 * 32 * c for c in (16, 32, 64)) * 2
    assert sum(v for k, v in counts.items() if k != "total") == counts["total"]
    assert len(conv_groups(SupernetConfig())) == 6 and sum(g.num_layers for g in conv_groups(SupernetConfig())) == 180
    assert isinstance(build_kernel_source(SupernetConfig(method="kshot")), KshotKernels)
    assert len(OP_NAMES) == 5


@pytest.mark.parametrize("method", VARIANTS)
def test_channels_last_gives_the_same_outputs(method):
    net = tiny(method)
    x = torch.randn(2, 3, 32, 32)
    exercise_bn(net, x)
    net.eval()
    with torch.no_grad():
        expected = net(x, ARCHS[0]), net.forward_teacher(x)
        net.to(memory_format=torch.channels_last)
        xcl = x.contiguous(memory_format=torch.channels_last)
        got = net(xcl, ARCHS[0]), net.forward_teacher(xcl)
        assert torch.allclose(expected[0], got[0], atol=1e-5) and torch.allclose(expected[1], got[1], atol=1e-5)
        assert torch.allclose(net.subnet(ARCHS[0])(x), expected[0], atol=1e-5)


def test_teacher_edge_equals_weighted_ops_in_train_mode():
    """forward_mixed folds the op weights into BatchNorm and pooling: same outputs, running statistics and
    gradients (beta, kernels, BatchNorm parameters, input) as weighting each op's output."""
    torch.manual_seed(1)
    chs = 4
    fast, slow = SuperCell(chs).train(), SuperCell(chs).train()
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(3, chs, 6, 6)
    beta = torch.randn(6, 5)
    sizes = (("nor_conv_1x1", 1), ("nor_conv_3x3", 3))
    kernels = {(e, op): torch.randn(chs, chs, k, k) for e in range(6) for op, k in sizes}

    def leaves():
        copies = {k: v.clone().requires_grad_() for k, v in kernels.items()}
        return x.clone().requires_grad_(), beta.clone().requires_grad_(), copies

    xf, bf, kf = leaves()
    out_fast = fast.forward_mixed(xf, bf.softmax(-1), kf)
    xs, bs, ks = leaves()
    w = bs.softmax(-1)
    nodes = [xs]
    for j in range(1, 4):
        total = 0
        for e, (dst, src) in enumerate(((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))):
            if dst == j:
                for k, op in enumerate(OP_NAMES[1:], start=1):
                    total = total + w[e, k] * slow.edges[e](nodes[src], op, ks.get((e, op)))
        nodes.append(total)
    out_slow = nodes[-1]
    assert torch.allclose(out_fast, out_slow, atol=1e-5)
    g = torch.randn_like(out_fast)
    out_fast.backward(g)
    out_slow.backward(g)
    assert torch.allclose(xf.grad, xs.grad, atol=1e-4) and torch.allclose(bf.grad, bs.grad, atol=1e-4)
    for key in kernels:
        assert torch.allclose(kf[key].grad, ks[key].grad, atol=1e-4)
    for (name, a), (_, b) in zip(fast.named_parameters(), slow.named_parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-4), name
    for (name, a), (_, b) in zip(fast.named_buffers(), slow.named_buffers(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    assert int(fast.edges[0].bn["nor_conv_3x3"].num_batches_tracked) == 1
