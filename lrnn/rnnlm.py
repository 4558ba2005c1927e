"""A recurrent language model in plain PyTorch: embedding -> recurrent core -> linear decoder."""

from __future__ import annotations

import torch
from torch import nn

State = tuple[torch.Tensor, torch.Tensor]


class RNNLM(nn.Module):
    """Embedding -> dropout -> core -> dropout -> linear decoder over the vocabulary.

    Args:
        vocab_size: V.
        core: any module with the ``nn.LSTM`` calling convention ``output, (h_n, c_n) = core(x, state, offset=...)``
            and attributes ``input_size``, ``hidden_size`` (and optionally ``batch_first``). The embedding has
            ``core.input_size`` dims, the decoder reads ``core.hidden_size`` dims.
        dropout: dropout on the non-recurrent connections (the embedding output and the core output; dropout
            between stacked layers is the core's own ``dropout``), as in Zaremba et al. 2014.
        tie_embeddings: share the embedding matrix with the decoder (softmax) weights (Press & Wolf 2017). Not the
            same thing as tying across time; needs ``input_size == hidden_size``.
        init_range: if set, every parameter is drawn from U(-init_range, init_range) (Zaremba et al.); a core with an
            ``init_uniform_(bound)`` method initialises itself instead (e.g. SoftTiedLSTM keeps its deltas at zero).
    """

    def __init__(
        self,
        vocab_size: int,
        core: nn.Module,
        dropout: float = 0.0,
        tie_embeddings: bool = False,
        init_range: float | None = None,
    ) -> None:
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        self.embedding = nn.Embedding(vocab_size, core.input_size)
        self.core = core
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(core.hidden_size, vocab_size)
        if init_range is not None:
            for p in self.parameters():
                nn.init.uniform_(p, -init_range, init_range)
            if hasattr(core, "init_uniform_"):  # cores with parts that must start at zero (deltas, mixing logits)
                core.init_uniform_(init_range)
        if tie_embeddings:
            if core.input_size != core.hidden_size:
                raise ValueError(
                    f"tie_embeddings needs core.input_size == core.hidden_size, got {core.input_size} != "
                    f"{core.hidden_size}"
                )
            self.decoder.weight = self.embedding.weight

    def forward(self, tokens: torch.Tensor, state: State | None = None, offset: int = 0) -> tuple[torch.Tensor, State]:
        """tokens [B, T] int -> logits [B, T, V], final state (h_n, c_n) each [num_layers, B, H].

        ``offset`` is the absolute position of ``tokens[:, 0]`` (used by cores whose weights depend on position).
        """
        batch_first = getattr(self.core, "batch_first", False)
        x = self.drop(self.embedding(tokens if batch_first else tokens.t()))
        out, state = self.core(x, state, offset=offset)
        out = self.drop(out)
        logits = self.decoder(out if batch_first else out.transpose(0, 1))
        return logits, state

    def num_parameters(self) -> dict[str, int]:
        """Total and recurrent (core) parameter counts; shared tensors are counted once."""
        total = sum(p.numel() for p in self.parameters())
        recurrent = sum(p.numel() for p in self.core.parameters())
        return {"total": total, "recurrent": recurrent, "non_recurrent": total - recurrent}
