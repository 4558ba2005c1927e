"""The fast paths of the step-weight LSTM math: fused torch LSTM calls for shared runs, reused gradient memory."""

from __future__ import annotations

import pytest
import torch

from lrnn.cores.untied import UntiedLSTM
from lrnn.kernels import GradBuffers, step_weight

F64 = torch.float64


def run_both(core: UntiedLSTM, x: torch.Tensor, hx, offset: int, monkeypatch) -> list[list[torch.Tensor]]:
    """Outputs and all gradients with the fused runs and with StepWeightLSTMLayer, same dropout masks. On CPU the fused
    runs are the path without lrnn's compiled kernels, so those are switched off here (tests/cores/test_native.py
    compares the kernels with the Python loops)."""
    monkeypatch.setattr(step_weight, "USE_NATIVE_CPU", False)
    results = []
    for fuse in (True, False):
        monkeypatch.setattr(step_weight, "FUSE_SHARED_RUNS", fuse)
        core.zero_grad(set_to_none=True)
        inputs = [x] + ([] if hx is None else list(hx))
        torch.manual_seed(5)
        out, (h, c) = core(x, hx, offset=offset)
        loss = (out * torch.linspace(-1, 1, out.numel(), dtype=F64).view_as(out)).sum() + h.sin().sum() + c.sum()
        got = torch.autograd.grad(loss, inputs + list(core.parameters()), allow_unused=True)
        results.append([out, h, c] + [torch.zeros(()) if g is None else g for g in got])
    return results


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.4])
@pytest.mark.parametrize(
    "offset,extrapolation,T", [(0, "error", 9), (2, "error", 7), (4, "clamp", 11), (5, "cycle", 14), (1, "error", 1)]
)
def test_fused_runs_match_the_step_weight_function(batch_first, dropout, offset, extrapolation, T, monkeypatch):
    """share_every >= 2 runs blocks as torch LSTM calls: same outputs and gradients as the per-step Function,
    including offsets that start mid-block, clamp/cycle past max_len, dropout between layers and batch_first."""
    torch.manual_seed(0)
    core = UntiedLSTM(
        3, 5, 2, max_len=9, share_every=3, batch_first=batch_first, dropout=dropout, extrapolation=extrapolation
    ).to(F64)
    x = torch.randn(2, T, 3, dtype=F64) if batch_first else torch.randn(T, 2, 3, dtype=F64)
    x.requires_grad_()
    hx = tuple(torch.randn(2, 2, 5, dtype=F64, requires_grad=True) for _ in range(2))
    fused, reference = run_both(core, x, hx, offset, monkeypatch)
    for a, b in zip(fused, reference, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_fused_runs_unbatched_no_bias_no_state(monkeypatch):
    torch.manual_seed(1)
    core = UntiedLSTM(3, 4, 1, max_len=8, share_every=4, bias=False).to(F64)
    x = torch.randn(8, 3, dtype=F64, requires_grad=True)
    fused, reference = run_both(core, x, None, 0, monkeypatch)
    for a, b in zip(fused, reference, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_fused_runs_are_used_for_shared_blocks(monkeypatch):
    monkeypatch.setattr(step_weight, "USE_NATIVE_CPU", False)
    calls = []
    original = step_weight._lstm_runs
    monkeypatch.setattr(step_weight, "_lstm_runs", lambda *a: calls.append(a[3]) or original(*a))
    UntiedLSTM(2, 3, 1, max_len=10, share_every=5)(torch.randn(10, 1, 2))
    assert calls == [[(0, 5, 0), (5, 10, 1)]]
    calls.clear()
    UntiedLSTM(2, 3, 1, max_len=10)(torch.randn(10, 1, 2))  # untied: the step-weight Function
    assert calls == []


def untied_grads(core: UntiedLSTM, x: torch.Tensor) -> list[torch.Tensor]:
    core(x)[0].sin().sum().backward()
    return [p.grad for p in core.parameters()]


def test_weight_gradients_reuse_memory_when_set_to_none():
    torch.manual_seed(0)
    core = UntiedLSTM(4, 6, 2, max_len=5)
    x = torch.randn(5, 3, 4)
    first = [g.data_ptr() for g in untied_grads(core, x)[:2]]
    core.zero_grad(set_to_none=True)
    again = [g.data_ptr() for g in untied_grads(core, x)[:2]]
    assert again == first  # the same memory, no new allocation


def test_a_gradient_someone_holds_is_never_overwritten():
    torch.manual_seed(0)
    core = UntiedLSTM(4, 6, 1, max_len=5)
    x1, x2 = torch.randn(5, 3, 4), torch.randn(5, 3, 4)
    held = untied_grads(core, x1)
    snapshot = [g.clone() for g in held]
    core.zero_grad(set_to_none=True)
    new = untied_grads(core, x2)
    for g, s in zip(held, snapshot, strict=True):
        torch.testing.assert_close(g, s, rtol=0, atol=0)
    fresh = UntiedLSTM(4, 6, 1, max_len=5)
    fresh.load_state_dict(core.state_dict())
    for a, b in zip(new, untied_grads(fresh, x2), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_accumulated_gradients_and_hooks_are_exact():
    """grads accumulated over two backwards (no zero_grad) equal the sum; tensor hooks see every gradient."""
    torch.manual_seed(0)
    core = UntiedLSTM(4, 6, 2, max_len=5).to(F64)
    xs = [torch.randn(5, 3, 4, dtype=F64) for _ in range(3)]
    seen = []
    core.weight_hh_l1[2].register_hook(lambda g: seen.append(g.clone()))
    for _ in range(2):  # twice: the second round runs on reused buffers
        core.zero_grad(set_to_none=True)
        for x in xs:
            core(x)[0].sin().sum().backward()
    singles = []
    for x in xs:
        fresh = UntiedLSTM(4, 6, 2, max_len=5).to(F64)
        fresh.load_state_dict(core.state_dict())
        singles.append(untied_grads(fresh, x))
    for p, *parts in zip(core.parameters(), *singles, strict=True):
        torch.testing.assert_close(p.grad, sum(parts), rtol=0, atol=1e-12)
    assert len(seen) == 6
    position = [p is core.weight_hh_l1[2] for p in core.parameters()].index(True)
    torch.testing.assert_close(seen[-1], singles[-1][position])


def test_grad_buffers_pool():
    pool, like = GradBuffers(max_per_key=2), torch.zeros(1)
    a = pool.take("k", (2, 3), like)
    ptr_a = a.data_ptr()
    assert pool.take("k", (2, 3), like).data_ptr() != ptr_a  # a is still held: never handed out twice
    del a
    a = pool.take("k", (2, 3), like)
    assert a.data_ptr() == ptr_a  # released: reused
    b = pool.take("k", (2, 3), like)
    assert b.data_ptr() != ptr_a
    c = pool.take("k", (2, 3), like)  # both busy, pool full: a new tensor, not kept
    assert c.data_ptr() not in (ptr_a, b.data_ptr())
    ptr_b = b.data_ptr()
    del b
    assert pool.take("k", (2, 3), like).data_ptr() == ptr_b
    assert pool.take("k", (4,), like).shape == (4,)
    assert pool.take("k", (2, 3), torch.zeros(1, dtype=F64)).dtype == F64


def test_grad_buffers_never_hand_out_inference_tensors_to_training():
    pool, like = GradBuffers(), torch.zeros(1)
    with torch.inference_mode():
        a = pool.take("k", (3,), like)
    b = pool.take("k", (3,), like)
    assert a.is_inference() and not b.is_inference()
    b.add_(1)  # writable outside inference mode


def test_large_cpu_weight_sets_skip_the_fused_runs(monkeypatch):
    """On CPU, layers whose weight set exceeds _FUSE_RUNS_CPU_UP_TO run their shared blocks through
    StepWeightLSTMLayer (oneDNN's per-call weight reorder costs more there), with the same results."""
    monkeypatch.setattr(step_weight, "USE_NATIVE_CPU", False)
    torch.manual_seed(0)
    core = UntiedLSTM(3, 5, 2, max_len=8, share_every=4).double()
    x = torch.randn(8, 2, 3, dtype=F64, requires_grad=True)
    calls = []
    real = step_weight._lstm_runs
    monkeypatch.setattr(step_weight, "_lstm_runs", lambda *a, **k: calls.append(1) or real(*a, **k))
    fused, _ = core(x)
    assert len(calls) == 2  # one per layer
    monkeypatch.setattr(step_weight, "_FUSE_RUNS_CPU_UP_TO", 0)
    calls.clear()
    unfused, _ = core(x)
    assert calls == []
    torch.testing.assert_close(unfused, fused, rtol=1e-12, atol=1e-12)
