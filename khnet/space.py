"""The NAS-Bench-201 search space, exactly as the benchmark defines it. No torch here.

A cell has 4 nodes; node 0 is the cell input and node j sums ``op_{j<-i}(node i)`` over i < j. Its six
edges, in the canonical order used everywhere in khnet (index ``j*(j-1)/2 + i``)::

    0: 1<-0   1: 2<-0   2: 2<-1   3: 3<-0   4: 3<-1   5: 3<-2

Each edge carries one of the five ops in ``OP_NAMES`` (the benchmark's op order), so the space holds
5**6 = 15,625 architectures, written as ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.

Library functions take an ``Arch``. Strings and benchmark indices (``ArchLike``) are read by ``Arch.coerce``
at the edges only: the CLI, and the entry points a user starts from with a benchmark arch in hand,
``NB201Net(arch)``, ``SuperNet.subnet(arch)``, ``train_from_scratch(arch, ...)`` and the ground-truth lookups
(``GroundTruth.accuracy``, ``published_cost``, ``arch_info``).
"""

from __future__ import annotations

import random
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import pairwise

from khnet.errors import ArchError, UsageError

__all__ = [
    "CONV_OPS",
    "EDGES",
    "NUM_ARCHS",
    "NUM_EDGES",
    "NUM_NODES",
    "OP_NAMES",
    "Arch",
    "ArchError",
    "ArchLike",
    "Cost",
    "edge_index",
    "isomorphism_classes",
    "stratified_sample",
]

OP_NAMES: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_NODES = 4
EDGES: tuple[tuple[int, int], ...] = tuple((j, i) for j in range(1, NUM_NODES) for i in range(j))  # (to, from)
NUM_EDGES = len(EDGES)  # 6
NUM_ARCHS = len(OP_NAMES) ** NUM_EDGES  # 15,625
_OP_ID = {name: k for k, name in enumerate(OP_NAMES)}
_FORMAT_HINT = "expected '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' with ops from " + ", ".join(OP_NAMES)
CONV_OPS: dict[str, int] = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}  # the conv ops and their kernel sizes


def edge_index(to_node: int, from_node: int) -> int:
    """Canonical index (0..5) of the edge ``to_node <- from_node``."""
    if not 0 <= from_node < to_node < NUM_NODES:
        raise ArchError(f"no edge {to_node}<-{from_node}: need 0 <= from < to <= {NUM_NODES - 1}")
    return to_node * (to_node - 1) // 2 + from_node


@dataclass(frozen=True)
class Cost:
    """Cost of one standalone network in the benchmark's convention.

    Attributes:
        mflops: multiply-adds of Conv2d and Linear layers (bias adds included) per image, in millions.
        mparams: number of parameters (BatchNorm weight and bias included, buffers not), in millions.
    """

    mflops: float
    mparams: float


@cache
def _index_order() -> tuple[tuple[int, ...], dict[int, int]]:
    """Benchmark index -> base-5 code and its inverse, from the table shipped in ``khnet/_data``."""
    codes = array("H")
    codes.frombytes(resources.files("khnet").joinpath("_data/nb201_order.u16").read_bytes())
    if sys.byteorder != "little":  # the file is little-endian
        codes.byteswap()
    if codes.itemsize != 2 or len(codes) != NUM_ARCHS:  # pragma: no cover - a broken install
        raise RuntimeError("khnet/_data/nb201_order.u16 is damaged; reinstall khnet")
    order = tuple(codes)
    return order, {code: index for index, code in enumerate(order)}


def _code(op_ids: tuple[int, ...]) -> int:
    code = 0
    for op in op_ids:
        code = code * len(OP_NAMES) + op
    return code


def _from_code(code: int) -> tuple[int, ...]:
    digits = []
    for _ in range(NUM_EDGES):
        code, op = divmod(code, len(OP_NAMES))
        digits.append(op)
    return tuple(reversed(digits))


@dataclass(frozen=True, order=True)
class Arch:
    """One NAS-Bench-201 cell architecture: an immutable, hashable value.

    Build one with ``Arch.parse(string)``, ``Arch.from_index(i)`` or ``Arch.from_ops(names)``.

    Attributes:
        op_ids: the six op ids (indices into ``OP_NAMES``) in canonical edge order.
    """

    op_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        ids = self.op_ids
        if not isinstance(ids, tuple) or len(ids) != NUM_EDGES:
            raise ArchError(f"an Arch needs {NUM_EDGES} op ids in canonical edge order, got {ids!r}")
        for edge, op in enumerate(ids):
            if isinstance(op, bool) or not isinstance(op, int) or not 0 <= op < len(OP_NAMES):
                raise ArchError(f"op id {op!r} on edge {edge} is not in 0..{len(OP_NAMES) - 1}")

    # ---------------------------------------------------------------- construction
    @classmethod
    def parse(cls, text: str) -> Arch:
        """Read an NB201 arch string; entries of a node may come in any order.

        Raises:
            ArchError: naming the bad token and its 1-based character position.
        """
        if not isinstance(text, str):
            raise ArchError(f"an arch string must be a str, got {type(text).__name__} {text!r}")
        if not text.strip():
            raise ArchError(f"empty architecture string; {_FORMAT_HINT}")
        groups: list[tuple[int, str]] = []  # (start offset, text) of each '+'-separated node
        start = 0
        for part in text.split("+"):
            groups.append((start, part))
            start += len(part) + 1
        if len(groups) != NUM_NODES - 1:
            raise ArchError(f"{len(groups)} node(s) in {text!r}, need {NUM_NODES - 1} separated by '+'; {_FORMAT_HINT}")
        op_ids: dict[int, int] = {}
        for node, (offset, group) in enumerate(groups, start=1):
            lead = len(group) - len(group.lstrip())
            body = group.strip()
            pos = offset + lead + 1  # 1-based position of the group's first character
            if not (body.startswith("|") and body.endswith("|") and len(body) >= 2):
                raise ArchError(
                    f"node {node} {body!r} at position {pos} must be written '|op~i|...|' between pipes; {_FORMAT_HINT}"
                )
            entries = body[1:-1].split("|")
            if len(entries) != node:
                raise ArchError(
                    f"node {node} {body!r} at position {pos} has {len(entries)} input(s), "
                    f"need {node} (one from each of nodes 0..{node - 1})"
                )
            seen: set[int] = set()
            epos = pos + 1
            for entry in entries:
                op_name, sep, src = entry.partition("~")
                if not sep:
                    raise ArchError(f"entry {entry!r} at position {epos} of node {node} must be 'op~input'")
                if op_name not in _OP_ID:
                    raise ArchError(
                        f"unknown op {op_name!r} at position {epos} of node {node}; valid ops: " + ", ".join(OP_NAMES)
                    )
                spos = epos + len(op_name)  # the '~'
                if not (src.isascii() and src.isdigit()) or int(src) >= node:
                    raise ArchError(
                        f"bad input node '~{src}' at position {spos} of node {node}: must be an integer "
                        f"in 0..{node - 1}"
                    )
                if int(src) in seen:
                    raise ArchError(
                        f"input node '~{src}' at position {spos} appears twice in node {node}; "
                        f"each of nodes 0..{node - 1} feeds node {node} exactly once"
                    )
                seen.add(int(src))
                op_ids[edge_index(node, int(src))] = _OP_ID[op_name]
                epos += len(entry) + 1
        return cls(tuple(op_ids[e] for e in range(NUM_EDGES)))

    @classmethod
    def from_ops(cls, op_names: list[str] | tuple[str, ...]) -> Arch:
        """Build from six op names in canonical edge order (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2)."""
        if len(op_names) != NUM_EDGES:
            raise ArchError(f"need {NUM_EDGES} op names in canonical edge order, got {len(op_names)}")
        for edge, name in enumerate(op_names):
            if name not in _OP_ID:
                raise ArchError(f"unknown op {name!r} on edge {edge}; valid ops: " + ", ".join(OP_NAMES))
        return cls(tuple(_OP_ID[name] for name in op_names))

    @classmethod
    def from_index(cls, index: int) -> Arch:
        """The architecture at the benchmark's official index (0..15,624)."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise ArchError(f"an arch index must be an int, got {type(index).__name__} {index!r}")
        if not 0 <= index < NUM_ARCHS:
            raise ArchError(f"arch index {index} is out of range; valid indices are 0..{NUM_ARCHS - 1}")
        return cls(_from_code(_index_order()[0][index]))

    @classmethod
    def coerce(cls, value: ArchLike) -> Arch:
        """Accept an ``Arch``, an arch string, a benchmark index, or an index written as a string.

        Raises:
            ArchError: ``value`` is none of these (the message names the bad token and its position).
        """
        if isinstance(value, Arch):
            return value
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            digits = value.strip().lstrip("0") or "0"
            if len(digits) > len(str(NUM_ARCHS)):  # no int() of a huge string: it is out of range anyway
                raise ArchError(
                    f"arch index {digits[:12]}... ({len(digits)} digits) is out of range; valid indices are "
                    f"0..{NUM_ARCHS - 1}"
                )
            return cls.from_index(int(digits))
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return cls.from_index(value)
        raise ArchError(f"cannot read {value!r} as an architecture: give an arch string or an index")

    @classmethod
    def all(cls) -> Iterator[Arch]:
        """All 15,625 architectures in the benchmark's index order."""
        for code in _index_order()[0]:
            yield cls(_from_code(code))

    @classmethod
    def random(cls, rng: random.Random) -> Arch:
        """A uniformly random architecture drawn from ``rng`` (reproducible for a seeded rng)."""
        return cls(tuple(rng.randrange(len(OP_NAMES)) for _ in range(NUM_EDGES)))

    # ---------------------------------------------------------------- views
    @property
    def ops(self) -> tuple[str, ...]:
        """The six op names in canonical edge order."""
        return tuple(OP_NAMES[k] for k in self.op_ids)

    @property
    def index(self) -> int:
        """The benchmark's official index (0..15,624)."""
        return _index_order()[1][_code(self.op_ids)]

    @property
    def nodes(self) -> tuple[tuple[tuple[str, int], ...], ...]:
        """Per node 1..3 the ``(op, input_node)`` pairs, as in the benchmark's ``Structure``."""
        return tuple(tuple((self.ops[edge_index(j, i)], i) for i in range(j)) for j in range(1, NUM_NODES))

    def __str__(self) -> str:
        return "+".join("|" + "|".join(f"{op}~{i}" for op, i in node) + "|" for node in self.nodes)

    def __repr__(self) -> str:
        return f"Arch.parse('{self}')"

    @property
    def unique_key(self) -> str:
        """The benchmark's isomorphism key, ``to_unique_str(consider_zero=True)``.

        Two archs with the same key compute the same function (6,466 classes over the 15,625 archs).
        ``none``, or any op applied to a node already known to be zero, gives zero (``#``);
        ``skip_connect`` passes its input's expression through; other ops wrap it as ``(expr)@op``;
        a node's terms are sorted and joined with ``+``.
        """
        exprs = ["0"]
        for node in self.nodes:
            terms = []
            for op, src in node:
                if op == "none" or exprs[src] == "#":
                    terms.append("#")
                elif op == "skip_connect":
                    terms.append(exprs[src])
                else:
                    terms.append(f"({exprs[src]})@{op}")
            exprs.append("+".join(sorted(terms)))
        return exprs[-1]

    @property
    def is_disconnected(self) -> bool:
        """True when no path of non-``none`` edges leads from the cell input to its output.

        Such a cell ignores its input (341 of the 15,625 archs); their networks are near chance level.
        """
        reached = {0}
        for e, (dst, src) in enumerate(EDGES):  # sources come before destinations in canonical order
            if src in reached and self.op_ids[e] != 0:
                reached.add(dst)
        return NUM_NODES - 1 not in reached

    def count(self, op: str) -> int:
        """How many of the six edges carry ``op``."""
        if op not in _OP_ID:
            raise ArchError(f"unknown op {op!r}; valid ops: " + ", ".join(OP_NAMES))
        return self.op_ids.count(_OP_ID[op])

    def cost(self, num_classes: int = 10, resolution: int = 32, C: int = 16, N: int = 5) -> Cost:
        """MFLOPs and M params of the standalone network, in closed form (no network is built).

        Every conv edge is counted wherever it sits, as the benchmark's network computes every
        non-``none`` op. Matches the benchmark's ``flops``/``params`` for C=16, N=5.

        Args:
            num_classes: classifier outputs (10 CIFAR-10, 100 CIFAR-100, 120 ImageNet16-120).
            resolution: input height = width in pixels (32 for CIFAR, 16 for ImageNet16-120); a multiple of 4.
            C: channels of the first stage (stages have C, 2C, 4C).
            N: cells per stage.
        """
        for name, value in (("num_classes", num_classes), ("resolution", resolution), ("C", C), ("N", N)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArchError(f"{name}={value!r} must be a positive int")
        if resolution % 4:
            raise ArchError(f"resolution={resolution} must be a multiple of 4 (two stride-2 reductions)")
        n_conv = {name: self.count(name) for name in CONV_OPS}
        flops = 3 * C * 9 * resolution**2  # stem conv
        params = 3 * C * 9 + 2 * C  # stem conv + BN
        for stage in range(3):
            chs, pixels = C << stage, (resolution >> stage) ** 2
            for name, k in CONV_OPS.items():
                flops += N * n_conv[name] * chs * chs * k * k * pixels
                params += N * n_conv[name] * (chs * chs * k * k + 2 * chs)
            if stage < 2:  # residual reduction block to the next stage
                out_chs, out_pixels = 2 * chs, (resolution >> (stage + 1)) ** 2
                flops += (chs * out_chs * 9 + out_chs * out_chs * 9 + chs * out_chs) * out_pixels
                params += chs * out_chs * 9 + 2 * out_chs + out_chs * out_chs * 9 + 2 * out_chs + chs * out_chs
        params += 2 * 4 * C + 4 * C * num_classes + num_classes  # lastact BN + classifier
        flops += 4 * C * num_classes + num_classes
        return Cost(mflops=flops / 1e6, mparams=params / 1e6)


ArchLike = Arch | str | int
"""What the entry points accept: an ``Arch``, an arch string, or a benchmark index (int or digits)."""


@cache
def isomorphism_classes() -> dict[str, tuple[int, ...]]:
    """Benchmark indices grouped by ``Arch.unique_key`` (6,466 classes), each in index order."""
    classes: dict[str, list[int]] = {}
    for index, arch in enumerate(Arch.all()):
        classes.setdefault(arch.unique_key, []).append(index)
    return {key: tuple(members) for key, members in classes.items()}


def stratified_sample(n: int, seed: int = 0) -> list[Arch]:
    """``n`` distinct archs spread over the cost range: the space sorted by MFLOPs is cut into ``n`` equal
    strata and one arch is drawn from each (seeded). Includes degenerate archs where they fall."""
    if not 1 <= n <= NUM_ARCHS:
        raise UsageError(f"--sample {n}: choose 1..{NUM_ARCHS}")
    rng = random.Random(seed)
    archs = sorted(Arch.all(), key=lambda a: (a.cost().mflops, a.index))
    bounds = [round(i * NUM_ARCHS / n) for i in range(n + 1)]
    return [archs[rng.randrange(lo, hi)] for lo, hi in pairwise(bounds)]
