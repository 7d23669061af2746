"""The shipped ground truth reproduces the benchmark's facts; the official-file path maps queries right."""

from __future__ import annotations

import statistics

import pytest

from khnet.benchmark import (
    SPLITS,
    OfficialGroundTruth,
    ShippedGroundTruth,
    describe_arch,
    load_ground_truth,
    normalize_dataset,
)
from khnet.errors import GroundTruthError
from khnet.space import NUM_ARCHS, Arch


@pytest.fixture(scope="module")
def gt() -> ShippedGroundTruth:
    return ShippedGroundTruth.load()


def test_paper_baselines(gt):
    c10 = gt.all_accuracies("cifar10", "test")
    c100 = gt.all_accuracies("cifar100", "test")
    assert len(c10) == NUM_ARCHS
    assert round(statistics.fmean(c10), 2) == 87.06 and round(max(c10), 2) == 94.37
    assert round(statistics.fmean(c100), 2) == 61.41 and round(max(c100), 2) == 73.51
    assert c10.index(max(c10)) == 6111


def test_unique_means(gt):
    first = {}
    for index, arch in enumerate(Arch.all()):
        first.setdefault(arch.unique_key, index)
    c10 = [gt.accuracy(i) for i in first.values()]
    assert round(statistics.fmean(c10), 2) == 89.76  # over the 6,466 unique archs (data README)


def test_best_arch_record(gt):
    assert gt.accuracy(6111) == pytest.approx(94.373333)
    assert gt.accuracy("6111", "CIFAR-10", "test", 200) == gt.accuracy(Arch.from_index(6111))
    valid, test = gt.accuracy(6111, "cifar100", "valid"), gt.accuracy(6111, "cifar100", "test")
    assert gt.accuracy(6111, "cifar100", "ori-test") == pytest.approx((valid + test) / 2)
    assert gt.accuracy(6111, "cifar100", "x-test") == test
    assert gt.accuracy(6111, "imagenet16", "valid", epochs=12) == pytest.approx(
        gt.columns["imagenet16_valid_12ep"][6111]
    )
    assert gt.published_cost(6111) == pytest.approx((153.27297, 1.073466))


def test_against_shared_table(gt, nb201_rows):
    for dataset, split, column in [
        ("cifar10", "test", "cifar10_test"),
        ("cifar10-valid", "valid", "cifar10_valid_valid"),
        ("cifar100", "ori-test", "cifar100_ori_test"),
        ("imagenet16-120", "ori-test", "imagenet16_ori_test"),
        ("imagenet16-120", "test", "imagenet16_test"),
    ]:
        ours = gt.all_accuracies(dataset, split)
        for i in range(0, NUM_ARCHS, 7):
            assert ours[i] == pytest.approx(float(nb201_rows[i][column]), abs=1e-5), (dataset, split, i)
    assert gt.accuracy(77, "cifar100", "test", epochs=12) == pytest.approx(float(nb201_rows[77]["cifar100_test_12ep"]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("mnist", None, 200), "unknown benchmark dataset 'mnist'"),
        (("cifar10", "valid", 200), "no split 'valid'"),
        (("cifar100", None, 100), "100 epochs"),
    ],
)
def test_bad_queries(gt, args, message):
    with pytest.raises(GroundTruthError, match=message):
        gt.accuracy(0, *args)


def test_official_file_path_maps_queries():
    calls = []

    class FakeAPI:  # the shape of nas_201_api's get_more_info answer, and the dataset names it accepts
        def get_more_info(self, index, dataset, hp, is_random):
            assert dataset in ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120"), dataset
            calls.append((index, dataset, hp, is_random))
            return {"valid-accuracy": 1.0, "test-accuracy": 2.0, "valtest-accuracy": 3.0}

    official = OfficialGroundTruth("NAS-Bench-201-v1_1-096897.pth", api=FakeAPI())
    assert official.accuracy(6111) == 2.0
    assert official.accuracy(5, "cifar10-valid") == 1.0
    assert official.accuracy(5, "cifar100", "ori-test", epochs=12) == 3.0
    assert official.accuracy(7, "imagenet16-120", "valid") == 1.0
    assert calls == [
        (6111, "cifar10", "200", False), (5, "cifar10-valid", "200", False), (5, "cifar100", "12", False),
        (7, "ImageNet16-120", "200", False),
    ]  # fmt: skip
    with pytest.raises(GroundTruthError, match="not found"):
        load_ground_truth("/nonexistent/NAS-Bench-201.pth")


def test_describe_arch():
    info = describe_arch(6111)
    assert info["index"] == 6111 and info["iso_members"] == [6111]
    assert info["cost"]["cifar10"] == {"mflops": 153.27297, "mparams": 1.073466}
    assert info["accuracy"]["cifar10/test"]["200ep"] == pytest.approx(94.3733)
    assert set(info["accuracy"]) == {f"{d}/{s}" for d, ss in SPLITS.items() for s in ss}
    twins = describe_arch("|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert len(twins["iso_members"]) > 1 and twins["iso_class"] == min(twins["iso_members"])
    assert normalize_dataset("ImageNet16-120") == "imagenet16-120"


def test_nats_bench_topology_files_are_read_with_nats_bench(tmp_path, monkeypatch):
    """A NATS-tss file or folder goes to nats_bench.create(path, 'tss', fast_mode=True): same indices, same
    answer keys, the API's own dataset names; without the package, a one-line error naming the extra."""
    import sys
    import types

    created = []

    class FakeNATS:
        def get_more_info(self, index, dataset, hp, is_random):
            assert dataset in ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120"), dataset
            return {"valid-accuracy": 10.0 + index, "test-accuracy": 20.0, "valtest-accuracy": 30.0}

    def create(path, space, fast_mode=False, verbose=True):
        created.append((path, space, fast_mode))
        return FakeNATS()

    folder = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    folder.mkdir()
    monkeypatch.setitem(sys.modules, "nats_bench", types.SimpleNamespace(create=create))
    official = load_ground_truth(folder)
    assert created == [(str(folder), "tss", True)] and "NATS-Bench" in official.source
    assert official.accuracy(5, "imagenet16-120", "valid") == 15.0 and official.accuracy(5) == 20.0
    monkeypatch.setitem(sys.modules, "nats_bench", None)  # not installed
    with pytest.raises(GroundTruthError, match=r"pip install 'khnet\[benchmark\]'"):
        load_ground_truth(folder)
