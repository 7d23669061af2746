"""Rank metrics against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from khnet.metrics import average_ranks, kendall_tau, spearman_rho, top_k_overlap


def test_hand_computed_values():
    x, y = [1, 2, 3, 4, 5], [5, 6, 7, 8, 7]
    # 8 concordant, 1 discordant, 1 pair tied in y: tau-b = 7 / sqrt(10 * 9)
    assert kendall_tau(x, y) == pytest.approx(7 / math.sqrt(90))
    # ranks of y: 1, 2, 3.5, 5, 3.5 -> cov 8, var 10 and 9.5
    assert spearman_rho(x, y) == pytest.approx(8 / math.sqrt(95))
    assert average_ranks(y) == [1, 2, 3.5, 5, 3.5]


def test_extremes_and_ties():
    a = list(range(20))
    assert kendall_tau(a, a) == pytest.approx(1) and spearman_rho(a, a) == pytest.approx(1)
    assert kendall_tau(a, a[::-1]) == pytest.approx(-1) and spearman_rho(a, a[::-1]) == pytest.approx(-1)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3])) and math.isnan(spearman_rho([1, 1, 1], [1, 2, 3]))
    # x ties and y ties both: pairs (1,2) tie in x, (3,4) tie in y; 4 concordant, 0 discordant
    assert kendall_tau([1, 1, 2, 3], [1, 2, 3, 3]) == pytest.approx(4 / math.sqrt(5 * 5))


def test_top_k_overlap():
    assert top_k_overlap([9, 8, 7, 1, 0], [9, 1, 7, 8, 0], 2) == 0.5
    assert top_k_overlap([1, 2, 3], [1, 2, 3], 10) == 1.0
    with pytest.raises(ValueError, match="length"):
        kendall_tau([1, 2], [1])
