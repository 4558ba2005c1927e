"""A recurrent language model in plain PyTorch: embedding -> recurrent core -> linear decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lrnn.cores._lstm_math import GradBuffers, _native_ops
from lrnn.data.batching import IGNORE_INDEX  # targets with this value are not scored

State = tuple[torch.Tensor, torch.Tensor]


def _reuses_buffers(t: torch.Tensor) -> bool:
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
    again every step. The decoder weight's gradient goes into a reused buffer too. Targets equal to -100 are ignored.
    On CPU (float32/float64) lrnn's compiled kernels do the softmax and its gradient as one pass per row of the buffer
    (csrc/linear_nll.cpp) instead of five and two passes of torch ops over all of it; same values to float precision.
    Where the CPU has AVX-512, lrnn's product kernels also write the logits (the bias then added in that pass) and the
    decoder weight's gradient.

    apply(h [N, H], weight [V, H], bias [V] or None, targets [N] int64, buffers: GradBuffers) -> 0-dim summed NLL.
    Differentiable once.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, targets, buffers):  # noqa: D102
        probs = buffers.take("logits", (h.shape[0], weight.shape[0]), h)
        ctx.native = _native_ops(probs)
        bias_in_pass = None  # a bias the native pass adds (when lrnn's kernel wrote the logits without it)
        if ctx.native is not None and ctx.native.linear_nll_logits(h, weight, probs):
            bias_in_pass = bias
        elif bias is None:
            torch.mm(h, weight.t(), out=probs)
        else:
            torch.addmm(bias, h, weight.t(), out=probs)
        ctx.probs, ctx.buffers, ctx.has_bias = probs, buffers, bias is not None
        if ctx.native is not None:  # probs <- exp(logit - row max) in place; per-row NLL and sums
            nll_rows, total = ctx.native.linear_nll_forward(probs, targets, IGNORE_INDEX, bias_in_pass)
            ctx.save_for_backward(h, weight, total, targets)
            return nll_rows.sum()
        valid = targets != IGNORE_INDEX
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
            ctx.native.linear_nll_backward(d_logits, total, targets, grad, IGNORE_INDEX)
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
        return dh, dw, db, None, None


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


class RNNLM(nn.Module):
    """The language-model network (plain PyTorch): embedding -> dropout -> core -> dropout -> linear decoder over the
    vocabulary. ``lrnn.LitLanguageModel`` trains one (as its ``model``).

    Args:
        vocab_size: V.
        core: any module with the ``nn.LSTM`` calling convention ``output, (h_n, c_n) = core(x, state, offset=...)``
            and attributes ``input_size``, ``hidden_size`` (and optionally ``batch_first``). The embedding has
            ``core.input_size`` dims, the decoder reads ``core.hidden_size`` dims. A core with ``reads_tokens = True``
            is also passed the token ids, ``core(x, state, offset=..., tokens=...)`` (see ``run_core``).
        dropout: dropout on the non-recurrent connections (the embedding output and the core output; dropout
            between stacked layers is the core's own ``dropout``), as in Zaremba et al. 2014.
        tie_embeddings: share the embedding matrix with the decoder (softmax) weights (Press & Wolf 2017). Not the
            same thing as tying across time; needs ``input_size == hidden_size``.
        init_range: if set, every parameter is drawn from U(-init_range, init_range) (Zaremba et al.); a core with an
            ``init_uniform_(bound)`` method initialises itself instead (e.g. SoftTiedLSTM keeps its deltas at zero).
        output_size: if set and not ``core.hidden_size``, a linear projection (no bias) maps the core's output to
            ``output_size`` dims before the decoder, so cores of different widths share one softmax width (the
            paper's equal-parameter contest; LSTMP-like, but outside the recurrence).
    """

    def __init__(
        self,
        vocab_size: int,
        core: nn.Module,
        dropout: float = 0.0,
        tie_embeddings: bool = False,
        init_range: float | None = None,
        output_size: int | None = None,
    ) -> None:
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        self.embedding = nn.Embedding(vocab_size, core.input_size)
        self.core = core
        self.drop = nn.Dropout(dropout)
        self.loss_buffers = GradBuffers()  # memory `nll` reuses from step to step (logits, decoder gradient)
        width = core.hidden_size if output_size is None else output_size
        self.projection = nn.Linear(core.hidden_size, width, bias=False) if width != core.hidden_size else None
        self.decoder = nn.Linear(width, vocab_size)
        if init_range is not None:
            for p in self.parameters():
                nn.init.uniform_(p, -init_range, init_range)
            if hasattr(core, "init_uniform_"):  # cores with parts that must start at zero (deltas, mixing logits)
                core.init_uniform_(init_range)
        if tie_embeddings:
            if core.input_size != width:
                raise ValueError(
                    f"tie_embeddings needs core.input_size == the decoder's width (output_size or core.hidden_size), "
                    f"got {core.input_size} != {width}"
                )
            self.decoder.weight = self.embedding.weight

    def forward(self, tokens: torch.Tensor, state: State | None = None, offset: int = 0) -> tuple[torch.Tensor, State]:
        """tokens [B, T] int -> logits [B, T, V], final state (h_n, c_n) each [num_layers, B, H].

        ``offset`` is the absolute position of ``tokens[:, 0]`` (used by cores whose weights depend on position).
        """
        out, state = self._features(tokens, state, offset)
        logits = self.decoder(out if getattr(self.core, "batch_first", False) else out.transpose(0, 1))
        return logits, state

    def _features(self, tokens: torch.Tensor, state: State | None, offset: int) -> tuple[torch.Tensor, State]:
        """The decoder's input (after dropout), in the core's layout ([B, T, H] if batch_first, else [T, B, H])."""
        out, state = self._embed_and_run(tokens, state, offset, reuse_buffers=True)
        if self.projection is not None:
            out = self.projection(out)
        return self.drop(out), state

    def advance(self, tokens: torch.Tensor, state: State | None = None, offset: int = 0) -> State:
        """The state after ``tokens`` [B, T]: embedding, dropout and core only, no decoder (what truncated BPTT runs
        over the steps it does not score). Gradients flow through it as through ``nll``."""
        return self._embed_and_run(tokens, state, offset, reuse_buffers=False)[1]

    def _embed_and_run(
        self, tokens: torch.Tensor, state: State | None, offset: int, reuse_buffers: bool
    ) -> tuple[torch.Tensor, State]:
        """Embedding -> dropout -> core: the core's output (before projection and dropout) and final state.
        ``reuse_buffers``: on CPU in training, the embedding's gradient goes into reused memory (`EmbeddingLookup`);
        `advance` uses torch's embedding, so a TBPTT update has one such gradient (the scored steps')."""
        batch_first = getattr(self.core, "batch_first", False)
        tokens = tokens if batch_first else tokens.t()
        if (
            reuse_buffers
            and torch.is_grad_enabled()
            and self.embedding.weight.requires_grad
            and _reuses_buffers(tokens)
        ):
            x = EmbeddingLookup.apply(tokens, self.embedding.weight, self.loss_buffers)  # = self.embedding(tokens)
        else:
            x = self.embedding(tokens)
        return self.run_core(self.drop(x), tokens, state, offset)

    def run_core(
        self, x: torch.Tensor, tokens: torch.Tensor, state: State | None, offset: int = 0
    ) -> tuple[torch.Tensor, State]:
        """The core over x (the embedded tokens, in the core's layout); a core whose weights depend on the tokens
        (class attribute ``reads_tokens``, e.g. LexicalLSTM) also gets ``tokens`` (in the same layout)."""
        if getattr(self.core, "reads_tokens", False):
            return self.core(x, state, offset=offset, tokens=tokens)
        return self.core(x, state, offset=offset)

    def nll(
        self, tokens: torch.Tensor, targets: torch.Tensor, state: State | None = None, offset: int = 0
    ) -> tuple[torch.Tensor, State]:
        """The summed NLL of ``targets`` [B, T] (-100: ignored) after ``tokens`` [B, T], and the final state.

        Equals ``F.cross_entropy(logits, targets, reduction="sum")`` of ``forward`` (up to float rounding); on CPU
        without materializing the logits as new tensors every call (see ``LinearNLL``): the training hot path.
        """
        out, state = self._features(tokens, state, offset)
        if not getattr(self.core, "batch_first", False):
            targets = targets.t()  # [T, B], matching the time-major rows of out
        h, targets = out.reshape(-1, out.shape[-1]), targets.reshape(-1)
        if not _reuses_buffers(h):
            return F.cross_entropy(self.decoder(h), targets, reduction="sum", ignore_index=IGNORE_INDEX), state
        nll = LinearNLL.apply(h, self.decoder.weight, self.decoder.bias, targets, self.loss_buffers)
        return nll, state

    def num_parameters(self) -> dict[str, int]:
        """Total and recurrent (core) parameter counts; shared tensors are counted once."""
        total = sum(p.numel() for p in self.parameters())
        recurrent = sum(p.numel() for p in self.core.parameters())
        return {"total": total, "recurrent": recurrent, "non_recurrent": total - recurrent}
