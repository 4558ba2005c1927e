"""UntiedLSTM: parity with nn.LSTM, gradients, step isolation, extrapolation and weight-set bookkeeping."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from lrnn.cores.untied import UntiedLSTM
from lrnn.kernels import step_weight
from lrnn.kernels.step_weight import step_segments

F64 = torch.float64


def naive_lstm(x: torch.Tensor, hx, num_layers: int, hidden_size: int, gates):
    """Plain-autograd LSTM stack, time-major: gates(k, t, x_t [B, in], h [B, H]) -> the pre-activations [B, 4H] of
    layer k at step t (gate order i, f, g, o). Returns out [T, B, H], (h_n, c_n)."""
    T, B, _ = x.shape
    h_n, c_n = [], []
    for k in range(num_layers):
        h, c = (x.new_zeros(B, hidden_size), x.new_zeros(B, hidden_size)) if hx is None else (hx[0][k], hx[1][k])
        outs = []
        for t in range(T):
            i, f, g, o = gates(k, t, x[t], h).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        x = torch.stack(outs)
        h_n.append(h)
        c_n.append(c)
    return x, (torch.stack(h_n), torch.stack(c_n))


def reference(core: UntiedLSTM, x: torch.Tensor, hx=None, offset: int = 0):
    """Plain-autograd untied LSTM (time-major, batched): step t uses core's weight set for position offset + t."""
    idx = core.weight_set_indices(x.shape[0], offset)

    def gates(k, t, x_t, h):
        s = idx[t]
        out = x_t @ getattr(core, f"weight_ih_l{k}")[s].t() + h @ getattr(core, f"weight_hh_l{k}")[s].t()
        return out + getattr(core, f"bias_ih_l{k}")[s] + getattr(core, f"bias_hh_l{k}")[s] if core.bias else out

    return naive_lstm(x, hx, core.num_layers, core.hidden_size, gates)


def rand_state(L: int, B: int, H: int, dtype=F64, requires_grad: bool = True):
    return tuple(torch.randn(L, B, H, dtype=dtype, requires_grad=requires_grad) for _ in range(2))


def grads(loss: torch.Tensor, tensors):
    return torch.autograd.grad(loss, tensors, allow_unused=True)


def loss_of(out, h, c):
    return (
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view_as(out)).sum()
        + h.sin().sum()
        + c.sum()
    )


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("offset,share_every", [(0, 1), (3, 1), (2, 3)])
def test_from_lstm_matches_nn_lstm(dtype, tol, num_layers, batch_first, with_state, offset, share_every):
    torch.manual_seed(0)
    T, B, D, H = 6, 3, 4, 5
    lstm = nn.LSTM(D, H, num_layers, batch_first=batch_first).to(dtype)
    core = UntiedLSTM.from_lstm(lstm, max_len=T + offset, share_every=share_every)
    assert core.batch_first == batch_first and core.num_layers == num_layers
    x = torch.randn(*((B, T) if batch_first else (T, B)), D, dtype=dtype, requires_grad=True)
    hx = rand_state(num_layers, B, H, dtype) if with_state else None
    out_ref, (h_ref, c_ref) = lstm(x, hx)
    out, (h, c) = core(x, hx, offset=offset)
    assert out.shape == out_ref.shape and h.shape == h_ref.shape and c.shape == c_ref.shape
    torch.testing.assert_close(out, out_ref, atol=tol, rtol=0)
    torch.testing.assert_close(h, h_ref, atol=tol, rtol=0)
    torch.testing.assert_close(c, c_ref, atol=tol, rtol=0)
    inputs = [x, *hx] if with_state else [x]
    for g, g_ref in zip(grads(loss_of(out, h, c), inputs), grads(loss_of(out_ref, h_ref, c_ref), inputs), strict=True):
        torch.testing.assert_close(g, g_ref, atol=tol * 10, rtol=0)


def test_from_lstm_weight_grads_sum_to_tied_grads():
    """Each set's gradient is that step's share: summed over sets they equal nn.LSTM's gradient."""
    torch.manual_seed(1)
    lstm = nn.LSTM(3, 4, 2).double()
    core = UntiedLSTM.from_lstm(lstm, max_len=5)
    x = torch.randn(5, 2, 3, dtype=F64)
    out, (h, c) = lstm(x)
    loss_of(out, h, c).backward()
    out, (h, c) = core(x)
    loss_of(out, h, c).backward()
    for name, p in lstm.named_parameters():
        summed = sum(q.grad for q in getattr(core, name))
        torch.testing.assert_close(summed, p.grad, atol=1e-12, rtol=0)


def test_unbatched_input_matches_nn_lstm():
    torch.manual_seed(2)
    lstm = nn.LSTM(3, 4, 2).double()
    core = UntiedLSTM.from_lstm(lstm, max_len=6)
    x = torch.randn(6, 3, dtype=F64)
    hx = (torch.randn(2, 4, dtype=F64), torch.randn(2, 4, dtype=F64))
    out, (h, c) = core(x, hx)
    out_ref, (h_ref, c_ref) = lstm(x, hx)
    assert out.shape == (6, 4) and h.shape == (2, 4)
    torch.testing.assert_close(out, out_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(c, c_ref, atol=1e-12, rtol=0)


@pytest.mark.parametrize("share_every,offset,extrapolation", [(1, 0, "error"), (2, 1, "error"), (3, 4, "cycle")])
def test_matches_reference_with_distinct_sets(share_every, offset, extrapolation):
    """With independent random weight sets: outputs and every parameter gradient equal a plain-autograd loop."""
    torch.manual_seed(3)
    core = UntiedLSTM(3, 4, 2, max_len=7, share_every=share_every, extrapolation=extrapolation).double()
    x = torch.randn(6, 2, 3, dtype=F64, requires_grad=True)
    hx = rand_state(2, 2, 4)
    out, (h, c) = core(x, hx, offset=offset)
    out_ref, (h_ref, c_ref) = reference(core, x, hx, offset)
    for a, b in [(out, out_ref), (h, h_ref), (c, c_ref)]:
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    params = [x, *hx, *core.parameters()]
    for g, g_ref in zip(grads(loss_of(out, h, c), params), grads(loss_of(out_ref, h_ref, c_ref), params), strict=True):
        assert (g is None) == (g_ref is None)
        if g is not None:
            torch.testing.assert_close(g, g_ref, atol=1e-12, rtol=0)


@pytest.mark.parametrize("share_every", [1, 3])
def test_blocked_weight_gradients_match_reference(share_every, monkeypatch):
    """The CPU path that computes large weight gradients in zero-filled row blocks (forced here, ragged blocks of 3
    rows)."""
    monkeypatch.setattr(step_weight, "_PREFETCH_UP_TO", 0)  # every gradient in blocks
    monkeypatch.setattr(step_weight, "_DW_BLOCK_BYTES", 3 * 4 * 8)  # 3 rows of a [16, 4] float64 gradient
    torch.manual_seed(5)
    core = UntiedLSTM(4, 4, 2, max_len=6, share_every=share_every).double()
    x = torch.randn(6, 3, 4, dtype=F64, requires_grad=True)
    out, (h, c) = core(x)
    out_ref, (h_ref, c_ref) = reference(core, x)
    params = list(core.parameters())
    for g, g_ref in zip(grads(loss_of(out, h, c), params), grads(loss_of(out_ref, h_ref, c_ref), params), strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-12, rtol=0)


def test_grad_product_blocks_cover_every_row(monkeypatch):
    g, inp = torch.randn(7, 50, dtype=F64), torch.randn(7, 9, dtype=F64)
    expected = g.t() @ inp
    torch.testing.assert_close(step_weight._grad_product(g, inp), expected, atol=1e-12, rtol=0)  # one product
    monkeypatch.setattr(step_weight, "_PREFETCH_UP_TO", 0)  # every gradient in blocks
    monkeypatch.setattr(step_weight, "_DW_BLOCK_BYTES", 9 * 8 * 8)  # blocks of 8 rows: 6 full ones and one of 2
    blocked = step_weight._grad_product(g, inp)
    assert blocked.is_contiguous() and blocked.shape == (50, 9)
    torch.testing.assert_close(blocked, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "share_every,offset,extrapolation,T",
    [(1, 0, "error", 5), (2, 1, "error", 4), (2, 0, "cycle", 7), (1, 2, "clamp", 6)],
)
def test_gradcheck(share_every, offset, extrapolation, T):
    torch.manual_seed(4)
    core = UntiedLSTM(2, 3, 2, max_len=5, share_every=share_every, extrapolation=extrapolation).double()
    x = torch.randn(T, 2, 2, dtype=F64, requires_grad=True)
    hx = rand_state(2, 2, 3)
    params = [p for p in core.parameters()]

    def fn(x, h0, c0, *ps):
        out, (h, c) = core(x, (h0, c0), offset=offset)
        return out, h, c

    # parameters of sets no step uses get no gradient: gradcheck sees them as inputs with zero gradient
    assert torch.autograd.gradcheck(fn, (x, *hx, *params), eps=1e-6, atol=1e-5)


def test_gradcheck_batch_first_no_bias():
    torch.manual_seed(5)
    core = UntiedLSTM(2, 3, 1, max_len=4, bias=False, batch_first=True).double()
    x = torch.randn(2, 4, 2, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *ps: core(x)[0], (x, *core.parameters()))


@pytest.mark.parametrize("share_every", [1, 2])
def test_step_isolation(share_every):
    """A loss on step t reaches exactly the sets of steps 0..t; later sets get no gradient."""
    torch.manual_seed(6)
    T, t_loss = 8, 4
    core = UntiedLSTM(3, 4, 2, max_len=T, share_every=share_every).double()
    x = torch.randn(T, 2, 3, dtype=F64)
    out, _ = core(x)
    out[t_loss].sum().backward()
    last_used = t_loss // share_every
    for name in ("weight_ih_l0", "weight_hh_l1", "bias_ih_l0", "bias_hh_l1"):
        sets = getattr(core, name)
        for s, p in enumerate(sets):
            if s <= last_used:
                if not (name.startswith("weight_hh") and s == 0 and share_every == 1):  # h_{-1} = 0: no hh grad
                    assert p.grad is not None and p.grad.abs().sum() > 0, (name, s)
            else:
                assert p.grad is None or not p.grad.any(), (name, s)


def test_shorter_sequence_than_max_len_leaves_later_sets_untouched():
    torch.manual_seed(7)
    core = UntiedLSTM(3, 4, 1, max_len=10)
    out, _ = core(torch.randn(3, 2, 3))
    assert out.shape == (3, 2, 4)
    out.sum().backward()
    assert all(p.grad is not None for p in list(core.weight_ih_l0)[:3])
    assert all(p.grad is None for p in list(core.weight_ih_l0)[3:])


def test_share_every_boundaries_use_different_sets():
    torch.manual_seed(8)
    k = 3
    core = UntiedLSTM(3, 4, 1, max_len=9, share_every=k).double()
    assert core.num_weight_sets == 3
    assert core.weight_set_indices(9) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert core.weight_set_index(k - 1) != core.weight_set_index(k)
    x = torch.randn(9, 2, 3, dtype=F64)
    before, _ = core(x)
    with torch.no_grad():
        core.weight_ih_l0[1].add_(0.5)  # only steps k .. 2k-1 use set 1
    after, _ = core(x)
    assert torch.equal(before[:k], after[:k])
    assert not torch.allclose(before[k], after[k])


def test_one_set_is_a_tied_lstm():
    core = UntiedLSTM(3, 4, 1, max_len=6, share_every=6)
    assert core.num_weight_sets == 1 and core.weight_set_indices(6) == [0] * 6
    assert UntiedLSTM(3, 4, max_len=6, share_every=100).num_weight_sets == 1
    assert UntiedLSTM(3, 4, max_len=7, share_every=2).num_weight_sets == 4


def test_extrapolation_error_names_position_and_fixes():
    core = UntiedLSTM(3, 4, max_len=5)
    core(torch.randn(5, 1, 3))  # positions 0..4 are fine
    with pytest.raises(ValueError, match="position 5") as err:
        core(torch.randn(3, 1, 3), offset=3)
    msg = str(err.value)
    assert "max_len=5" in msg and "clamp" in msg and "cycle" in msg
    with pytest.raises(ValueError, match="position 5"):
        core(torch.randn(7, 1, 3))  # the first position without weights is named


def test_extrapolation_clamp_reuses_last_set():
    torch.manual_seed(9)
    core = UntiedLSTM(3, 4, 2, max_len=4, share_every=2, extrapolation="clamp").double()
    assert core.weight_set_indices(7) == [0, 0, 1, 1, 1, 1, 1]
    x = torch.randn(3, 2, 3, dtype=F64)
    hx = rand_state(2, 2, 4, requires_grad=False)
    far, _ = core(x, hx, offset=100)  # every step uses the last set
    last, _ = core(x, hx, offset=3)  # positions 3, 4, 5: set 1 (position 3 by right, 4 and 5 clamped)
    torch.testing.assert_close(far, last, atol=0, rtol=0)


def test_extrapolation_cycle_wraps_modulo_max_len():
    torch.manual_seed(10)
    core = UntiedLSTM(3, 4, 2, max_len=4, extrapolation="cycle").double()
    assert core.weight_set_indices(6, offset=2) == [2, 3, 0, 1, 2, 3]
    x = torch.randn(6, 2, 3, dtype=F64)
    torch.testing.assert_close(core(x, offset=4)[0], core(x, offset=0)[0], atol=0, rtol=0)
    torch.testing.assert_close(core(x, offset=9)[0], core(x, offset=1)[0], atol=0, rtol=0)
    assert not torch.allclose(core(x, offset=1)[0], core(x, offset=0)[0])
    out, _ = core(x, offset=2)  # runs past max_len: sets 2, 3 are used twice
    torch.testing.assert_close(out, reference(core, x, offset=2)[0], atol=1e-12, rtol=0)


def test_parameter_counts():
    lstm = nn.LSTM(3, 4, 2)
    core = UntiedLSTM(3, 4, 2, max_len=7, share_every=2)
    counts = core.parameter_counts()
    n_lstm = sum(p.numel() for p in lstm.parameters())
    assert counts["num_weight_sets"] == core.num_weight_sets == 4
    assert counts["per_set"] == n_lstm
    assert counts["total"] == 4 * n_lstm == sum(p.numel() for p in core.parameters())
    assert core.num_recurrent_parameters == counts["recurrent"] == 4 * 2 * 4 * 4 * 4
    assert counts["input"] + counts["recurrent"] + counts["bias"] == counts["total"]
    assert core.stacked("weight_ih_l1").shape == (4, 16, 4)
    assert UntiedLSTM(3, 4, 2, max_len=7, bias=False).parameter_counts()["bias"] == 0


def test_init_like_nn_lstm_and_sets_differ():
    torch.manual_seed(11)
    core = UntiedLSTM(3, 16, 1, max_len=3)
    bound = 1 / 16**0.5
    for p in core.parameters():
        assert p.abs().max() <= bound
    assert not torch.equal(core.weight_hh_l0[0], core.weight_hh_l0[1])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_len": 0},
        {"max_len": 2.5},
        {"max_len": 4, "share_every": 0},
        {"max_len": 4, "extrapolation": "wrap"},
        {"max_len": 4, "dropout": 1.5},
    ],
)
def test_constructor_validation(kwargs):
    with pytest.raises(ValueError):
        UntiedLSTM(3, 4, 2, **kwargs)
    with pytest.raises(ValueError, match="hidden_size"):
        UntiedLSTM(3, 0, max_len=3)


def test_bad_calls():
    core = UntiedLSTM(3, 4, 2, max_len=5)
    with pytest.raises(ValueError, match="offset"):
        core(torch.randn(2, 1, 3), offset=-1)
    with pytest.raises(ValueError, match="input_size"):
        core(torch.randn(2, 1, 5))
    with pytest.raises(ValueError, match="h0"):
        core(torch.randn(2, 1, 3), (torch.zeros(1, 1, 4), torch.zeros(2, 1, 4)))


def test_from_lstm_rejects_unsupported_and_copies_config():
    with pytest.raises(ValueError, match="proj_size"):
        UntiedLSTM.from_lstm(nn.LSTM(3, 4, proj_size=2), max_len=3)
    with pytest.raises(ValueError, match="bidirectional"):
        UntiedLSTM.from_lstm(nn.LSTM(3, 4, bidirectional=True), max_len=3)
    core = UntiedLSTM.from_lstm(nn.LSTM(3, 4, 3, bias=False, batch_first=True, dropout=0.25), max_len=3)
    assert (core.num_layers, core.bias, core.batch_first, core.dropout) == (3, False, True, 0.25)

    class Sub(nn.LSTM):
        pass

    assert UntiedLSTM.from_lstm(Sub(3, 4), max_len=2).num_weight_sets == 2


def test_dropout_between_layers_in_training_only():
    torch.manual_seed(12)
    core = UntiedLSTM(3, 4, 2, max_len=5, dropout=0.5)
    x = torch.randn(5, 2, 3)
    core.eval()
    torch.testing.assert_close(core(x)[0], core(x)[0])
    ref = core(x)[0]
    core.train()
    assert not torch.allclose(core(x)[0], ref)
    one = UntiedLSTM(3, 4, 2, max_len=5, dropout=0.0).train()
    torch.testing.assert_close(one(x)[0], one(x)[0])


def test_step_segments():
    assert step_segments([0, 1, 2, 3]) == [(0, 4, 0, True)]
    assert step_segments([0, 0, 1, 1, 1]) == [(0, 2, 0, False), (2, 5, 1, False)]
    assert step_segments([2, 3, 0, 1]) == [(0, 2, 2, True), (2, 4, 0, True)]
    assert step_segments([0, 1, 1, 2]) == [(0, 1, 0, False), (1, 3, 1, False), (3, 4, 2, False)]
    assert step_segments([5]) == [(0, 1, 5, False)]


def test_double_backward_is_refused():
    core = UntiedLSTM(2, 3, 1, max_len=3).double()
    x = torch.randn(3, 1, 2, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(core(x)[0].sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("fused", [True, False])
def test_cuda_matches_cpu(fused, monkeypatch):
    monkeypatch.setattr(step_weight, "USE_FUSED_CUDA_CELL", fused)
    torch.manual_seed(13)
    core = UntiedLSTM(3, 8, 2, max_len=7, share_every=2).double()
    x = torch.randn(6, 4, 3, dtype=F64)
    hx = rand_state(2, 4, 8, requires_grad=False)
    outs = []
    for device in ("cpu", "cuda"):
        core.zero_grad(set_to_none=True)
        m = core.to(device)
        out, (h, c) = m(x.to(device), tuple(s.to(device) for s in hx), offset=1)
        loss_of(out, h, c).backward()
        outs.append([out.cpu(), h.cpu(), c.cpu()] + [p.grad.cpu() for p in m.parameters() if p.grad is not None])
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
