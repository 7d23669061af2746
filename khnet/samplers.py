"""Architecture samplers for supernet training: which K subnets train on a batch.

- ``focus-fair`` (the paper's Focus-Fair sampling): per edge, the K = 5 draws take the ops without
  replacement, each draw with probabilities softmax(beta / tau) renormalised over the ops not drawn yet; after
  K draws every op of every edge ran exactly once, and ops with large beta tend to be drawn together.
- ``fairnas`` (FairNAS): the same with uniform probabilities, i.e. an independent random permutation per edge.
- ``uniform`` (SPOS): K independent uniform archs.

Sequential draws without replacement are drawn at once with the Gumbel-top-k trick, which has exactly the
same distribution (Plackett-Luce). All randomness comes from the ``torch.Generator`` passed in, so a run is
reproducible from its seed and the generator's state is saved in checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from khnet.config import SAMPLER_NAMES
from khnet.errors import UsageError, require_choice
from khnet.space import NUM_EDGES, OP_NAMES, Arch

__all__ = ["SAMPLERS", "draw_archs"]

NUM_OPS = len(OP_NAMES)


def _gumbel(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, dtype=torch.float64).clamp_(1e-12, 1 - 1e-12)
    return -torch.log(-torch.log(u))


def _fair(logits: torch.Tensor, num: int, generator: torch.Generator) -> list[Arch]:
    """``num`` archs whose per-edge ops are the first ``num`` of a Plackett-Luce order under ``logits``."""
    keys = logits.double() + _gumbel((NUM_EDGES, NUM_OPS), generator)  # (6, 5)
    order = keys.argsort(dim=1, descending=True)  # (6, 5): order[e, k] = op of draw k on edge e
    return [Arch(tuple(int(order[e, k]) for e in range(NUM_EDGES))) for k in range(num)]


def focus_fair(beta: torch.Tensor, num: int, generator: torch.Generator, tau: float = 1.5) -> list[Arch]:
    """Focus-Fair sampling: fair over ops per edge, focused by softmax(beta / tau)."""
    return _fair(torch.log_softmax(beta.detach().cpu().double() / tau, dim=-1), num, generator)


def fairnas(beta: torch.Tensor, num: int, generator: torch.Generator, tau: float = 1.5) -> list[Arch]:
    """FairNAS: an independent uniform permutation of the ops per edge."""
    return _fair(torch.zeros(NUM_EDGES, NUM_OPS, dtype=torch.float64), num, generator)


def uniform(beta: torch.Tensor, num: int, generator: torch.Generator, tau: float = 1.5) -> list[Arch]:
    """SPOS: ``num`` independent uniformly random archs."""
    ops = torch.randint(0, NUM_OPS, (num, NUM_EDGES), generator=generator)
    return [Arch(tuple(int(v) for v in row)) for row in ops]


SAMPLERS: dict[str, Callable[..., list[Arch]]] = {"focus-fair": focus_fair, "fairnas": fairnas, "uniform": uniform}
assert tuple(SAMPLERS) == SAMPLER_NAMES


def draw_archs(
    name: str, beta: torch.Tensor, generator: torch.Generator, num: int = NUM_OPS, tau: float = 1.5
) -> list[Arch]:
    """Draw ``num`` archs with sampler ``name`` (``focus-fair``, ``fairnas`` or ``uniform``).

    Args:
        name: the sampler.
        beta: architecture parameters (6, 5); only ``focus-fair`` reads them.
        generator: the source of randomness (seeded by the caller).
        num: subnets per step; fair samplers need ``num <= 5``, and with 5 every op of every edge runs once.
        tau: Focus-Fair temperature (the paper: 1.5).
    """
    require_choice("sampler", name, SAMPLERS)
    if name != "uniform" and not 1 <= num <= NUM_OPS:
        raise UsageError(f"{name} draws 1..{NUM_OPS} subnets per step (one op per edge each), not {num}")
    if tau <= 0:
        raise UsageError(f"tau={tau} must be positive")
    return SAMPLERS[name](beta, num, generator, tau)
