import pytest
import torch
import torch.nn.functional as F

from lrnn import TiedLSTM
from lrnn.rnnlm import RNNLM


def test_projection_maps_the_core_width_to_the_decoder_width():
    torch.manual_seed(0)
    model = RNNLM(50, TiedLSTM(16, 24, num_layers=2), output_size=16).double()
    tokens = torch.randint(0, 50, (3, 7))
    logits, _ = model(tokens)
    assert model.projection is not None and model.decoder.in_features == 16
    core_out, _ = model.core(model.embedding(tokens.t()))
    expected = model.decoder(model.projection(core_out)).transpose(0, 1)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-12)
    targets = torch.randint(0, 50, (3, 7))
    nll, _ = model.nll(tokens, targets)
    torch.testing.assert_close(nll, F.cross_entropy(logits.reshape(-1, 50), targets.reshape(-1), reduction="sum"))
    counts = model.num_parameters()
    assert counts["non_recurrent"] == 50 * 16 + 24 * 16 + 16 * 50 + 50  # embedding, projection, decoder + bias


def test_no_projection_where_the_widths_already_agree():
    assert RNNLM(10, TiedLSTM(8, 8), output_size=8).projection is None
    assert RNNLM(10, TiedLSTM(8, 12)).decoder.in_features == 12


def test_tie_embeddings_checks_the_decoder_width():
    RNNLM(10, TiedLSTM(8, 12), output_size=8, tie_embeddings=True)  # projection brings 12 back to 8
    with pytest.raises(ValueError, match="tie_embeddings"):
        RNNLM(10, TiedLSTM(8, 12), tie_embeddings=True)


def test_advance_is_the_state_of_the_forward_pass():
    """TBPTT's unscored steps (`advance`) end in the state the full forward pass ends in, and carry gradient."""
    torch.manual_seed(0)
    model = RNNLM(30, TiedLSTM(8, 12, num_layers=2), output_size=8).double()
    tokens, state = torch.randint(0, 30, (3, 5)), (torch.randn(2, 3, 12).double(), torch.randn(2, 3, 12).double())
    _, (h, c) = model(tokens, state, offset=2)
    h_a, c_a = model.advance(tokens, state, offset=2)
    torch.testing.assert_close((h_a, c_a), (h, c), rtol=0, atol=0)
    h_a.sum().backward()
    assert model.embedding.weight.grad is not None and model.decoder.weight.grad is None


def test_model_and_lightning_module_names():
    import lrnn

    assert lrnn.LanguageModel is lrnn.LitLanguageModel  # the earlier name stays importable
    assert issubclass(lrnn.RNNLM, torch.nn.Module) and not issubclass(lrnn.RNNLM, lrnn.LitLanguageModel)
