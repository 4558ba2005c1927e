"""LexicalLSTM: tied at K = 1 or zero deltas, the per-sample math and its gradients, the token -> set map, windows,
sentence batches, RNNLM and the CLI."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lrnn import RNNLM, LexicalLSTM
from lrnn.data.sentences import SentenceBatches, sentence_sequences
from tests.cores.test_untied import grads, loss_of, naive_lstm, rand_state

F64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster on a shared CPU


def randomize_deltas(core: LexicalLSTM, scale: float = 0.5) -> None:
    with torch.no_grad():
        for name, p in core.named_parameters():
            if name.startswith("delta_"):
                p.normal_(0, scale)


def reference(core: LexicalLSTM, x: torch.Tensor, sets: torch.Tensor, hx=None):
    """Per-sample explicit weights: step t of sample b uses W_hh + Δ_s as one [4H, H] matrix (s = sets[t, b], Δ_0 =
    0), time-major. Plain autograd, so its gradients are the reference for the core's hand-written backward."""
    sets_w = [
        torch.cat([torch.zeros_like(w).unsqueeze(0), core.deltas(k)]) + w  # [K, 4H, H]
        for k, w in enumerate(getattr(core, f"weight_hh_l{k}") for k in range(core.num_layers))
    ]

    def gates(k, t, x_t, h):
        w_ih = getattr(core, f"weight_ih_l{k}")
        rows = torch.stack([w_ih @ x_t[b] + sets_w[k][sets[t, b]] @ h[b] for b in range(x_t.shape[0])])
        return rows + getattr(core, f"bias_ih_l{k}") + getattr(core, f"bias_hh_l{k}") if core.bias else rows

    return naive_lstm(x, hx, core.num_layers, core.hidden_size, gates)


@pytest.mark.parametrize("num_sets,rank", [(1, None), (1, 3), (5, None), (5, 3)])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_k1_or_zero_deltas_equal_nn_lstm(num_sets, rank, num_layers, batch_first, bias):
    """K = 1 (no deltas) and from_lstm's zero deltas compute nn.LSTM exactly, values and gradients (float64)."""
    torch.manual_seed(0)
    T, B, D, H = 6, 3, 4, 5
    lstm = nn.LSTM(D, H, num_layers, bias=bias, batch_first=batch_first).double()
    core = LexicalLSTM.from_lstm(lstm, num_sets, rank, penalty=0.5)
    x = torch.randn(*((B, T) if batch_first else (T, B)), D, dtype=F64, requires_grad=True)
    tokens = torch.randint(0, 9, x.shape[:2])
    hx = rand_state(num_layers, B, H)
    out_ref, (h_ref, c_ref) = lstm(x, hx)
    out, (h, c) = core(x, hx, tokens=tokens)
    for a, b in ((out, out_ref), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    shared = [getattr(core, n) for n, _ in lstm.named_parameters()]
    got = grads(loss_of(out, h, c), [x, *hx, *shared])
    want = grads(loss_of(out_ref, h_ref, c_ref), [x, *hx, *lstm.parameters()])
    for g, g_ref in zip(got, want, strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-10, rtol=0)
    assert core.regularization().item() == 0.0


@pytest.mark.parametrize("rank", [None, 2])
@pytest.mark.parametrize("batch_first", [False, True])
def test_values_and_gradients_equal_a_per_sample_reference(rank, batch_first):
    """Non-zero deltas: output, state and every gradient (input, state, shared weights, both factors) equal the
    explicit per-sample weights W_hh + Δ_s in float64; input_size != hidden_size, 2 layers, base-set steps mixed in."""
    torch.manual_seed(1)
    T, B, D, H, K = 5, 3, 4, 6, 4
    core = LexicalLSTM(D, H, 2, num_sets=K, rank=rank, batch_first=batch_first).double()
    randomize_deltas(core)
    x = torch.randn(T, B, D, dtype=F64, requires_grad=True)
    tokens = torch.tensor([[0, 3, 7], [2, 2, 5], [9, 1, 0], [1, 4, 2], [0, 0, 3]])  # 3+: base set
    hx = rand_state(2, B, H)
    xs, ts = (x.transpose(0, 1), tokens.t()) if batch_first else (x, tokens)
    out, (h, c) = core(xs, hx, tokens=ts)
    out = out.transpose(0, 1) if batch_first else out
    out_ref, (h_ref, c_ref) = reference(core, x, core.sets_of(tokens), hx)
    for a, b in ((out, out_ref), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    params = list(core.parameters())
    got = grads(loss_of(out, h, c), [x, *hx, *params])
    want = grads(loss_of(out_ref, h_ref, c_ref), [x, *hx, *params])
    for g, g_ref in zip(got, want, strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-10, rtol=0)


def test_gradcheck_low_rank():
    torch.manual_seed(2)
    core = LexicalLSTM(3, 4, 2, num_sets=3, rank=2).double()
    randomize_deltas(core)
    x = torch.randn(4, 2, 3, dtype=F64, requires_grad=True)
    tokens = torch.tensor([[0, 1], [5, 1], [0, 0], [2, 1]])
    hx = rand_state(2, 2, 4)
    assert torch.autograd.gradcheck(lambda x, h, c: core(x, (h, c), tokens=tokens)[0], (x, *hx))


def test_token_outside_the_top_k_minus_1_uses_the_base_set():
    """Tokens 0..K-2 own sets 1..K-1, every other token the base set: changing a set's delta changes only the steps
    that read its token, and a sequence of rare tokens runs on W_hh alone (= the nn.LSTM of the base weights)."""
    torch.manual_seed(3)
    K = 4
    lstm = nn.LSTM(3, 5).double()
    core = LexicalLSTM.from_lstm(lstm, K, 2)
    assert core.sets_of(torch.tensor([0, 1, 2, 3, 4, 100])).tolist() == [1, 2, 3, 0, 0, 0]
    randomize_deltas(core)
    x = torch.randn(6, 2, 3, dtype=F64)
    rare = torch.randint(K - 1, 50, (6, 2))
    torch.testing.assert_close(core(x, tokens=rare)[0], lstm(x)[0], atol=1e-12, rtol=0)
    tokens = torch.tensor([[3, 3], [1, 3], [3, 3], [3, 2], [3, 3], [3, 3]])  # token 1 (set 2) only at step 1, b 0
    before = core(x, tokens=tokens)[0]
    with torch.no_grad():
        core.delta_hh_u_l0[1].add_(1.0)  # set 2's delta: token 1
    after = core(x, tokens=tokens)[0]
    changed = (after - before).abs().amax(-1) > 1e-12  # [T, B]
    assert not changed[:, 1].any() and not changed[:1, 0].any()  # the other sample, and sample 0 before the token
    # sample 0 changes from the step after reading token 1: its recurrence at step 1 multiplies h_0 (the delta)
    assert changed[2:, 0].all()


def test_custom_set_tokens_and_the_map_is_saved():
    core = LexicalLSTM(3, 4, num_sets=3, rank=1, set_tokens=[7, 2])
    assert core.sets_of(torch.tensor([[7, 2, 0, 1]])).tolist() == [[1, 2, 0, 0]]
    state = core.state_dict()
    assert state["set_tokens"].tolist() == [7, 2]
    fresh = LexicalLSTM(3, 4, num_sets=3, rank=1)
    fresh.load_state_dict(state)  # the map travels with the weights
    assert fresh.sets_of(torch.tensor([7])).tolist() == [1]


def test_sets_argument_equals_tokens_and_missing_index_is_a_clear_error():
    torch.manual_seed(4)
    core = LexicalLSTM(3, 4, num_sets=3, rank=2)
    randomize_deltas(core)
    x, tokens = torch.randn(5, 2, 3), torch.randint(0, 6, (5, 2))
    torch.testing.assert_close(core(x, tokens=tokens)[0], core(x, sets=core.sets_of(tokens))[0])
    with pytest.raises(ValueError, match="pass tokens="):
        core(x)
    with pytest.raises(ValueError, match="exactly one"):
        core(x, tokens=tokens, sets=tokens)
    with pytest.raises(ValueError, match="leading shape"):
        core(x, tokens=tokens.t())
    with pytest.raises(ValueError, match="0..2"):
        core(x, sets=torch.full((5, 2), 3))


def test_unbatched_input():
    torch.manual_seed(5)
    core = LexicalLSTM(3, 4, 2, num_sets=3, rank=2).double()
    randomize_deltas(core)
    x, tokens = torch.randn(5, 3, dtype=F64), torch.randint(0, 6, (5,))
    out, (h, c) = core(x, tokens=tokens)
    out_b, (h_b, c_b) = core(x.unsqueeze(1), tokens=tokens.unsqueeze(1))
    assert out.shape == (5, 4) and h.shape == (2, 4)
    torch.testing.assert_close(out, out_b.squeeze(1), atol=1e-12, rtol=0)


def test_carried_state_across_windows_equals_one_pass():
    """The set follows its token from window to window: two windows with the carried state = one long pass (core and
    RNNLM, forward and gradients of the deltas)."""
    torch.manual_seed(6)
    V, T = 12, 8
    model = RNNLM(V, LexicalLSTM(4, 5, 2, num_sets=6, rank=2).double()).double()
    randomize_deltas(model.core)
    tokens = torch.randint(0, V, (3, 2 * T + 1))
    x, y = tokens[:, :-1], tokens[:, 1:]
    whole, _ = model.nll(x, y)
    first, state = model.nll(x[:, :T], y[:, :T])
    second, _ = model.nll(x[:, T:], y[:, T:], state)
    torch.testing.assert_close(first + second, whole, atol=1e-10, rtol=0)
    u = model.core.delta_hh_u_l1
    g_whole = grads(whole, [u])[0]
    g_split = grads(first + second, [u])[0]
    torch.testing.assert_close(g_split, g_whole, atol=1e-10, rtol=0)


def test_sentence_batches_score_each_sentence_as_alone():
    """Padded, length-bucketed sentence batches: every sentence's NLL equals running it alone (the sets follow each
    row's own tokens; padding is never scored)."""
    torch.manual_seed(7)
    eos, V = 0, 10
    rows = [[3, 1, 4], [1, 5], [9, 2, 6, 5, 3], [5, 8], [9, 7, 9, 3]]
    stream = torch.tensor([t for r in rows for t in [*r, eos]])
    model = RNNLM(V, LexicalLSTM(4, 5, 1, num_sets=5, rank=2).double()).double().eval()
    randomize_deltas(model.core)
    inputs, targets, lengths = sentence_sequences(stream, eos)
    batched = 0.0
    for x, y in SentenceBatches(inputs, targets, lengths, batch_size=3, pad_id=eos):
        batched += F.cross_entropy(model(x)[0].transpose(1, 2), y, reduction="sum").item()
    alone, start = 0.0, 0
    for n in lengths.tolist():
        x, y = inputs[start : start + n].view(1, n), targets[start : start + n].view(1, n)
        alone += F.cross_entropy(model(x)[0].transpose(1, 2), y, reduction="sum").item()
        start += n
    assert batched == pytest.approx(alone, abs=1e-9)


def test_tbptt_advance_passes_the_tokens():
    """LanguageModel's TBPTT advance (embedding and core only) gives the state RNNLM's forward gives."""
    from lrnn import LanguageModel

    torch.manual_seed(8)
    lm = LanguageModel(LexicalLSTM(4, 5, 2, num_sets=4, rank=2), vocab_size=9, bptt="tbptt", k1=2).eval()
    randomize_deltas(lm.core)
    tokens = torch.randint(0, 9, (2, 6))
    _, (h, c) = lm(tokens)
    h_adv, c_adv = lm._advance((tokens,), None, 0)
    torch.testing.assert_close(h_adv, h)
    torch.testing.assert_close(c_adv, c)


def test_rnnlm_end_to_end_learns_and_every_parameter_gets_a_gradient():
    """A few SGD steps on a repeating sequence lower the loss; after every backward all parameters have a gradient,
    also delta rows of sets no token in the batch reads (zeros): DDP needs no find_unused_parameters."""
    torch.manual_seed(9)
    V = 20
    model = RNNLM(V, LexicalLSTM(8, 8, 2, num_sets=8, rank=2, penalty=1e-3), init_range=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    tokens = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2]] * 4)  # reads sets 1..4 only; 5..7 unused
    losses = []
    for _ in range(30):
        nll, _ = model.nll(tokens[:, :-1], tokens[:, 1:])
        loss = nll / tokens[:, 1:].numel() + model.core.regularization()
        loss.backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing
        assert (model.core.delta_hh_u_l0.grad[4:] == 0).all()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert model.core.delta_hh_u_l0[:4].abs().sum() > 0 and (model.core.delta_hh_u_l0[4:] == 0).all()


def test_regularization_and_init():
    torch.manual_seed(10)
    penalty = 0.3
    core = LexicalLSTM(3, 4, 2, num_sets=4, rank=2, penalty=penalty).double()
    assert all((getattr(core, f"delta_hh_u_l{k}") == 0).all() for k in range(2))
    assert core.regularization().item() == 0.0
    core.init_uniform_(0.1)  # what RNNLM(init_range=0.1) calls: deltas stay zero
    assert all((getattr(core, f"delta_hh_u_l{k}") == 0).all() for k in range(2))
    assert core.delta_hh_v_l0.abs().max() <= 0.1 and core.delta_hh_v_l0.abs().sum() > 0
    randomize_deltas(core)
    total = penalty * sum(core.deltas(k).square().sum() for k in range(2))
    torch.testing.assert_close(core.regularization(), total, atol=1e-10, rtol=1e-12)
    full = LexicalLSTM(3, 4, 2, num_sets=4, penalty=penalty).double()
    randomize_deltas(full)
    want = penalty * (full.delta_hh_l0.square().sum() + full.delta_hh_l1.square().sum())
    torch.testing.assert_close(full.regularization(), want)


def test_parameter_counts_and_meta_device():
    """Counts = nn.LSTM + L (K-1) r 5H (full rank: L (K-1) 4H²); built on the meta device from constructor arguments
    alone, as the paper's parameter counter builds RNNLM(vocab, core)."""
    H, D, K, r, L = 6, 5, 7, 3, 2
    lstm = sum(p.numel() for p in nn.LSTM(D, H, L).parameters())
    low, full = LexicalLSTM(D, H, L, num_sets=K, rank=r), LexicalLSTM(D, H, L, num_sets=K)
    for core, per_set in ((low, r * 5 * H), (full, 4 * H * H)):
        total = sum(p.numel() for p in core.parameters())
        assert core.parameter_counts()["total"] == total == lstm + L * (K - 1) * per_set
    assert LexicalLSTM(D, H, L, num_sets=1, rank=r).parameter_counts()["total"] == lstm
    with torch.device("meta"):
        model = RNNLM(100, LexicalLSTM(D, H, L, num_sets=K, rank=r))
    assert model.num_parameters()["recurrent"] == lstm + L * (K - 1) * r * 5 * H
    assert model.core.set_tokens.is_meta


@pytest.mark.parametrize(
    "kwargs",
    [{"num_sets": 0}, {"num_sets": 3, "rank": 0}, {"num_sets": 3, "penalty": -1.0},
     {"num_sets": 3, "set_tokens": [1, 1]}, {"num_sets": 3, "set_tokens": [1]}],
)  # fmt: skip
def test_constructor_validation(kwargs):
    with pytest.raises(ValueError):
        LexicalLSTM(3, 4, **kwargs)
