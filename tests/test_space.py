"""The search space against the benchmark: strings, indices, isomorphism, costs, and bad input."""

from __future__ import annotations

import random
import re
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from khnet.benchmark import ShippedGroundTruth
from khnet.errors import ArchError, KhnetError
from khnet.space import EDGES, NUM_ARCHS, OP_NAMES, Arch, edge_index, isomorphism_classes

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def partition(keys: list) -> set[frozenset[int]]:
    groups: dict[object, set[int]] = defaultdict(set)
    for index, key in enumerate(keys):
        groups[key].add(index)
    return {frozenset(g) for g in groups.values()}


# ------------------------------------------------------------------ against the benchmark table
def test_all_archs_against_shared_table(nb201_rows):
    archs = list(Arch.all())
    assert len(archs) == len(nb201_rows) == NUM_ARCHS
    for i, (arch, row) in enumerate(zip(archs, nb201_rows, strict=True)):
        assert int(row["arch_index"]) == i
        assert str(arch) == row["arch"]  # canonical string and index order
        assert Arch.parse(row["arch"]) == arch == Arch.from_index(i)
        assert arch.index == i
        assert arch.unique_key == row["unique_str"]  # the benchmark's own key, character for character
        for classes, res, tag in ((10, 32, "c10"), (100, 32, "c100"), (120, 16, "in16")):
            cost = arch.cost(num_classes=classes, resolution=res)
            assert cost.mparams == pytest.approx(float(row[f"params_{tag}_mb"]), abs=5e-7), (i, tag)
            assert cost.mflops == pytest.approx(float(row[f"flops_{tag}_m_calc"]), abs=5e-6), (i, tag)
    assert partition([a.unique_key for a in archs]) == partition([r["unique_str"] for r in nb201_rows])


def test_all_archs_against_shipped_table():
    gt = ShippedGroundTruth.load()
    archs = list(Arch.all())
    assert len(set(archs)) == NUM_ARCHS
    assert partition([a.unique_key for a in archs]) == partition(list(gt.iso_class))
    assert len(isomorphism_classes()) == 6466
    published_flops_differ = 0
    for i, arch in enumerate(archs):
        cost = arch.cost()
        assert cost.mparams == pytest.approx(gt.columns["params_c10_mb"][i], abs=5e-7)
        published_flops_differ += abs(cost.mflops - gt.columns["flops_c10_m"][i]) > 5e-6
    assert published_flops_differ == 204  # the benchmark's records average some twins' FLOPs (data README)


def test_zero_output_cells():
    disconnected = [a for a in Arch.all() if a.is_disconnected]
    assert len(disconnected) == 341
    # the benchmark's key marks many (not all) of them as zero: '#' terms only
    assert all(a.is_disconnected for a in Arch.all() if set(a.unique_key) <= {"#", "+"})
    assert not Arch.parse(BEST).is_disconnected


def test_documented_examples():
    best = Arch.parse(BEST)
    assert best.index == 6111
    assert best.cost().mflops == pytest.approx(153.27297, abs=1e-9)
    assert best.cost().mparams == pytest.approx(1.073466, abs=1e-12)
    second = Arch.parse(BEST.replace("nor_conv_1x1~2", "nor_conv_3x3~2"))
    assert second.index == 9930
    assert (second.cost().mflops, second.cost().mparams) == pytest.approx((184.73025, 1.288506))
    all_conv = Arch.from_ops(["nor_conv_3x3"] * 6)
    assert (all_conv.cost().mflops, all_conv.cost().mparams) == pytest.approx((220.11969, 1.531546))
    all_none = Arch.from_ops(["none"] * 6)
    assert (all_none.cost().mflops, all_none.cost().mparams) == pytest.approx((7.78305, 0.073306))
    assert all_none.cost(num_classes=100).mparams == pytest.approx(0.079156)
    assert all_none.cost(num_classes=120, resolution=16).mflops == pytest.approx(1.95340)
    assert str(Arch.from_index(0)) == (
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
    )


# ------------------------------------------------------------------ the value type
def test_edges_and_ops_order():
    assert OP_NAMES == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
    assert [edge_index(j, i) for j, i in EDGES] == list(range(6))
    arch = Arch.parse(BEST)
    assert arch.ops == ("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3", "nor_conv_1x1")
    assert Arch.from_ops(arch.ops) == arch


def test_entries_in_any_order_are_canonicalised():
    shuffled = "|nor_conv_3x3~0|+|nor_conv_3x3~1|nor_conv_3x3~0|+|nor_conv_1x1~2|skip_connect~0|nor_conv_3x3~1|"
    assert str(Arch.parse(shuffled)) == BEST
    assert Arch.parse(f"  {BEST}\n") == Arch.parse(BEST)


def test_value_semantics():
    a, b = Arch.parse(BEST), Arch.from_index(6111)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.op_ids = (0,) * 6  # frozen
    assert eval(repr(a), {"Arch": Arch}) == a
    assert Arch.coerce(6111) == Arch.coerce("6111") == Arch.coerce(BEST) == Arch.coerce(a) == a


def test_random_is_reproducible():
    draws = [Arch.random(random.Random(7)) for _ in range(2)]
    assert draws[0] == draws[1]
    assert len({Arch.random(random.Random(s)) for s in range(50)}) > 40


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("text", "token", "position"),
    [
        ("|conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "conv_3x3", 2),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_5x5~2|", "nor_conv_5x5", 41),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "~1", 6),
        ("|none~0|+|none~0|none~x|+|none~0|none~1|none~2|", "~x", 22),
        ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "~0", 22),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~-2|", "~-2", 45),
        ("|none~0|+|none~0|none|+|none~0|none~1|none~2|", "'none'", 18),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2", 10),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1", 1),
    ],
)
def test_malformed_strings_name_token_and_position(text, token, position):
    with pytest.raises(ArchError) as err:
        Arch.parse(text)
    message = str(err.value)
    assert token in message
    assert f"position {position}" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("|none~0|+|none~0|none~1|", "2 node(s)"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+|none~0|", "4 node(s)"),
        (15625, "out of range"),
        (-1, "out of range"),
        (True, "cannot read"),
        (3.5, "cannot read"),
        (None, "cannot read"),
    ],
)
def test_bad_values(value, expected):
    with pytest.raises(ArchError, match=re.escape(expected)):
        Arch.coerce(value)


def test_bad_construction_and_cost_arguments():
    with pytest.raises(ArchError, match="op id 5"):
        Arch((0, 0, 0, 0, 0, 5))
    with pytest.raises(ArchError, match="6 op ids"):
        Arch((0, 0))
    with pytest.raises(ArchError, match="unknown op 'conv'"):
        Arch.from_ops(["conv"] * 6)
    with pytest.raises(ArchError, match="multiple of 4"):
        Arch.from_index(0).cost(resolution=30)
    with pytest.raises(ArchError, match="num_classes=0"):
        Arch.from_index(0).cost(num_classes=0)
    with pytest.raises(ArchError, match="no edge 1<-2"):
        edge_index(1, 2)
    assert issubclass(ArchError, KhnetError) and issubclass(ArchError, ValueError)


ARCHY = st.text(alphabet="|+~0123 nonekipcvrus_x1", max_size=80)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=60), ARCHY))
def test_random_strings_parse_or_raise_arch_error(text):
    try:
        arch = Arch.parse(text)
    except ArchError as err:
        assert str(err) and "\n" not in str(err)
    else:
        assert Arch.parse(str(arch)) == arch


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(OP_NAMES), min_size=6, max_size=6), st.randoms(use_true_random=False))
def test_shuffled_valid_strings_round_trip(ops, rnd):
    arch = Arch.from_ops(ops)
    nodes = [list(node) for node in arch.nodes]
    for node in nodes:
        rnd.shuffle(node)
    text = "+".join("|" + "|".join(f"{op}~{i}" for op, i in node) + "|" for node in nodes)
    assert Arch.parse(text) == arch
