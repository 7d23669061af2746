"""Count MFLOPs and M params of any ``nn.Module`` in the NAS-Bench-201 convention.

FLOPs are the multiply-adds of ``Conv2d`` and ``Linear`` layers (plus one add per output for a bias),
measured by running one forward pass; pooling, BatchNorm, ReLU and additions are not counted. Params are
all parameters (BatchNorm weight and bias included, buffers not). For an ``NB201Net`` this agrees with the
closed form ``Arch.cost``.
"""

from __future__ import annotations

import torch
from torch import nn

from khnet.space import Cost

__all__ = ["count_cost"]


def count_cost(module: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32)) -> Cost:
    """MFLOPs per image and M params of ``module``, from one forward pass on zeros of ``input_size``.

    Args:
        module: any module taking one image tensor.
        input_size: (B, C, H, W) of the probe input; FLOPs are divided by B.
    """
    flops = 0

    def conv_hook(layer: nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal flops
        per_output = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        flops += output.numel() * (per_output + (layer.bias is not None))

    def linear_hook(layer: nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal flops
        flops += output.numel() * (layer.in_features + (layer.bias is not None))

    handles = []
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            handles.append(layer.register_forward_hook(conv_hook))
        elif isinstance(layer, nn.Linear):
            handles.append(layer.register_forward_hook(linear_hook))
    was_training = module.training
    try:
        module.eval()
        param = next(module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            module(torch.zeros(input_size, device=device))
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for p in module.parameters())
    return Cost(mflops=flops / input_size[0] / 1e6, mparams=params / 1e6)
