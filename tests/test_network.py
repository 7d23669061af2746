"""NB201Net: the benchmark's network exactly (keys, logits, costs), with `none` edges never computed."""

from __future__ import annotations

import random

import pytest
import torch

from khnet.cost import count_cost
from khnet.network import NB201Net
from khnet.ops import Zero
from khnet.space import Arch

BEST = Arch.from_index(6111)
ALL_NONE = Arch.from_ops(["none"] * 6)
DISCONNECTED = Arch.parse("|none~0|+|none~0|nor_conv_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|")
SAMPLE = [BEST, ALL_NONE, DISCONNECTED, Arch.from_index(0)] + [Arch.random(random.Random(s)) for s in range(12)]


@pytest.mark.parametrize("arch", SAMPLE, ids=str)
def test_parameter_count_and_flops_equal_closed_form(arch):
    for classes, res in ((10, 32), (100, 32), (120, 16)):
        net = NB201Net(arch, num_classes=classes)
        expected = arch.cost(num_classes=classes, resolution=res)
        assert sum(p.numel() for p in net.parameters()) == round(expected.mparams * 1e6)
        counted = count_cost(net, (2, 3, res, res))
        assert counted.mparams == pytest.approx(expected.mparams, abs=1e-12)
        assert counted.mflops == pytest.approx(expected.mflops, abs=1e-9)


def test_other_widths_match_closed_form():
    arch = Arch.random(random.Random(3))
    net = NB201Net(arch, num_classes=7, C=8, N=2)
    assert count_cost(net, (1, 3, 24, 24)) == pytest.approx(arch.cost(num_classes=7, resolution=24, C=8, N=2))


def test_forward_shapes_and_features():
    net = NB201Net(BEST).eval()
    x = torch.randn(3, 3, 32, 32)
    logits = net(x)
    assert logits.shape == (3, 10)
    assert net.forward_features(x).shape == (3, 64)
    assert torch.equal(net.forward_head(net.forward_features(x)), logits)


@pytest.mark.parametrize("arch", [ALL_NONE, DISCONNECTED, Arch.random(random.Random(5))], ids=str)
def test_none_edges_are_never_computed(arch):
    net = NB201Net(arch)
    calls = []
    for module in net.modules():
        if isinstance(module, Zero):
            module.register_forward_hook(lambda *args: calls.append(1))
    net(torch.randn(2, 3, 32, 32)).sum().backward()
    assert calls == []


def test_state_dict_keys_follow_the_reference_layout():
    keys = set(NB201Net(BEST).state_dict())
    assert {"stem.0.weight", "stem.1.running_var", "lastact.0.weight", "classifier.weight", "classifier.bias"} <= keys
    assert "cells.0.layers.0.op.1.weight" in keys and "cells.0.layers.5.op.2.bias" in keys
    assert not any(k.startswith("cells.0.layers.3.") for k in keys)  # skip_connect: no parameters
    assert {"cells.5.conv_a.op.1.weight", "cells.11.conv_b.op.2.weight", "cells.5.downsample.1.weight"} <= keys
    assert len(NB201Net(BEST).cells) == 17


@pytest.mark.parametrize("arch", SAMPLE[:8], ids=str)
def test_matches_the_benchmark_reference_network(arch):
    """The reference TinyNetwork (xautodl, the benchmark authors' code) loads our weights and agrees."""
    tiny_network = pytest.importorskip("xautodl.models.cell_infers.tiny_network")
    genotypes = pytest.importorskip("xautodl.models.cell_searchs.genotypes")
    torch.manual_seed(0)
    ours = NB201Net(arch)
    _randomize(ours)  # non-trivial BN statistics and affine parameters
    ref = tiny_network.TinyNetwork(16, 5, genotypes.Structure.str2structure(str(arch)), 10)
    ref.load_state_dict(ours.state_dict(), strict=True)
    assert list(ref.state_dict()) == list(ours.state_dict())
    x = torch.randn(4, 3, 32, 32)
    for train in (False, True):
        ours.train(train), ref.train(train)
        with torch.no_grad():
            features, logits = ref(x)
            assert torch.allclose(ours(x), logits, atol=1e-5, rtol=1e-5)
            assert torch.allclose(ours.forward_features(x), features, atol=1e-5, rtol=1e-5)


def test_accepts_strings_and_indices():
    assert NB201Net(6111).arch == NB201Net(str(BEST)).arch == BEST
    assert "arch=" in repr(NB201Net(BEST))


@pytest.mark.parametrize("arch", SAMPLE[:5], ids=str)
def test_fold_bn_preserves_outputs(arch):
    from khnet.network import fold_bn

    torch.manual_seed(0)
    net = NB201Net(arch)
    _randomize(net)  # non-trivial BN statistics and affine parameters
    net.eval()
    folded = fold_bn(net)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(folded(x), net(x), atol=1e-4, rtol=1e-4)
    remaining = [m for m in folded.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(remaining) == 1  # lastact's, which follows a sum


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 5, 1, 1), (2, 4, 2, 7), (3, 16, 9, 5)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_avg_pool_3x3_equals_the_benchmarks_pooling(shape, channels_last):
    """The depthwise-convolution pooling equals nn.AvgPool2d(3, 1, 1, count_include_pad=False), with its
    gradient, at every border shape, and keeps the memory format."""
    import torch.nn.functional as F

    from khnet.ops import avg_pool_3x3

    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(*shape).contiguous(memory_format=fmt).requires_grad_()
    ref_x = x.detach().clone().requires_grad_()
    out, ref = avg_pool_3x3(x), F.avg_pool2d(ref_x, 3, 1, 1, count_include_pad=False)
    assert torch.allclose(out, ref, atol=1e-6) and out.is_contiguous(memory_format=fmt)
    g = torch.randn_like(ref)
    out.backward(g), ref.backward(g)
    assert torch.allclose(x.grad, ref_x.grad, atol=1e-6)
    scale = torch.tensor(0.3)
    assert torch.allclose(avg_pool_3x3(x, scale), 0.3 * ref, atol=1e-6)


def test_benchmark_trained_weights_load_into_nb201net():
    """A TinyNetwork's state_dict (what nas_201_api's get_net_param returns) becomes an NB201Net with the same
    logits; C, N and classes come from the tensors; weights of another arch are refused."""
    tiny_network = pytest.importorskip("xautodl.models.cell_infers.tiny_network")
    genotypes = pytest.importorskip("xautodl.models.cell_searchs.genotypes")
    torch.manual_seed(0)
    arch = Arch.from_index(6111)
    ref = tiny_network.TinyNetwork(8, 2, genotypes.Structure.str2structure(str(arch)), 100).eval()
    _randomize(ref)  # non-trivial BN statistics and affine parameters
    ours = NB201Net.from_reference_state_dict(arch, ref.state_dict()).eval()
    assert (ours.C, ours.N, ours.num_classes) == (8, 2, 100)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x)[1], atol=1e-5)
    with pytest.raises(ValueError, match="not a TinyNetwork of"):
        NB201Net.from_reference_state_dict("|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|none~2|", ref.state_dict())
    with pytest.raises(ValueError, match=r"no stem\.0\.weight"):
        NB201Net.from_reference_state_dict(arch, {})


@torch.no_grad()
def _randomize(net: torch.nn.Module) -> None:
    for name, tensor in net.state_dict().items():
        if "running_var" in name:
            tensor.copy_(torch.rand_like(tensor) + 0.5)
        elif tensor.is_floating_point():
            tensor.copy_(torch.randn_like(tensor) * 0.3)
