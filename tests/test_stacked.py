"""Many subnets per pass: StackedNets and evaluate_subnets equal the networks one by one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from khnet.config import SupernetConfig
from khnet.evaluate import evaluate_subnet, evaluate_subnets, recalibrate_bn
from khnet.network import NB201Net
from khnet.space import Arch
from khnet.stacked import StackedNets
from khnet.supernet import SuperNet

ARCHS = [
    Arch.from_index(6111),
    Arch.from_ops(["none"] * 6),  # every node zero: the output is lastact(0)
    Arch.from_ops(["nor_conv_1x1", "none", "none", "none", "none", "none"]),  # node 3 has no input
    Arch.from_ops(["skip_connect"] * 6),
    Arch.from_ops(["avg_pool_3x3", "nor_conv_3x3", "nor_conv_1x1", "none", "skip_connect", "avg_pool_3x3"]),
    Arch.from_index(11472),
]


def _nets(seed: int = 0, C: int = 4, N: int = 1) -> list[NB201Net]:
    torch.manual_seed(seed)
    nets = []
    for arch in ARCHS:
        net = NB201Net(arch, C=C, N=N)
        for m in net.modules():  # BatchNorm parameters and statistics that matter
            if isinstance(m, nn.BatchNorm2d):
                with torch.no_grad():
                    m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
                    m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2.0)
        nets.append(net)
    return nets


@pytest.mark.parametrize("channels_last", [False, True])
def test_stacked_nets_equal_the_nets_in_train_and_eval_mode(channels_last):
    nets = _nets()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    stacked = StackedNets(nets).to(memory_format=fmt)
    x = torch.randn(6, 3, 16, 16).contiguous(memory_format=fmt)
    for train in (False, True):
        stacked.train(train)
        logits = stacked(x)  # (B, G, classes)
        assert logits.shape == (6, len(nets), 10)
        for g, net in enumerate(nets):
            net.train(train)
            assert torch.allclose(logits[:, g], net(x), atol=1e-4), (train, ARCHS[g])


def test_stacked_recalibration_gives_each_net_its_own_statistics():
    nets = _nets(1)
    stacked = StackedNets(nets)
    calib = torch.randn(32, 3, 16, 16)
    recalibrate_bn(stacked, calib, 32)
    for net in nets:
        recalibrate_bn(net, calib, 32)
    stacked_norms = [m for m in stacked.modules() if isinstance(m, nn.BatchNorm2d)]
    for g, net in enumerate(nets):
        arch = ARCHS[g]
        norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        # stem, reductions, lastact and every conv edge of the net have a stacked counterpart at slot g
        for norm in norms:
            chs = norm.num_features
            matches = [
                s for s in stacked_norms
                if s.num_features == chs * len(nets)
                and torch.allclose(s.running_mean[g * chs : (g + 1) * chs], norm.running_mean, atol=1e-5)
                and torch.allclose(s.running_var[g * chs : (g + 1) * chs], norm.running_var, atol=1e-4)
            ]  # fmt: skip
            assert matches, (arch, chs)
    stacked.eval()
    x = torch.randn(5, 3, 16, 16)
    logits = stacked(x)
    for g, net in enumerate(nets):
        assert torch.allclose(logits[:, g], net.eval()(x), atol=1e-4)


def test_evaluate_subnets_equals_one_by_one():
    torch.manual_seed(0)
    supernet = SuperNet(SupernetConfig(channels=4, cells_per_stage=1)).eval()
    with torch.no_grad():
        for m in supernet.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
        supernet.classifier.weight.mul_(20)  # spread the logits so that accuracies differ between archs
    calib = torch.randn(64, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    images = torch.randn(200, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (200,))
    many = evaluate_subnets(supernet, ARCHS, calib, images, labels, batch_size=64)
    one = [evaluate_subnet(supernet, a, calib, images, labels, batch_size=64) for a in ARCHS]
    assert len({acc for acc, _ in one}) > 1  # the check can tell archs apart
    for (acc_m, loss_m), (acc_o, loss_o) in zip(many, one, strict=True):
        assert acc_m == pytest.approx(acc_o, abs=0.5 + 1e-9)  # at most one image of 200 on a float tie
        assert loss_m == pytest.approx(loss_o, rel=1e-4)


def test_stacked_nets_refuses_mixed_shapes():
    with pytest.raises(ValueError, match="differ"):
        StackedNets([NB201Net(0, C=4, N=1), NB201Net(0, C=8, N=1)])
    with pytest.raises(ValueError, match="at least one"):
        StackedNets([])
