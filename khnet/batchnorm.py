"""BatchNorm after weights change: exact recalibration of the statistics, and folding into the convs.

Both act on any module (an ``NB201Net``, ``StackedNets``); nothing here knows the search space.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["fold_bn", "recalibrate_bn"]


@torch.no_grad()
def recalibrate_bn(
    net: nn.Module, data: torch.Tensor | Iterable, num_images: int = 2048, batch_size: int | None = None
) -> int:
    """Reset every BatchNorm's running statistics to the exact mean and (unbiased) variance of its inputs
    over ``num_images`` images: a cumulative average over the whole subset, not an EMA.

    BatchNorms run in train mode (batch statistics) while the statistics are gathered, with no gradients;
    the network's train/eval mode is restored afterwards. When one batch holds the whole subset (the
    default for a tensor), the BatchNorms' own batch statistics are the answer (momentum 1); otherwise
    per-batch moments are gathered by hooks and merged exactly.

    Args:
        net: any module with BatchNorm layers.
        data: a tensor of normalised images (N, 3, H, W), or an iterable of ``(images, labels)`` batches;
            pass un-augmented images.
        num_images: how many images to use (the first ones of ``data``).
        batch_size: batch size when ``data`` is a tensor (default: all ``num_images`` in one batch).

    Returns:
        The number of images used.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    device = next(net.parameters()).device
    was_training = net.training
    saved_momentum = [m.momentum for m in norms]
    if torch.is_tensor(data) and (batch_size is None or batch_size >= min(num_images, len(data))):
        x = data[:num_images].to(device)
        try:
            for m in norms:
                m.reset_running_stats()
                m.momentum = 1.0  # running statistics := this batch's (unbiased variance)
            net.train()
            net(x)
        finally:
            for m, momentum in zip(norms, saved_momentum, strict=True):
                m.momentum = momentum
            net.train(was_training)
        return len(x)

    moments: dict[nn.Module, tuple[torch.Tensor, torch.Tensor, int]] = {}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].detach()
        var, mean = torch.var_mean(x, dim=[d for d in range(x.dim()) if d != 1], unbiased=False)
        n = x.numel() // x.shape[1]
        if module not in moments:
            moments[module] = (mean.double(), var.double() * n, n)
            return
        m0, m2, n0 = moments[module]  # merge (Chan et al.): exact mean and sum of squared deviations
        delta = mean.double() - m0
        total = n0 + n
        moments[module] = (m0 + delta * n / total, m2 + var.double() * n + delta.square() * n0 * n / total, total)

    handles = [m.register_forward_pre_hook(hook) for m in norms]
    used = 0
    try:
        net.train()
        step = batch_size or 256
        batches = (data[i : i + step] for i in range(0, len(data), step)) if torch.is_tensor(data) else data
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            x = x[: num_images - used].to(device)
            if len(x) == 0:
                break
            net(x)
            used += len(x)
            if used >= num_images:
                break
    finally:
        for handle in handles:
            handle.remove()
        net.train(was_training)
    for module in norms:
        if module in moments:
            mean, m2, n = moments[module]
            module.running_mean.copy_(mean.to(module.running_mean.dtype))
            module.running_var.copy_((m2 / max(1, n - 1)).to(module.running_var.dtype))
            module.num_batches_tracked.fill_(1)
    return used


@torch.no_grad()
def fold_bn(net: nn.Module) -> nn.Module:
    """A copy of ``net`` for inference with every BatchNorm that follows a conv folded into that conv.

    The conv gets ``weight * gamma / sqrt(var + eps)`` and a bias ``beta - mean * gamma / sqrt(var + eps)``;
    the BatchNorm becomes an identity. ``lastact``'s BatchNorm follows a sum, not a conv, and stays. Uses the
    running statistics, so the result equals ``net`` in eval mode (up to float rounding).
    """
    import copy

    folded = copy.deepcopy(net).eval()
    pairs = []
    for module in folded.modules():
        if isinstance(module, nn.Sequential):
            children = list(module.children())
            for i in range(len(children) - 1):
                if isinstance(children[i], nn.Conv2d) and isinstance(children[i + 1], nn.BatchNorm2d):
                    pairs.append((module, i))
    for seq, i in pairs:
        conv, bn = seq[i], seq[i + 1]
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
        fused = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            conv.groups, bias=True,
        ).to(conv.weight)  # fmt: skip
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_(bn.bias + (bias - bn.running_mean) * scale)
        seq[i], seq[i + 1] = fused, nn.Identity()
    return folded
