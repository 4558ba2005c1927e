"""SoftTiedLSTM: from_lstm equals nn.LSTM, deltas make it untied, the penalty and its gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from lrnn import SoftTiedLSTM, UntiedLSTM
from tests.cores.test_untied import grads, loss_of, rand_state

F64 = torch.float64
DEVICES = ("cpu", "cuda")  # the CUDA tests compare these


@pytest.mark.parametrize("rank", [None, 2])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("offset,share_every", [(0, 1), (2, 3)])
def test_from_lstm_matches_nn_lstm(rank, num_layers, batch_first, offset, share_every):
    torch.manual_seed(0)
    T, B, D, H = 6, 3, 4, 5
    lstm = nn.LSTM(D, H, num_layers, batch_first=batch_first).double()
    core = SoftTiedLSTM.from_lstm(lstm, max_len=T + offset, share_every=share_every, rank=rank, penalty=0.5)
    x = torch.randn(*((B, T) if batch_first else (T, B)), D, dtype=F64, requires_grad=True)
    hx = rand_state(num_layers, B, H)
    out_ref, (h_ref, c_ref) = lstm(x, hx)
    out, (h, c) = core(x, hx, offset=offset)
    for a, b in ((out, out_ref), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    inputs = [x, *hx]
    shared = [getattr(core, n) for n, _ in lstm.named_parameters()]
    ref_params = list(lstm.parameters())
    got = grads(loss_of(out, h, c), inputs + shared)
    want = grads(loss_of(out_ref, h_ref, c_ref), inputs + ref_params)
    for g, g_ref in zip(got, want, strict=True):  # the shared set's gradient is nn.LSTM's
        torch.testing.assert_close(g, g_ref, atol=1e-9, rtol=0)
    assert core.regularization().item() == 0.0


def test_full_rank_deltas_give_an_untied_lstm():
    """W + Δ_s equals an UntiedLSTM holding those sets, and Δ_s gets set s's gradient."""
    torch.manual_seed(1)
    core = SoftTiedLSTM(3, 4, 2, max_len=5).double()
    with torch.no_grad():
        for n, p in core.named_parameters():
            if n.startswith("delta_"):
                p.normal_()
    untied = UntiedLSTM(3, 4, 2, max_len=5).double()
    with torch.no_grad():
        for k in range(2):
            d_ih, d_hh, d_b = core.deltas(k)
            for s in range(5):
                getattr(untied, f"weight_ih_l{k}")[s].copy_(getattr(core, f"weight_ih_l{k}") + d_ih[s])
                getattr(untied, f"weight_hh_l{k}")[s].copy_(getattr(core, f"weight_hh_l{k}") + d_hh[s])
                getattr(untied, f"bias_ih_l{k}")[s].copy_(getattr(core, f"bias_ih_l{k}") + d_b[s])
                getattr(untied, f"bias_hh_l{k}")[s].copy_(getattr(core, f"bias_hh_l{k}"))
    x = torch.randn(5, 2, 3, dtype=F64)
    out, (h, c) = core(x)
    out_ref, (h_ref, c_ref) = untied(x)
    torch.testing.assert_close(out, out_ref, atol=1e-10, rtol=0)
    loss_of(out, h, c).backward()
    loss_of(out_ref, h_ref, c_ref).backward()
    for s in range(5):
        torch.testing.assert_close(core.delta_hh_l1.grad[s], untied.weight_hh_l1[s].grad, atol=1e-10, rtol=0)
        torch.testing.assert_close(core.delta_ih_l0.grad[s], untied.weight_ih_l0[s].grad, atol=1e-10, rtol=0)
    summed = sum(untied.weight_hh_l0[s].grad for s in range(5))
    torch.testing.assert_close(core.weight_hh_l0.grad, summed, atol=1e-10, rtol=0)


@pytest.mark.parametrize("rank", [None, 3])
def test_regularization_is_zero_at_init_and_its_gradient_is_2_penalty_delta(rank):
    torch.manual_seed(2)
    penalty = 0.3
    core = SoftTiedLSTM(3, 4, 2, max_len=4, rank=rank, penalty=penalty).double()
    reg = core.regularization()
    assert reg.dim() == 0 and reg.item() == 0.0
    names = [n for n, _ in core.named_parameters() if n.startswith("delta_")]
    assert names and all(
        (p == 0).all() for n, p in core.named_parameters() if n.startswith("delta_") and "_v_" not in n
    )
    with torch.no_grad():
        for n in names:
            getattr(core, n).normal_()
    params = dict(core.named_parameters())
    total = sum(penalty * sum(d.square().sum() for d in core.deltas(k)) for k in range(2))
    reg = core.regularization()
    torch.testing.assert_close(reg, total, atol=1e-10, rtol=1e-12)
    reg.backward()
    for k in range(2):
        torch.testing.assert_close(params[f"delta_bias_l{k}"].grad, 2 * penalty * params[f"delta_bias_l{k}"])
        for part in ("ih", "hh"):
            if rank is None:
                d = params[f"delta_{part}_l{k}"]
                torch.testing.assert_close(d.grad, 2 * penalty * d, atol=1e-10, rtol=0)
            else:  # chain rule through Δ = U Vᵀ: dU = 2 p Δ V, dV = 2 p Δᵀ U
                u, v = params[f"delta_{part}_u_l{k}"], params[f"delta_{part}_v_l{k}"]
                delta = u @ v.transpose(1, 2)
                torch.testing.assert_close(u.grad, 2 * penalty * delta @ v, atol=1e-10, rtol=0)
                torch.testing.assert_close(v.grad, 2 * penalty * delta.transpose(1, 2) @ u, atol=1e-10, rtol=0)
    for n, p in params.items():
        if not n.startswith("delta_"):
            assert p.grad is None  # the penalty does not touch the shared set


def test_low_rank_deltas_start_at_zero_but_learn():
    torch.manual_seed(3)
    core = SoftTiedLSTM(3, 4, 1, max_len=3, rank=2)
    out, _ = core(torch.randn(3, 2, 3))
    out.square().sum().backward()
    assert core.delta_hh_u_l0.grad.abs().sum() > 0  # U moves first ...
    assert (core.delta_hh_v_l0.grad == 0).all()  # ... V's gradient is U-weighted, so zero until then


def test_parameter_counts():
    H, D, S = 6, 5, 4
    full = SoftTiedLSTM(D, H, 2, max_len=8, share_every=2)
    per_set_full = 4 * H * (D + H) + 4 * H * (H + H) + 2 * 4 * H
    counts = full.parameter_counts()
    assert counts["num_weight_sets"] == S and counts["per_set"] == per_set_full
    assert counts["total"] == sum(p.numel() for p in full.parameters()) == counts["shared"] + S * per_set_full
    low = SoftTiedLSTM(D, H, 2, max_len=8, share_every=2, rank=3)
    per_set_low = 3 * (4 * H + D) + 3 * (4 * H + H) + 3 * (4 * H + H) + 3 * (4 * H + H) + 2 * 4 * H
    assert low.parameter_counts()["per_set"] == per_set_low
    assert low.parameter_counts()["total"] == sum(p.numel() for p in low.parameters())


def test_init_range_in_rnnlm_keeps_deltas_zero():
    from lrnn.rnnlm import RNNLM

    model = RNNLM(20, SoftTiedLSTM(4, 4, max_len=3, rank=2), init_range=0.1)
    core = model.core
    assert (core.delta_hh_u_l0 == 0).all() and (core.delta_bias_l0 == 0).all()
    assert 0 < core.delta_hh_v_l0.abs().max() <= 0.1 and core.weight_hh_l0.abs().max() <= 0.1


def test_extrapolation_and_bad_arguments():
    core = SoftTiedLSTM(3, 4, max_len=2)
    with pytest.raises(ValueError, match="beyond max_len=2 of this SoftTiedLSTM"):
        core(torch.randn(3, 1, 3))
    clamp = SoftTiedLSTM(3, 4, max_len=2, extrapolation="clamp")
    assert clamp.weight_set_indices(4) == [0, 1, 1, 1]
    assert clamp(torch.randn(4, 1, 3))[0].shape == (4, 1, 4)
    with pytest.raises(ValueError, match="rank"):
        SoftTiedLSTM(3, 4, max_len=2, rank=0)
    with pytest.raises(ValueError, match="penalty"):
        SoftTiedLSTM(3, 4, max_len=2, penalty=-1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("rank", [None, 2])
def test_cuda_matches_cpu(rank):
    torch.manual_seed(13)
    core = SoftTiedLSTM(3, 8, 2, max_len=7, share_every=2, rank=rank, penalty=0.1).double()
    with torch.no_grad():
        for n, p in core.named_parameters():
            if n.startswith("delta_"):
                p.normal_(std=0.1)
    x = torch.randn(6, 4, 3, dtype=F64)
    hx = rand_state(2, 4, 8, requires_grad=False)
    outs = []
    for device in DEVICES:
        core.zero_grad(set_to_none=True)
        m = core.to(device)
        out, (h, c) = m(x.to(device), tuple(s.to(device) for s in hx), offset=1)
        (loss_of(out, h, c) + m.regularization()).backward()
        outs.append([out.cpu(), h.cpu(), c.cpu()] + [p.grad.cpu() for p in m.parameters() if p.grad is not None])
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
