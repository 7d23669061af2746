"""Samplers: strict fairness, the focus of Focus-Fair, reproducibility, bad input."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import torch

from khnet.errors import KhnetError
from khnet.samplers import draw_archs


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", ["focus-fair", "fairnas"])
def test_every_op_of_every_edge_runs_exactly_once(name):
    g = gen()
    beta = torch.randn(6, 5) * 3
    for _ in range(200):
        archs = draw_archs(name, beta, g)
        assert len(archs) == 5
        for edge in range(6):
            assert sorted(a.op_ids[edge] for a in archs) == [0, 1, 2, 3, 4]


def test_focus_follows_beta():
    """With peaked beta, the first draw's op per edge follows softmax(beta / tau) (the paper's example)."""
    probs = torch.tensor([0.05, 0.1, 0.15, 0.2, 0.5])
    beta = probs.log().repeat(6, 1) * 1.5  # softmax(beta / 1.5) == probs on every edge
    g, n = gen(1), 6000
    first = Counter()
    pairs = Counter()
    for _ in range(n):
        archs = draw_archs("focus-fair", beta, g, tau=1.5)
        first.update([archs[0].op_ids[0]])
        pairs.update([(archs[0].op_ids[0], archs[0].op_ids[1])])
    freq = torch.tensor([first[k] / n for k in range(5)])
    assert torch.allclose(freq, probs, atol=0.02)
    # the most likely combination is drawn about 0.5 * 0.5 of the time, 6x the uniform 1/25
    assert abs(pairs[(4, 4)] / n - 0.25) < 0.02
    fair = Counter(draw_archs("fairnas", beta, g)[0].op_ids[0] for _ in range(3000))
    assert max(fair.values()) / 3000 < 0.24  # FairNAS ignores beta


def test_second_draw_is_renormalised_over_the_rest():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.1, 0.3])
    beta = probs.log().repeat(6, 1)
    g, n = gen(2), 8000
    second_given_first4 = Counter()
    count = 0
    for _ in range(n):
        archs = draw_archs("focus-fair", beta, g, tau=1.0)
        if archs[0].op_ids[0] == 4:
            count += 1
            second_given_first4.update([archs[1].op_ids[0]])
    expected = probs[:4] / probs[:4].sum()
    observed = torch.tensor([second_given_first4[k] / count for k in range(4)])
    assert torch.allclose(observed, expected, atol=0.03)


def test_uniform_and_reproducibility():
    archs = draw_archs("uniform", torch.zeros(6, 5), gen(3), num=7)
    assert len(archs) == 7
    for name in ("focus-fair", "fairnas", "uniform"):
        a = draw_archs(name, torch.randn(6, 5, generator=gen(9)), gen(5))
        b = draw_archs(name, torch.randn(6, 5, generator=gen(9)), gen(5))
        assert a == b
    ops = Counter(
        itertools.chain.from_iterable(a.op_ids for _ in range(300) for a in draw_archs("uniform", None, gen(_)))
    )
    assert min(ops.values()) > 0.15 * sum(ops.values())


def test_bad_input():
    with pytest.raises(KhnetError, match="unknown sampler 'spos'"):
        draw_archs("spos", torch.zeros(6, 5), gen())
    with pytest.raises(KhnetError, match="not 6"):
        draw_archs("fairnas", torch.zeros(6, 5), gen(), num=6)
    with pytest.raises(KhnetError, match="tau=0"):
        draw_archs("focus-fair", torch.zeros(6, 5), gen(), tau=0)
