"""UntiedLSTM(cuda_graphs=True): replays give eager results, fall back where they must, and do nothing on CPU."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from lrnn.cores.untied import UntiedLSTM
from lrnn.kernels.cuda_graphs import CUDAGraphs, _copies, _parameter_aliases, _parameters_swapped

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def pair(seed: int = 0, **kwargs) -> tuple[UntiedLSTM, UntiedLSTM]:
    """The same core twice, eager and graphed."""
    torch.manual_seed(seed)
    eager = UntiedLSTM(6, 8, 2, max_len=5, **kwargs)
    graphed = copy.deepcopy(eager)
    graphed.cuda_graphs = True
    return eager, graphed


def train_steps(core: UntiedLSTM, xs: list[torch.Tensor], carry: bool = True) -> list[torch.Tensor]:
    """SGD steps with the state carried (detached) as truncated BPTT does; returns every output, h, c and grad."""
    opt = torch.optim.SGD(core.parameters(), lr=0.5)
    seen, state = [], None
    for x in xs:
        x = x.clone().requires_grad_()
        out, (h, c) = core(x, state)
        (out.square().sum() + 0.3 * h.sum() + 0.1 * c.square().sum()).backward()
        seen += [out.detach(), h.detach(), c.detach(), x.grad]
        seen += [torch.zeros(()) if p.grad is None else p.grad.clone() for p in core.parameters()]
        opt.step()
        opt.zero_grad(set_to_none=True)
        state = (h.detach(), c.detach()) if carry else None
    return seen


def test_cpu_flag_does_nothing():
    eager, graphed = pair()
    xs = [torch.randn(5, 3, 6) for _ in range(3)]
    for a, b in zip(train_steps(eager, xs), train_steps(graphed, xs), strict=True):
        assert torch.equal(a, b)
    assert len(graphed._graphs) == 0
    assert "cuda_graphs=True" in repr(graphed) and "cuda_graphs" not in repr(eager)
    assert graphed.state_dict().keys() == eager.state_dict().keys()


def test_copies_and_module_copies():
    base = torch.arange(24.0).view(2, 3, 4)
    grads = [*base.unbind(0), None, torch.ones(3).t()]
    out = _copies(grads)
    assert out[2] is None
    for a, b in zip(out, grads, strict=True):
        if a is not None:
            assert torch.equal(a, b) and a.stride() == b.stride() and a.data_ptr() != b.data_ptr()
    assert out[0].untyped_storage().data_ptr() == out[1].untyped_storage().data_ptr()  # one copy of the base
    _, graphed = pair(cuda_graphs=True)
    graphed._graphs._graphs["k"] = object()
    for clone in (copy.deepcopy(graphed), pickle.loads(pickle.dumps(graphed))):
        assert clone.cuda_graphs and isinstance(clone._graphs, CUDAGraphs) and len(clone._graphs) == 0


@cuda
@pytest.mark.parametrize("share_every", [1, 2])
def test_replays_match_eager(share_every):
    eager, graphed = (c.cuda() for c in pair(share_every=share_every))
    xs = [torch.randn(5, 3, 6, device="cuda") for _ in range(4)] + [torch.randn(3, 3, 6, device="cuda")]
    for a, b in zip(train_steps(eager, xs), train_steps(graphed, xs), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    # signatures: (T 5, no state), (T 5, state), (T 3, state)
    assert len(graphed._graphs) == 3


@cuda
def test_two_forwards_before_backward_fall_back():
    eager, graphed = (c.cuda() for c in pair())
    x1, x2 = torch.randn(5, 3, 6, device="cuda"), torch.randn(5, 3, 6, device="cuda")
    for core in (eager, graphed):
        (core(x1)[0].sum() + core(x2)[0].square().sum()).backward()
    for p, q in zip(eager.parameters(), graphed.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-5)


@cuda
def test_backward_after_a_later_replay_raises():
    _, graphed = (c.cuda() for c in pair())
    x = torch.randn(5, 3, 6, device="cuda")
    loss = graphed(x)[0].sum()
    loss.backward(retain_graph=True)
    graphed(x)[0].sum().backward()
    with pytest.raises(RuntimeError, match="later replay"):
        loss.backward()


@cuda
def test_no_grad_and_full_cache_run_eagerly():
    _, graphed = (c.cuda() for c in pair())
    with torch.no_grad():
        graphed(torch.randn(5, 3, 6, device="cuda"))
    assert len(graphed._graphs) == 0
    graphed._graphs.max_graphs = 1
    graphed(torch.randn(5, 3, 6, device="cuda"))[0].sum().backward()
    with pytest.warns(UserWarning, match="CUDA graphs captured"):
        graphed(torch.randn(4, 3, 6, device="cuda"))[0].sum().backward()
    assert len(graphed._graphs) == 1


@cuda
def test_dropout_draws_new_masks():
    torch.manual_seed(0)
    core = UntiedLSTM(6, 8, 2, max_len=5, dropout=0.5, cuda_graphs=True).cuda()
    x = torch.randn(5, 3, 6, device="cuda")
    outs = []
    for _ in range(3):
        out = core(x)[0]
        out.sum().backward()
        outs.append(out.detach())
    assert not torch.equal(outs[1], outs[2])


def test_captures_read_parameter_aliases():
    """What a capture runs: the forward reads the aliases (so gradients flow to them, not to the parameters, whose
    gradient accumulators may belong to another stream), and the parameters come back afterwards, error or not."""
    core = UntiedLSTM(6, 8, 2, max_len=5)
    aliases = _parameter_aliases(core)
    x = torch.randn(5, 3, 6)
    with _parameters_swapped(core, aliases):
        out, _ = core(x)
    grads = torch.autograd.grad(out.square().sum(), list(aliases.values()))  # raises if a parameter was read instead
    core(x)[0].square().sum().backward()
    for g, p, a in zip(grads, core.parameters(), aliases.values(), strict=True):
        assert torch.equal(g, p.grad) and a.data_ptr() == p.data_ptr() and a is not p
    with pytest.raises(ValueError), _parameters_swapped(core, aliases):
        raise ValueError
    assert not any(p is a for p, a in zip(core.parameters(), aliases.values(), strict=True))
