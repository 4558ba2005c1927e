"""lrnn's speed wing: the fast paths of the cores and of the decoder, kept apart from the math they compute.

Each core in lrnn/cores states its step in plain PyTorch (the reference, `lrnn.cores._lstm_math.reference_layer`
and `LexicalLSTM.reference_layer`); the fast path reaches the same results through this package, and the tests compare
the two, outputs and gradients (tests/cores/test_fast_vs_reference.py). What is here:

- `step_weight_layer`: one LSTM layer whose step t uses weight set idx[t] (UntiedLSTM, SoftTiedLSTM, MixtureLSTM,
  TimeVaryingLSTM): a custom autograd Function with one hand-written backward, runs of shared sets through torch's
  LSTM on GPU, and on CPU lrnn's compiled C++ kernels (csrc/, built on first use by `_native`);
- `lexical_layer`: LexicalLSTM's layer as a custom autograd Function (no autograd graph per step);
- `GradBuffers`: weight-gradient memory reused from one backward to the next (CPU), against page faults;
- `LinearNLL`, `EmbeddingLookup`, `reuses_buffers`: the decoder's summed cross-entropy and the embedding with their
  gradients in reused memory (CPU training);
- `CUDAGraphs`: a core's forward and backward captured once per input shape and replayed (GPU).

``LRNN_NATIVE=0`` turns the compiled kernels off (the Python loops run instead, same results to float precision).
"""

from lrnn.kernels._native import ops as native_ops
from lrnn.kernels.buffers import GradBuffers
from lrnn.kernels.cuda_graphs import CUDAGraphs
from lrnn.kernels.decoder import EmbeddingLookup, LinearNLL, reuses_buffers
from lrnn.kernels.lexical import LexicalLSTMLayer
from lrnn.kernels.step_weight import step_weight_layer

lexical_layer = LexicalLSTMLayer.apply

__all__ = [
    "CUDAGraphs",
    "EmbeddingLookup",
    "GradBuffers",
    "LexicalLSTMLayer",
    "LinearNLL",
    "lexical_layer",
    "native_ops",
    "reuses_buffers",
    "step_weight_layer",
]
