"""DDP for any recurrent core: the reducer finds unused parameters only for models whose forward can leave some out.

DDP's reducer expects a gradient for every parameter after every backward unless ``find_unused_parameters=True``,
which costs a traversal of the autograd graph from the loss on every step (and an extra all-reduce of the
used-parameter map). Many of lrnn's cores legitimately leave parameters out of a step's graph: an ``UntiedLSTM``
with ``max_len = 20`` uses only the weight sets of the positions a window reaches, so the short last window of an
epoch, the first TBPTT segments, and short sentences leave sets without a gradient (and under sentence batching the
sets used differ from rank to rank). A ``TiedLSTM`` uses all of its weights at every step.

So the choice is made per model, core-agnostically, before DDP wraps it: :func:`parameters_left_out` runs the model
once, forward and backward, on the shortest possible input (one token at position 0) and lists the parameters that
got no gradient. A model that uses all of its parameters there (the tied baseline) keeps DDP's fast path; any other
gets ``find_unused_parameters=True``, which gives the same gradients as one process: a parameter that no rank used
keeps ``grad = None`` (the optimizer skips it, momentum and weight decay included), one that only some ranks used
gets the average with zeros from the others. Zero "ghost" terms (``0 * p.sum()``) would avoid the traversal but
give every unused parameter a zero gradient instead of none, which changes what stateful optimizers and weight
decay do with it.
"""

from __future__ import annotations

import torch
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_info
from torch import nn


@torch.enable_grad()
def parameters_left_out(model: nn.Module, vocab_size: int) -> list[str]:
    """Names of the trainable parameters of ``model`` (an ``RNNLM``-like ``tokens [B, T] -> (logits, state)``
    module) that get no gradient from one token at position 0. Dropout is off during the probe, so the global
    random state is not drawn from; ``.grad`` is not touched."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        return []
    device = named[0][1].device
    was_training = model.training
    model.eval()
    try:
        tokens = torch.zeros(1, 1, dtype=torch.long, device=device).clamp_max(vocab_size - 1)
        logits, _ = model(tokens)
        grads = torch.autograd.grad(logits.float().sum(), [p for _, p in named], allow_unused=True)
    finally:
        model.train(was_training)
    return [n for (n, _), g in zip(named, grads, strict=True) if g is None]


def configure_unused_parameters(strategy: object, model: nn.Module, vocab_size: int) -> list[str]:
    """Under a ``DDPStrategy`` (before it wraps the model): turn on ``find_unused_parameters`` where the model can
    leave parameters out of a step; returns those found left out (empty: DDP's fast path is kept)."""
    if not isinstance(strategy, DDPStrategy) or strategy._ddp_kwargs.get("find_unused_parameters"):
        return []
    left_out = parameters_left_out(model, vocab_size)
    if left_out:
        # Lightning keeps the DistributedDataParallel kwargs here until setup() wraps the model (no public setter)
        strategy._ddp_kwargs["find_unused_parameters"] = True
        shown = ", ".join(left_out[:3]) + (", ..." if len(left_out) > 3 else "")
        rank_zero_info(
            f"DDP: {type(getattr(model, 'core', model)).__name__} can leave parameters out of a step ({shown}): "
            "find_unused_parameters=True"
        )
    return left_out
