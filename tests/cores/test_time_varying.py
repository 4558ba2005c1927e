"""TimeVaryingLSTM: tied-LSTM parity, gradients, the basis functions and the per-step weights it builds."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from lrnn.cores.time_varying import TimeVaryingLSTM, basis_functions
from lrnn.cores.untied import UntiedLSTM

F64 = torch.float64


@pytest.mark.parametrize("basis", ["fourier", "gaussian", "legendre"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("offset", [0, 5, 300])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_from_lstm_matches_nn_lstm(basis, batch_first, offset, dtype, tol):
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, 2, batch_first=batch_first).to(dtype)
    core = TimeVaryingLSTM.from_lstm(lstm, num_bases=3, period=16.0, basis=basis)
    x = torch.randn(*((2, 7) if batch_first else (7, 2)), 3, dtype=dtype, requires_grad=True)
    hx = tuple(torch.randn(2, 2, 4, dtype=dtype, requires_grad=True) for _ in range(2))
    out, (h, c) = core(x, hx, offset=offset)
    out_ref, (h_ref, c_ref) = lstm(x, hx)
    for a, b in [(out, out_ref), (h, h_ref), (c, c_ref)]:
        torch.testing.assert_close(a, b, atol=tol, rtol=0)
    g = torch.autograd.grad(out.sum() + c.sum(), [x, *hx])
    g_ref = torch.autograd.grad(out_ref.sum() + c_ref.sum(), [x, *hx])
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=tol * 10, rtol=0)


@pytest.mark.parametrize("basis,num_bases", [("fourier", 4), ("gaussian", 3), ("fourier", 1), ("legendre", 4)])
def test_gradcheck(basis, num_bases):
    torch.manual_seed(1)
    core = TimeVaryingLSTM(2, 3, 2, num_bases=num_bases, period=6.0, basis=basis).double()
    x = torch.randn(4, 2, 2, dtype=F64, requires_grad=True)
    hx = tuple(torch.randn(2, 2, 3, dtype=F64, requires_grad=True) for _ in range(2))

    def fn(x, h0, c0, *ps):
        out, (h, c) = core(x, (h0, c0), offset=3)
        return out, h, c

    # fast_mode: checks random projections of the Jacobian (a full check of the mixing is slow for no gain; the
    # per-step machinery underneath gets the full check in test_untied.py)
    assert torch.autograd.gradcheck(fn, (x, *hx, *core.parameters()), eps=1e-6, atol=1e-5, fast_mode=True)


def test_equals_untied_lstm_with_the_mixed_weights():
    """The mixing is the only difference from an UntiedLSTM: copy the mixed per-step weights into one."""
    torch.manual_seed(2)
    T, offset = 6, 2
    core = TimeVaryingLSTM(3, 4, 2, num_bases=3, period=10.0).double()
    untied = UntiedLSTM(3, 4, 2, max_len=T).double()
    with torch.no_grad():
        for k, layer in enumerate(core.step_weights(T, offset)):
            for name, sets in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), layer, strict=True):
                for s, w in enumerate(sets):
                    getattr(untied, f"{name}_l{k}")[s].copy_(w)
    x = torch.randn(T, 2, 3, dtype=F64)
    torch.testing.assert_close(core(x, offset=offset)[0], untied(x)[0], atol=1e-12, rtol=0)


def test_weights_depend_on_position():
    torch.manual_seed(3)
    core = TimeVaryingLSTM(3, 4, 1, num_bases=4, period=8.0).double()
    x = torch.randn(5, 2, 3, dtype=F64)
    assert not torch.allclose(core(x, offset=0)[0], core(x, offset=1)[0])
    torch.testing.assert_close(core(x, offset=0)[0], core(x, offset=8)[0])  # fourier: periodic in the position
    g = TimeVaryingLSTM(3, 4, 1, num_bases=4, period=8.0, basis="gaussian").double()
    assert not torch.allclose(g(x, offset=0)[0], g(x, offset=8)[0])  # gaussian: not periodic


def test_gradient_reaches_every_basis():
    torch.manual_seed(4)
    for basis in ("fourier", "gaussian", "legendre"):
        core = TimeVaryingLSTM(3, 4, 2, num_bases=4, period=12.0, basis=basis)
        out, _ = core(torch.randn(9, 2, 3), offset=1)
        out.sum().backward()
        for p in core.parameters():
            assert p.grad is not None and (p.grad.flatten(1).abs().sum(1) > 0).all()


def test_basis_functions():
    p = torch.arange(0, 50, dtype=F64)
    four = basis_functions(p, 5, 20.0, "fourier")
    assert four.shape == (50, 5)
    assert torch.equal(four[:, 0], torch.ones(50, dtype=F64))
    torch.testing.assert_close(four[:, 1], torch.cos(2 * torch.pi * p / 20))
    torch.testing.assert_close(four[:, 4], torch.sin(4 * torch.pi * p / 20))
    gauss = basis_functions(p, 4, 30.0, "gaussian")
    torch.testing.assert_close(gauss.sum(1), torch.ones(50, dtype=F64))
    assert gauss[0].argmax() == 0 and gauss[30].argmax() == 3 and gauss[10].argmax() == 1
    far = basis_functions(torch.tensor([1000.0, 5000.0], dtype=F64), 4, 30.0, "gaussian")
    torch.testing.assert_close(far, torch.tensor([[0.0, 0, 0, 1]] * 2, dtype=F64))  # saturates past the horizon
    for a in (basis_functions(p, 5, 100.0, "fourier"), gauss):  # smooth: neighbouring positions are close
        assert (a[1:] - a[:-1]).abs().max() < 0.2
    torch.testing.assert_close(basis_functions(p, 1, 5.0, "gaussian"), torch.ones(50, 1, dtype=F64))


def test_legendre_basis():
    p = torch.arange(0, 201, dtype=F64)
    leg = basis_functions(p, 4, 200.0, "legendre")
    x = 2 * p / 200 - 1
    expected = torch.stack([torch.ones_like(x), x, (3 * x**2 - 1) / 2, (5 * x**3 - 3 * x) / 2], dim=1)
    torch.testing.assert_close(leg, expected)
    assert leg.abs().max() <= 1 + 1e-12  # bounded on [0, period]
    assert (leg[1:] - leg[:-1]).abs().max() < 0.1  # smooth
    assert torch.equal(basis_functions(p, 1, 200.0, "legendre"), torch.ones(201, 1, dtype=F64))
    # not periodic: no two positions of the range share their coefficients (P_1 is strictly increasing)
    assert (leg[1:, 1] > leg[:-1, 1]).all()


def _windows(core, x, window):
    """Run x [T, B, in] as consecutive windows of `window` steps, positions restarting at 0, state carried: what
    stream evaluation at window length `window` computes."""
    outs, state = [], None
    for chunk in x.split(window):
        out, state = core(chunk, state, offset=0)
        outs.append(out)
    return torch.cat(outs)


def test_legendre_differs_by_position_and_window_length():
    """C8's core: with a non-periodic basis the weights at positions 5 and 150 differ, and windows of 20 and 160
    are different computations. The same check on a Fourier basis of period 20 (the old C8 set-up) shows that it
    can fail: there both windows give the same outputs."""
    torch.manual_seed(5)
    x = torch.randn(160, 2, 3, dtype=F64)
    core = TimeVaryingLSTM(3, 4, 1, num_bases=4, period=256.0, basis="legendre").double()
    (w5,), (w150,) = (core.step_weights(1, offset=p)[0][0] for p in (5, 150))
    assert (w5 - w150).abs().max() > 1e-3
    assert (_windows(core, x, 20) - _windows(core, x, 160)).abs().max() > 1e-3
    periodic = TimeVaryingLSTM(3, 4, 1, num_bases=4, period=20.0, basis="fourier").double()
    (p5,), (p145,) = (periodic.step_weights(1, offset=p)[0][0] for p in (5, 145))
    torch.testing.assert_close(p5, p145)
    torch.testing.assert_close(_windows(periodic, x, 20), _windows(periodic, x, 160))


def test_fixed_parameter_budget_and_any_length():
    lstm = nn.LSTM(3, 4, 2)
    core = TimeVaryingLSTM(3, 4, 2, num_bases=5)
    n = sum(p.numel() for p in lstm.parameters())
    assert sum(p.numel() for p in core.parameters()) == 5 * n == core.parameter_counts()["total"]
    out, (h, c) = core(torch.randn(300, 1, 3), offset=1000)  # longer than the period, far positions
    assert out.shape == (300, 1, 4) and h.shape == c.shape == (2, 1, 4)


@pytest.mark.parametrize(
    "kwargs", [{"num_bases": 0}, {"period": 0.0}, {"period": -1.0}, {"basis": "chebyshev"}, {"dropout": -0.1}]
)
def test_constructor_validation(kwargs):
    with pytest.raises(ValueError):
        TimeVaryingLSTM(3, 4, 2, **kwargs)


def test_from_lstm_rejects_unsupported():
    with pytest.raises(ValueError, match="proj_size"):
        TimeVaryingLSTM.from_lstm(nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="bidirectional"):
        TimeVaryingLSTM.from_lstm(nn.LSTM(3, 4, bidirectional=True))
    with pytest.raises(ValueError, match="offset"):
        TimeVaryingLSTM(3, 4)(torch.randn(2, 1, 3), offset=-1)
