"""A recurrent language model in plain PyTorch: embedding -> recurrent core -> linear decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lrnn.data.batching import IGNORE_INDEX  # targets with this value are not scored
from lrnn.kernels import EmbeddingLookup, GradBuffers, LinearNLL, reuses_buffers

State = tuple[torch.Tensor, torch.Tensor]


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
        if reuse_buffers and torch.is_grad_enabled() and self.embedding.weight.requires_grad and reuses_buffers(tokens):
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
        if not reuses_buffers(h):
            return F.cross_entropy(self.decoder(h), targets, reduction="sum", ignore_index=IGNORE_INDEX), state
        nll = LinearNLL.apply(h, self.decoder.weight, self.decoder.bias, targets, IGNORE_INDEX, self.loss_buffers)
        return nll, state

    def num_parameters(self) -> dict[str, int]:
        """Total and recurrent (core) parameter counts; shared tensors are counted once."""
        total = sum(p.numel() for p in self.parameters())
        recurrent = sum(p.numel() for p in self.core.parameters())
        return {"total": total, "recurrent": recurrent, "non_recurrent": total - recurrent}
