"""Config presets (reference parameter counts) and validation messages."""

import pytest
import torch

from megalodoc.model import Megalodon, MegalodonConfig


def count_on_meta(config: MegalodonConfig) -> int:
    with torch.device("meta"):
        return Megalodon(config).num_parameters()


@pytest.mark.parametrize(
    ("name", "expected"),
    [("mega200M", 220_627_968), ("mega7B", 7_385_817_088), ("mega1.3B", 1_342_832_640),
     ("mega7.1B", 7_117_381_632), ("mega1.3B_pg19", 1_327_628_288)],
)
def test_reference_parameter_counts(name, expected):
    assert count_on_meta(MegalodonConfig.preset(name)) == expected


def test_paper_7b_dims():
    c = MegalodonConfig.preset("mega7B")
    assert (c.num_layers, c.model_dim, c.num_heads, c.chunk_size, c.rope_base, c.swiglu, c.share_emb) == (
        32, 4096, 4, 4096, 100_000.0, True, False)


def test_validation_names_bad_values():
    with pytest.raises(ValueError, match=r"z_dim=10 is not divisible by num_heads=4"):
        MegalodonConfig(z_dim=10, num_heads=4)
    with pytest.raises(ValueError, match=r"model_dim=30 is not divisible by norm_num_groups=4"):
        MegalodonConfig.preset("tiny", model_dim=30)
    with pytest.raises(ValueError, match=r"dropout=1.5 must be in \[0, 1\)"):
        MegalodonConfig(dropout=1.5)
    with pytest.raises(ValueError, match=r"chunk_size=0 must be a positive integer"):
        MegalodonConfig(chunk_size=0)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        MegalodonConfig.preset("huge")
    # a config.json may hold NaN or Infinity (Python's json reads both): each failed no check before
    with pytest.raises(ValueError, match=r"norm_eps=nan must be > 0 and finite; rope_base=inf must be > 1"):
        MegalodonConfig(norm_eps=float("nan"), rope_base=float("inf"))
    with pytest.raises(ValueError, match=r"dropout=nan must be in \[0, 1\)"):
        MegalodonConfig.from_dict({**MegalodonConfig.preset("tiny").to_dict(), "dropout": float("nan")})


def test_dict_round_trip_and_fingerprint():
    c = MegalodonConfig.preset("tiny")
    assert MegalodonConfig.from_dict(c.to_dict()) == c
    assert c.fingerprint() != MegalodonConfig.preset("tiny", chunk_size=32).fingerprint()
    assert c.fingerprint() == MegalodonConfig.preset("tiny", dropout=0.1).fingerprint()
    with pytest.raises(ValueError, match="unknown MegalodonConfig field"):
        MegalodonConfig.from_dict({**c.to_dict(), "bogus": 1})


def test_bad_ids_are_named():
    model = Megalodon(MegalodonConfig.preset("tiny"))
    with pytest.raises(TypeError, match="dtype torch.int64, got torch.float32"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"shape \(batch, length\), got shape \(4,\)"):
        model(torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\[0, 256\); got min 0, max 300"):
        model(torch.tensor([[0, 300]]))
    with pytest.raises(TypeError, match="state must be a ModelState"):
        model(torch.zeros(1, 2, dtype=torch.int64), {"position": 0})
    # a batch of no sequences has no state to carry (it stopped in a ZeroDivisionError)
    for ids in (torch.zeros(0, 5, dtype=torch.int64), torch.zeros(0, 0, dtype=torch.int64)):
        with pytest.raises(ValueError, match=rf"at least one sequence, got shape \(0, {ids.shape[1]}\)"):
            model(ids)
        with pytest.raises(ValueError, match="at least one sequence"):
            model.hidden_states(ids)
