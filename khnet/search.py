"""Search the subnets of a trained supernet for the best under FLOPs / params / latency budgets.

Accuracies are supernet accuracies on the VALIDATION split (never the test set), taken from the results file
when present and otherwise evaluated on the fly: every isomorphism class within the budget when there are at
most ``max_evals`` of them, else regularized evolution (Real et al., 2019) with ``max_evals`` evaluations.
Costs come from the closed form; latency is measured on the named device and cached per device.
Isomorphic archs share an accuracy, so each class is represented by its cheapest member within the budget.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from khnet.errors import KhnetError, UsageError
from khnet.network import NB201Net
from khnet.space import NUM_EDGES, OP_NAMES, Arch, Cost, isomorphism_classes

if TYPE_CHECKING:
    from khnet.supernet import SuperNet

__all__ = [
    "BUDGET_NETWORKS",
    "Budget",
    "Candidate",
    "SearchResult",
    "SupernetEvaluator",
    "budget_shape",
    "cost_range",
    "measure_latency",
    "pareto_front",
    "parse_budgets",
    "parse_quantity",
    "search_budgets",
    "search_supernet",
    "supernet_evaluator",
]

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_quantity(text: str | float, name: str = "value") -> float:
    """``50M`` -> 5e7, ``5e7`` -> 5e7, ``0.5M`` -> 5e5, ``2`` -> 2 (k, M, G suffixes, any case)."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKmMgG]?)\s*", str(text))
        if not match:
            raise UsageError(f"{name} {text!r} is not a number: write e.g. 50M, 5e7 or 50000000")
        value = float(match.group(1)) * _SUFFIX[match.group(2).lower()]
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{name} {text!r} must be a positive, finite number: write e.g. 50M, 5e7 or 50000000")
    return value


@dataclass(frozen=True)
class Budget:
    """Upper bounds for one deployment target (None: unbounded).

    Attributes:
        max_mflops: MFLOPs per image (benchmark convention).
        max_mparams: millions of parameters.
        max_latency_ms: milliseconds per batch on the latency device.
    """

    max_mflops: float | None = None
    max_mparams: float | None = None
    max_latency_ms: float | None = None

    def admits_cost(self, cost: Cost) -> bool:
        """True when ``cost`` is within the FLOPs and params bounds."""
        return (self.max_mflops is None or cost.mflops <= self.max_mflops + 1e-9) and (
            self.max_mparams is None or cost.mparams <= self.max_mparams + 1e-12
        )

    def __str__(self) -> str:
        parts = []
        if self.max_mflops is not None:
            parts.append(f"<= {self.max_mflops:g} MFLOPs")
        if self.max_mparams is not None:
            parts.append(f"<= {self.max_mparams:g} M params")
        if self.max_latency_ms is not None:
            parts.append(f"<= {self.max_latency_ms:g} ms")
        return ", ".join(parts) or "no budget"


def parse_budgets(
    max_flops: Sequence[str] = (), max_params: Sequence[str] = (), max_latency_ms: Sequence[float] = ()
) -> list[Budget]:
    """Budgets from repeated options: each list holds one value for all budgets or one per budget.

    ``max_flops`` in FLOPs (``50M``, ``5e7``), ``max_params`` in parameters (``0.5M``), ``max_latency_ms``
    in milliseconds. No values at all give one unbounded budget.
    """
    lists = [list(max_flops), list(max_params), list(max_latency_ms)]
    count = max(1, *map(len, lists))
    for name, values in zip(("--max-flops", "--max-params", "--max-latency-ms"), lists, strict=True):
        if len(values) not in (0, 1, count):
            raise UsageError(f"{name} given {len(values)} times; give it once or once per budget ({count})")

    def pick(values: list, i: int):
        return values[i] if len(values) == count else (values[0] if values else None)

    budgets = []
    for i in range(count):
        flops, params, latency = pick(lists[0], i), pick(lists[1], i), pick(lists[2], i)
        if latency is not None and not (latency > 0 and latency < float("inf")):
            raise UsageError(f"--max-latency-ms {latency}: give a positive number of milliseconds")
        budgets.append(
            Budget(
                max_mflops=parse_quantity(flops, "--max-flops") / 1e6 if flops is not None else None,
                max_mparams=parse_quantity(params, "--max-params") / 1e6 if params is not None else None,
                max_latency_ms=latency,
            )
        )
    return budgets


@dataclass
class Candidate:
    """An arch with its costs and (once known) its supernet accuracy (percent) and latency (ms)."""

    arch: Arch
    iso_class: int
    cost: Cost
    accuracy: float | None = None
    latency_ms: float | None = None


@dataclass
class SearchResult:
    """The answer for one budget: ``winners`` best first, the Pareto front (accuracy vs MFLOPs, and latency
    when measured), how many classes were within the budget and how many were evaluated; ``cheapest`` is
    set when nothing meets the budget; ``binds`` is False when every isomorphism class fits the FLOPs/params
    bounds (the answer is then the unconstrained best, whatever the numbers say). ``strategy``: ``stored``
    (every feasible class was already evaluated, e.g. a zoo entry's shipped table), ``exhaustive``,
    ``evolution`` or ``none``."""

    budget: Budget
    winners: list[Candidate]
    pareto: list[Candidate]
    feasible_classes: int
    evaluated: int
    strategy: str
    cheapest: Candidate | None = None
    binds: bool = True


# ---------------------------------------------------------------- latency
def _cache_file() -> Path:
    from khnet.data import default_data_root

    return default_data_root().parent / "latency.json"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    import platform

    return f"cpu:{platform.processor() or platform.machine()}:{torch.get_num_threads()}threads"


def measure_latency(
    arch: Arch,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    num_classes: int = 10,
    C: int = 16,
    N: int = 5,
    resolution: int = 32,
    repeats: int = 20,
    cache: Path | None = None,
    remeasure: bool = False,
) -> float:
    """Median milliseconds of one eval-mode forward of ``NB201Net(arch)`` at ``batch_size`` on ``device``
    (after warm-up), cached in ``cache`` (default ``~/.cache/khnet/latency.json``) under the device name, its
    thread count (CPU), the batch, the network's shape and the torch version; ``remeasure`` ignores the cache."""
    device = torch.device(device)
    cache = cache or _cache_file()
    key = (
        f"{_device_name(device)}|torch{torch.__version__}|{arch.index}|b{batch_size}|c{num_classes}|C{C}|N{N}|"
        f"r{resolution}"
    )
    try:
        table = json.loads(cache.read_text()) if cache.is_file() else {}
    except json.JSONDecodeError:
        table = {}  # a damaged cache is measured anew
    if key in table and not remeasure:
        return float(table[key])
    net = NB201Net(arch, num_classes, C, N).to(device).eval()
    x = torch.randn(batch_size, 3, resolution, resolution, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 3):
            start = time.perf_counter()
            net(x)
            sync()
            if i >= 3:
                times.append((time.perf_counter() - start) * 1e3)
    latency = statistics.median(times)
    table[key] = latency
    from khnet.checkpoint import write_json

    write_json(cache, table)
    return latency


# ---------------------------------------------------------------- which network a budget applies to
BUDGET_NETWORKS = ("deployed", "benchmark")


def budget_shape(config, resolution: int, network: str = "deployed") -> dict:
    """``Arch.cost`` arguments of the network a budget refers to.

    ``deployed``: the supernet's own size (``config.channels``, ``config.cells_per_stage``), i.e. the subnet as
    ``khnet sample`` exports it; ``benchmark``: NAS-Bench-201's size (C=16, N=5), the network a researcher trains
    from scratch after ranking with a small supernet. ``resolution`` is the dataset's image size in pixels.
    """
    if network not in BUDGET_NETWORKS:
        raise UsageError(f"budget network {network!r}: choose deployed or benchmark")
    C, N = (config.channels, config.cells_per_stage) if network == "deployed" else (16, 5)
    return {"num_classes": config.num_classes, "resolution": resolution, "C": C, "N": N}


def cost_range(shape: dict) -> tuple[Cost, Cost]:
    """The cheapest and the dearest arch's cost (MFLOPs, M params) over all 15,625 archs at ``shape``."""
    costs = [arch.cost(**shape) for arch in Arch.all()]
    return min(costs, key=lambda c: (c.mflops, c.mparams)), max(costs, key=lambda c: (c.mflops, c.mparams))


# ---------------------------------------------------------------- search
def pareto_front(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Candidates not dominated in (higher accuracy, lower MFLOPs, lower latency when known), by MFLOPs."""
    pool = [c for c in candidates if c.accuracy is not None]

    def dominates(a: Candidate, b: Candidate) -> bool:
        la = a.latency_ms if a.latency_ms is not None and b.latency_ms is not None else 0.0
        lb = b.latency_ms if a.latency_ms is not None and b.latency_ms is not None else 0.0
        no_worse = a.accuracy >= b.accuracy and a.cost.mflops <= b.cost.mflops and la <= lb
        better = a.accuracy > b.accuracy or a.cost.mflops < b.cost.mflops or la < lb
        return no_worse and better

    if any(c.latency_ms is not None for c in pool):  # three criteria: the plain check (latency pools are small)
        front = [c for c in pool if not any(dominates(o, c) for o in pool if o is not c)]
        return sorted(front, key=lambda c: (c.cost.mflops, -c.accuracy))
    # two criteria, one sweep by cost (the pool can hold all 6,466 classes): a candidate is dominated exactly when
    # a cheaper one is at least as accurate, or one of the same cost is more accurate
    front, best_cheaper = [], float("-inf")
    ordered = sorted(pool, key=lambda c: (c.cost.mflops, -c.accuracy))
    for _, group in itertools.groupby(ordered, key=lambda c: c.cost.mflops):
        group = list(group)
        best = group[0].accuracy  # the group is sorted by accuracy, best first
        if best > best_cheaper:
            front += [c for c in group if c.accuracy == best]
            best_cheaper = best
    return front


def _member_costs(shape: dict) -> list[tuple[int, Arch, Cost]]:
    """(isomorphism class, arch, cost) for all 15,625 archs, computed once per search."""
    return [
        (members[0], arch, arch.cost(**shape))
        for members in isomorphism_classes().values()
        for arch in map(Arch.from_index, members)
    ]


def _feasible(budget: Budget, member_costs: list[tuple[int, Arch, Cost]]) -> dict[int, Candidate]:
    """Per isomorphism class, its cheapest member within the FLOPs/params bounds."""
    best: dict[int, Candidate] = {}
    for cls, arch, cost in member_costs:
        if budget.admits_cost(cost) and (cls not in best or cost.mflops < best[cls].cost.mflops):
            best[cls] = Candidate(arch, cls, cost)
    return best


def _mutate(arch: Arch, rng: random.Random) -> Arch:
    ops = list(arch.op_ids)
    edge = rng.randrange(NUM_EDGES)
    ops[edge] = rng.choice([k for k in range(len(OP_NAMES)) if k != ops[edge]])
    return Arch(tuple(ops))


def search_budgets(
    budgets: Sequence[Budget],
    evaluate: Callable[[list[Arch]], dict[int, float]],
    top: int = 10,
    max_evals: int = 300,
    seed: int = 0,
    latency: Callable[[Arch], float] | None = None,
    shape: dict | None = None,
    stored: Mapping[int, float] | None = None,
) -> list[SearchResult]:
    """The best archs for each budget.

    Args:
        budgets: one per deployment target.
        evaluate: archs -> {iso class: accuracy percent} (e.g. supernet accuracy on the valid split); it is
            only asked about classes it has not answered yet.
        top: winners per budget.
        max_evals: evaluate exhaustively when a budget admits at most this many classes, else run
            regularized evolution with this many evaluations.
        seed: seed of the evolution.
        latency: arch -> milliseconds, required when a budget bounds latency.
        shape: ``Arch.cost`` arguments (num_classes, resolution, C, N) of the network the budgets apply to
            (``budget_shape``).
        stored: accuracies already known per isomorphism class (stored results); a budget whose feasible
            classes are all known is answered from them alone, exhaustively, with no evaluation.
    """
    shape = shape or {}
    known: dict[int, float] = dict(stored or {})
    stored_classes = set(known)
    total_classes = len(isomorphism_classes())

    def ask(cands: list[Candidate]) -> None:
        missing = [c for c in cands if c.iso_class not in known]
        if missing:
            known.update(evaluate([c.arch for c in missing]))
        for c in cands:
            c.accuracy = known[c.iso_class]

    results = []
    member_costs = _member_costs(shape)
    for budget in budgets:
        if budget.max_latency_ms is not None and latency is None:
            raise KhnetError("a latency budget needs a device to measure on")
        feasible = _feasible(budget, member_costs)
        if not feasible:
            cls, arch, cost = min(member_costs, key=lambda m: (m[2].mflops, m[1].index))
            cheapest = Candidate(arch, cls, cost)
            results.append(SearchResult(budget, [], [], 0, 0, "none", cheapest=cheapest))
            continue
        pool = list(feasible.values())
        if all(c.iso_class in stored_classes for c in pool):
            ask(pool)
            evaluated, strategy = pool, "stored"
        elif len(pool) <= max_evals:
            ask(pool)
            evaluated, strategy = pool, "exhaustive"
        else:
            evaluated, strategy = _evolve(pool, feasible, ask, max_evals, seed, shape, budget), "evolution"
        ranked = sorted(evaluated, key=lambda c: (-c.accuracy, c.cost.mflops, c.arch.index))
        if budget.max_latency_ms is not None:
            winners = []
            for cand in ranked:  # measure lazily, best first, until enough winners are found
                cand.latency_ms = latency(cand.arch)
                if cand.latency_ms <= budget.max_latency_ms:
                    winners.append(cand)
                    if len(winners) == top:
                        break
            if not winners:
                fastest = min(ranked, key=lambda c: c.latency_ms if c.latency_ms is not None else float("inf"))
                results.append(SearchResult(budget, [], [], len(pool), len(evaluated), strategy, cheapest=fastest,
                                            binds=True))  # fmt: skip
                continue
            front_pool = [c for c in ranked if c.latency_ms is not None and c.latency_ms <= budget.max_latency_ms]
        else:
            winners, front_pool = ranked[:top], ranked
        binds = len(pool) < total_classes or budget.max_latency_ms is not None
        results.append(
            SearchResult(budget, winners, pareto_front(front_pool), len(pool), len(evaluated), strategy, binds=binds)
        )
    return results


def _evolve(pool, feasible, ask, max_evals, seed, shape, budget) -> list[Candidate]:
    """Regularized evolution over the feasible classes: population 32, tournaments of 8, one-edge mutations."""
    rng = random.Random(seed)
    keys = isomorphism_classes()
    population_size, tournament = min(32, max_evals), 8
    seen: dict[int, Candidate] = {}
    population: deque[Candidate] = deque()
    first = rng.sample(pool, population_size)
    ask(first)
    for c in first:
        seen[c.iso_class] = c
        population.append(c)
    tries = 0
    while len(seen) < max_evals and tries < 50 * max_evals:
        tries += 1
        parent = max(rng.sample(list(population), min(tournament, len(population))), key=lambda c: c.accuracy)
        child_arch = _mutate(parent.arch, rng)
        cls = keys[child_arch.unique_key][0]
        if cls not in feasible:
            continue
        child = seen.get(cls) or feasible[cls]
        if cls not in seen:
            ask([child])
            seen[cls] = child
        population.append(child)
        population.popleft()
    return list(seen.values())


class SupernetEvaluator:
    """``evaluate`` for ``search_budgets``: supernet accuracy (percent) per class on the VALIDATION split,
    stored in and reused from the results file, and read from ``shipped_results`` (a zoo entry's table).

    ``stored`` holds the accuracies already stored when it was made; pass it to ``search_budgets(stored=...)``
    so that budgets it covers are answered with no evaluation (and no data) at all. ``progress(done, total)``
    is called after each subnet a call evaluates.
    """

    def __init__(
        self,
        supernet: SuperNet,
        settings,
        results_dir: Path | None,
        shipped_results: Path | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        from khnet.checkpoint import state_hash
        from khnet.results import read_results

        if settings.split != "valid":
            raise UsageError(f"search ranks on the valid split, not {settings.split!r}: the test set is for reporting")
        self.supernet, self.settings = supernet, settings
        self.results_dir, self.shipped_results = results_dir, shipped_results
        self.model_hash = state_hash(supernet.state_dict())  # once: the supernet does not change during a search
        stores = [p for p in (shipped_results, results_dir) if p is not None]
        found = read_results(stores, self.model_hash, settings) if stores else {}
        self.stored: dict[int, float] = {cls: r["accuracy"] for cls, r in found.items()}
        self.progress = progress  # (done, total) of each call's fresh evaluations

    def __call__(self, archs: list[Arch]) -> dict[int, float]:
        from khnet.evaluate import evaluate_archs

        records = evaluate_archs(self.supernet, archs, self.settings, self.results_dir, model_hash=self.model_hash,
                                 shipped_results=self.shipped_results, progress=self.progress)  # fmt: skip
        return {r.iso_class: r.accuracy for r in records}


def supernet_evaluator(
    supernet: SuperNet, settings, results_dir: Path | None, shipped_results: Path | None = None
) -> SupernetEvaluator:
    """A ``SupernetEvaluator`` (kept for callers of the earlier function API)."""
    return SupernetEvaluator(supernet, settings, results_dir, shipped_results)


def search_supernet(
    supernet: SuperNet,
    budgets: Sequence[Budget],
    settings,
    *,
    results_dir: Path | None = None,
    shipped_results: Path | None = None,
    budget_net: str = "deployed",
    top: int = 10,
    max_evals: int = 300,
    seed: int = 0,
    device: str = "cpu",
    latency_batch: int = 1,
    remeasure: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[SearchResult], dict]:
    """``khnet search`` as a library call: the best subnets of ``supernet`` for each budget, ranked on
    ``settings`` (an ``EvalSettings``, normally the validation split), costs on the ``budget_net`` network
    (``budget_shape``), latencies measured on ``device`` (only for latency budgets), stored results reused
    from ``shipped_results`` and ``results_dir``. Returns the results and the cost shape the budgets used.

    Raises:
        UsageError: an unknown ``budget_net`` (from ``budget_shape``).
    """
    from khnet.data import dataset_info

    cfg = supernet.config
    shape = budget_shape(cfg, dataset_info(settings.dataset).resolution, budget_net)

    def latency(arch: Arch) -> float:
        return measure_latency(arch, device, latency_batch, cfg.num_classes, cfg.channels, cfg.cells_per_stage,
                               resolution=shape["resolution"], remeasure=remeasure)  # fmt: skip

    evaluator = SupernetEvaluator(supernet, settings, results_dir, shipped_results, progress=progress)
    results = search_budgets(budgets, evaluator, top, max_evals, seed, latency, shape, stored=evaluator.stored)
    return results, shape
