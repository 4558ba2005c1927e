"""Gradient-norm clipping without the pass that multiplies every gradient by 1.

``torch.nn.utils.clip_grad_norm_`` (what Lightning's ``clip_gradients`` runs for ``gradient_clip_algorithm="norm"``)
multiplies every gradient by ``min(1, max_norm / (norm + 1e-6))``, a read and a write of all gradients even when
nothing is clipped, which at PTB-small's clip of 5 is most steps (see the README's benchmarks); the untied model's
gradients are 68 MB. ``clip_gradients`` below computes the same norm with the same torch functions and multiplies
only when the factor is below 1 (or not a number), so the gradients are bit for bit those of ``clip_grad_norm_``.
"""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from torch.optim import Optimizer


def clip_gradients(
    module: LightningModule, optimizer: Optimizer, clip_val: float | None, algorithm: str | None = "norm"
) -> None:
    """``module.clip_gradients(optimizer, clip_val, algorithm)``, skipping the multiply by 1 for norm clipping.

    The shortcut applies on CPU with full precision and a single-device or DDP strategy (gradients already reduced);
    anything else (value clipping, a GradScaler, sharded strategies, GPU, where reading the factor would synchronise)
    goes to Lightning's ``clip_gradients`` unchanged.
    """
    trainer = module.trainer
    if not (
        clip_val
        and algorithm in (None, "norm")
        and type(trainer.precision_plugin) is Precision
        and isinstance(trainer.strategy, SingleDeviceStrategy | DDPStrategy)
        and module.device.type == "cpu"
    ):
        module.clip_gradients(optimizer, gradient_clip_val=clip_val, gradient_clip_algorithm=algorithm)
        return
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    norm = torch.nn.utils.get_total_norm(grads)
    factor = float(clip_val) / (norm + 1e-6)  # torch's, before its clamp to 1
    if not bool(factor >= 1.0):  # below 1, or NaN: multiply as torch does
        torch.nn.utils.clip_grads_with_norm_(params, clip_val, norm)
