"""The decoder's fast path on CPU: the embedding lookup and the summed cross-entropy of the linear decoder with their
gradients in memory reused from step to step (`GradBuffers`), the softmax in lrnn's compiled kernels.

The math is torch's: ``F.embedding`` and ``F.cross_entropy(h @ W.T + b, y, reduction="sum")``, which `RNNLM` runs
off CPU and outside training; tests/lightning/test_lm.py compares the two (values and gradients).
"""

from __future__ import annotations

import torch

from lrnn.kernels.step_weight import _native_ops


def reuses_buffers(t: torch.Tensor) -> bool:
    """Whether the training path runs `EmbeddingLookup` and `LinearNLL` (memory reused against glibc's page faults,
    lrnn's CPU kernels): on CPU. Elsewhere torch's embedding and cross-entropy run instead, the path of a plain
    training loop: CUDA's caching allocator already reuses memory, and on a GPU at PTB sizes every kernel launch
    counts (cross_entropy is 2 ops forward; LinearNLL's torch-op path is 12)."""
    return t.device.type == "cpu"


class LinearNLL(torch.autograd.Function):
    """Summed cross-entropy of a linear decoder, ``F.cross_entropy(h @ W.T + b, y, reduction="sum")``, without the
    [N, V] temporaries: the logits are written into one buffer reused from step to step (``GradBuffers``), turned
    into probabilities in place, and the backward makes the logits' gradient in that same buffer. With a 10k
    vocabulary these are 16 MB per tensor and step, which glibc otherwise hands back to the OS and page-faults in
    again every step. The decoder weight's gradient goes into a reused buffer too. Targets equal to `ignore_index`
    are ignored.
    On CPU (float32/float64) lrnn's compiled kernels do the softmax and its gradient as one pass per row of the buffer
    (csrc/linear_nll.cpp) instead of five and two passes of torch ops over all of it; same values to float precision.
    Where the CPU has AVX-512, lrnn's product kernels also write the logits (the bias then added in that pass) and the
    decoder weight's gradient.

    apply(h [N, H], weight [V, H], bias [V] or None, targets [N] int64, ignore_index, buffers: GradBuffers) -> 0-dim
    summed NLL (over the targets that are not ignore_index).
    Differentiable once.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, targets, ignore_index, buffers):  # noqa: D102
        probs = buffers.take("logits", (h.shape[0], weight.shape[0]), h)
        ctx.native = _native_ops(probs)
        bias_in_pass = None  # a bias the native pass adds (when lrnn's kernel wrote the logits without it)
        if ctx.native is not None and ctx.native.linear_nll_logits(h, weight, probs):
            bias_in_pass = bias
        elif bias is None:
            torch.mm(h, weight.t(), out=probs)
        else:
            torch.addmm(bias, h, weight.t(), out=probs)
        ctx.probs, ctx.buffers, ctx.has_bias, ctx.ignore_index = probs, buffers, bias is not None, ignore_index
        if ctx.native is not None:  # probs <- exp(logit - row max) in place; per-row NLL and sums
            nll_rows, total = ctx.native.linear_nll_forward(probs, targets, ignore_index, bias_in_pass)
            ctx.save_for_backward(h, weight, total, targets)
            return nll_rows.sum()
        valid = targets != ignore_index
        safe = targets.masked_fill(~valid, 0).unsqueeze(1)
        picked = probs.gather(1, safe).squeeze(1)
        top = probs.amax(1, keepdim=True)
        probs.sub_(top).exp_()  # exp(logit - max)
        total = probs.sum(1, keepdim=True)
        nll = torch.where(valid, total.log().squeeze(1) + top.squeeze(1) - picked, 0).sum()
        ctx.save_for_backward(h, weight, total, safe, valid)
        return nll

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: D102
        if ctx.native is not None:
            h, weight, total, targets = ctx.saved_tensors
            d_logits = ctx.probs
            ctx.native.linear_nll_backward(d_logits, total, targets, grad, ctx.ignore_index)
        else:
            h, weight, total, safe, valid = ctx.saved_tensors
            d_logits = ctx.probs.div_(total)  # softmax, in the logits buffer
            d_logits.scatter_add_(1, safe, valid.unsqueeze(1).to(d_logits.dtype).neg())
            d_logits.mul_((valid.to(d_logits.dtype) * grad).unsqueeze(1))  # ignored rows get no gradient
        need = ctx.needs_input_grad
        dh = torch.mm(d_logits, weight) if need[0] else None
        dw = None
        if need[1]:
            dw = ctx.buffers.take("weight_grad", tuple(weight.shape), weight)
            if ctx.native is not None:
                ctx.native.linear_nll_weight_grad(d_logits, h, dw)  # lrnn's kernel where it serves, else torch.mm
            else:
                torch.mm(d_logits.t(), h, out=dw)
        db = d_logits.sum(0) if ctx.has_bias and need[2] else None
        ctx.probs = None
        return dh, dw, db, None, None, None


class EmbeddingLookup(torch.autograd.Function):
    """``F.embedding(tokens, weight)`` whose weight gradient goes into a buffer reused from step to step
    (``GradBuffers``): torch's embedding backward allocates a fresh dense [V, E] gradient every step (8 MB for
    PTB-small), which glibc hands back to the OS and the next step page-faults in again.

    apply(tokens [...] int64, weight [V, E], buffers: GradBuffers) -> [..., E]. Differentiable once.
    """

    @staticmethod
    def forward(ctx, tokens, weight, buffers):  # noqa: D102
        ctx.save_for_backward(tokens)
        ctx.buffers, ctx.weight = buffers, weight.detach()
        return weight.index_select(0, tokens.reshape(-1)).view(*tokens.shape, weight.shape[1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: D102
        (tokens,) = ctx.saved_tensors
        V, E = ctx.weight.shape
        dw = ctx.buffers.take("embedding_grad", (V, E), ctx.weight).zero_()
        return None, dw.index_add_(0, tokens.reshape(-1), grad.reshape(-1, E)), None
