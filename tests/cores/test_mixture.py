"""MixtureLSTM: from_lstm and num_sets=1 equal nn.LSTM; the mix is the convex combination of the sets."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from lrnn import MixtureLSTM, UntiedLSTM
from tests.cores.test_untied import grads, loss_of, rand_state

F64 = torch.float64
DEVICES = ("cpu", "cuda")  # the CUDA tests compare these


@pytest.mark.parametrize("num_sets", [1, 3])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("offset,share_every", [(0, 1), (2, 3)])
def test_from_lstm_matches_nn_lstm(num_sets, num_layers, batch_first, offset, share_every):
    torch.manual_seed(0)
    T, B, D, H = 6, 3, 4, 5
    lstm = nn.LSTM(D, H, num_layers, batch_first=batch_first).double()
    core = MixtureLSTM.from_lstm(lstm, max_len=T + offset, num_sets=num_sets, share_every=share_every)
    with torch.no_grad():  # any convex mix of equal sets is lstm
        for k in range(num_layers):
            getattr(core, f"mix_logits_l{k}").normal_()
    x = torch.randn(*((B, T) if batch_first else (T, B)), D, dtype=F64, requires_grad=True)
    hx = rand_state(num_layers, B, H)
    out_ref, (h_ref, c_ref) = lstm(x, hx)
    out, (h, c) = core(x, hx, offset=offset)
    for a, b in ((out, out_ref), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    inputs, names = [x, *hx], [n for n, _ in lstm.named_parameters()]
    got = grads(loss_of(out, h, c), inputs + [getattr(core, n) for n in names])
    want = grads(loss_of(out_ref, h_ref, c_ref), inputs + list(lstm.parameters()))
    for g, g_ref in zip(got[:3], want[:3], strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-9, rtol=0)
    # each set gets its mixing weight's share of the gradient: summed over the sets they are nn.LSTM's
    for g, g_ref in zip(got[3:], want[3:], strict=True):
        torch.testing.assert_close(g.sum(0), g_ref, atol=1e-9, rtol=0)


def test_num_sets_1_is_an_nn_lstm():
    """A fresh MixtureLSTM(num_sets=1) computes what nn.LSTM with its weights computes, at any length."""
    torch.manual_seed(1)
    core = MixtureLSTM(3, 4, 2, num_sets=1, max_len=2, extrapolation="clamp").double()
    lstm = nn.LSTM(3, 4, 2).double()
    with torch.no_grad():
        for n, p in lstm.named_parameters():
            p.copy_(getattr(core, n)[0])
    x = torch.randn(7, 2, 3, dtype=F64)
    out, (h, c) = core(x)
    out_ref, (h_ref, c_ref) = lstm(x)
    torch.testing.assert_close(out, out_ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(c, c_ref, atol=1e-10, rtol=0)
    assert core.parameter_counts()["total"] == sum(p.numel() for p in lstm.parameters()) + 2 * 2


def test_mixture_equals_untied_lstm_with_mixed_sets():
    torch.manual_seed(2)
    core = MixtureLSTM(3, 4, 2, num_sets=3, max_len=4).double()
    with torch.no_grad():
        for k in range(2):
            getattr(core, f"mix_logits_l{k}").normal_()
    untied = UntiedLSTM(3, 4, 2, max_len=4).double()
    with torch.no_grad():
        for k in range(2):
            a = core.mixing_coefficients(k)
            assert torch.allclose(a.sum(1), torch.ones(4, dtype=F64))
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                w = getattr(core, f"{n}_l{k}")
                for s in range(4):
                    getattr(untied, f"{n}_l{k}")[s].copy_(torch.einsum("k,k...->...", a[s], w))
    x = torch.randn(4, 2, 3, dtype=F64)
    torch.testing.assert_close(core(x, offset=0)[0], untied(x)[0], atol=1e-10, rtol=0)
    out, _ = core(x[:2], offset=2)  # slots 2, 3 only
    out.sum().backward()
    assert core.mix_logits_l0.grad[:2].abs().sum() == 0 and core.mix_logits_l0.grad[2:].abs().sum() > 0


def test_init_and_counts():
    from lrnn.rnnlm import RNNLM

    core = MixtureLSTM(5, 6, 2, num_sets=4, max_len=10, share_every=5)
    counts = core.parameter_counts()
    assert counts["num_weight_sets"] == 2 and counts["mixing"] == 2 * 2 * 4
    assert counts["total"] == sum(p.numel() for p in core.parameters())
    assert (core.mix_logits_l1 == 0).all()
    RNNLM(20, core, init_range=0.1)
    assert (core.mix_logits_l0 == 0).all() and core.weight_hh_l0.abs().max() <= 0.1
    with pytest.raises(ValueError, match="num_sets"):
        MixtureLSTM(3, 4, num_sets=0, max_len=2)
    with pytest.raises(ValueError, match="beyond max_len=2 of this MixtureLSTM"):
        MixtureLSTM(3, 4, num_sets=2, max_len=2)(torch.randn(3, 1, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("num_sets", [1, 3])
def test_cuda_matches_cpu(num_sets):
    from tests.cores.test_untied import loss_of as loss

    torch.manual_seed(13)
    core = MixtureLSTM(3, 8, 2, num_sets=num_sets, max_len=7, share_every=2).double()
    with torch.no_grad():
        core.mix_logits_l0.normal_()
    x = torch.randn(6, 4, 3, dtype=F64)
    hx = rand_state(2, 4, 8, requires_grad=False)
    outs = []
    for device in DEVICES:
        core.zero_grad(set_to_none=True)
        m = core.to(device)
        out, (h, c) = m(x.to(device), tuple(s.to(device) for s in hx), offset=1)
        loss(out, h, c).backward()
        outs.append([out.cpu(), h.cpu(), c.cpu()] + [p.grad.cpu() for p in m.parameters() if p.grad is not None])
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
