"""Every core's fast path (lrnn/kernels: custom autograd Functions, compiled CPU kernels, torch's fused LSTM) against
its plain-PyTorch reference (`use_kernels = False`: nn.LSTM's step as autograd records it): outputs, final state and
the gradients of the input, the initial state and every parameter."""

import pytest
import torch

from lrnn import LexicalLSTM, MixtureLSTM, SoftTiedLSTM, TiedLSTM, TimeVaryingLSTM, UntiedLSTM
from lrnn.cores._lstm_math import step_weight_lstm

T, B, IN, H, L = 7, 3, 5, 6, 2


def _perturb(core: torch.nn.Module) -> None:
    """Non-zero deltas and mixing logits, so that every part of the step matters."""
    with torch.no_grad():
        for p in core.parameters():
            p.add_(0.3 * torch.randn_like(p))


CORES = {
    "untied": lambda bf: UntiedLSTM(IN, H, L, max_len=T, batch_first=bf),
    "share_every": lambda bf: UntiedLSTM(IN, H, L, max_len=T, share_every=3, batch_first=bf),
    "soft_tied": lambda bf: SoftTiedLSTM(IN, H, L, max_len=T, batch_first=bf),
    "soft_tied_rank": lambda bf: SoftTiedLSTM(IN, H, L, max_len=T, rank=2, batch_first=bf),
    "mixture": lambda bf: MixtureLSTM(IN, H, L, num_sets=3, max_len=T, share_every=2, batch_first=bf),
    "time_varying": lambda bf: TimeVaryingLSTM(IN, H, L, num_bases=3, period=10.0, batch_first=bf),
    "time_varying_gaussian": lambda bf: TimeVaryingLSTM(IN, H, L, num_bases=3, basis="gaussian", batch_first=bf),
    "lexical": lambda bf: LexicalLSTM(IN, H, L, num_sets=4, rank=2, batch_first=bf),
    "lexical_full_rank": lambda bf: LexicalLSTM(IN, H, L, num_sets=4, batch_first=bf),
}


def _run(core, x, state, tokens):
    core.zero_grad(set_to_none=True)
    x, state = x.clone().requires_grad_(), tuple(s.clone().requires_grad_() for s in state)
    kwargs = {"tokens": tokens} if isinstance(core, LexicalLSTM) else {"offset": 0}
    out, (h, c) = core(x, state, **kwargs)
    # a loss that reaches every output and both final states with different weights
    (out.square().sum() + (h * 1.5).sum() + (c * 0.5).sum()).backward()
    grads = {n: p.grad for n, p in core.named_parameters()}
    return out.detach(), h.detach(), c.detach(), x.grad, state[0].grad, state[1].grad, grads


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("name", list(CORES))
def test_fast_path_matches_the_reference(name, batch_first):
    torch.manual_seed(0)
    core = CORES[name](batch_first).double()
    _perturb(core)
    x = torch.randn((B, T, IN) if batch_first else (T, B, IN), dtype=torch.float64)
    state = (torch.randn(L, B, H, dtype=torch.float64), torch.randn(L, B, H, dtype=torch.float64))
    tokens = torch.randint(0, 6, x.shape[:2])  # sets 1..3 belong to tokens 0..2; tokens 3..5 use the base set
    fast = _run(core, x, state, tokens)
    core.use_kernels = False
    reference = _run(core, x, state, tokens)
    for got, want in zip(fast[:6], reference[:6], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert fast[6].keys() == reference[6].keys()
    for n in fast[6]:
        g, r = fast[6][n], reference[6][n]
        if r is None:  # a set no step used: no gradient on either path (UntiedLSTM)
            assert g is None or not g.any(), n
        else:
            torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12, msg=n)


def test_float32_compiled_kernels_match_the_reference():
    """float32 goes through lrnn's compiled CPU kernels (AVX2 / AVX-512 products where they serve)."""
    torch.manual_seed(1)
    core = UntiedLSTM(IN, H, L, max_len=T)
    x, state = torch.randn(T, B, IN), (torch.randn(L, B, H), torch.randn(L, B, H))
    fast = _run(core, x, state, None)
    core.use_kernels = False
    reference = _run(core, x, state, None)
    for got, want in zip(fast[:6], reference[:6], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    for n, g in fast[6].items():
        torch.testing.assert_close(g, reference[6][n], rtol=1e-4, atol=1e-5, msg=n)


def test_tied_lstm_matches_the_reference_with_one_weight_set():
    """TiedLSTM is torch's nn.LSTM (oneDNN / cuDNN): the reference with its weights as the only set, every step."""
    torch.manual_seed(2)
    core = TiedLSTM(IN, H, L).double()
    x, state = (
        torch.randn(T, B, IN, dtype=torch.float64),
        (torch.randn(L, B, H).double(), torch.randn(L, B, H).double()),
    )
    out, (h, c) = core(x, state)
    layers = [
        tuple([getattr(core, f"{n}_l{k}")] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")) for k in range(L)
    ]
    ref, (h_r, c_r) = step_weight_lstm(
        x, state, layers, [0] * T, batch_first=False, dropout=0.0, training=False, fast=False
    )
    torch.testing.assert_close((out, h, c), (ref, h_r, c_r), rtol=1e-10, atol=1e-12)
