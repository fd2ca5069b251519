"""One loaded-model unit: a fingerprint from the model's files that survives dtype, device and reloads."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import torch

from megalodoc.model import CheckpointError, Megalodon, MegalodonConfig, load_bundle, load_model, save_model
from megalodoc.model import fingerprint as fp
from megalodoc.model.checkpoint import DEFAULT_MODEL_DIR
from megalodoc.model.fingerprint import weights_fingerprint


@pytest.fixture(scope="module")
def default_fp32():
    return load_bundle()


@pytest.fixture(scope="module")
def tokenizer(default_fp32):
    return default_fp32.require_tokenizer()


def test_default_bundle_holds_model_tokenizer_fingerprint_dtype_device(default_fp32):
    b = default_fp32
    assert b.source == str(DEFAULT_MODEL_DIR)
    assert b.dtype == torch.float32 and b.device == torch.device("cpu")
    assert b.model.embed.weight.dtype == torch.float32 and not b.model.training
    assert b.chunk_size == b.model.config.chunk_size == 128
    assert b.require_tokenizer().vocab_size == b.model.config.vocab_size
    assert len(b.fingerprint) == 64
    # the module itself carries no loader attributes any more
    assert not hasattr(b.model, "tokenizer_path") and not hasattr(b.model, "source_dir")


def test_fingerprint_does_not_depend_on_dtype_or_reload(default_fp32):
    bf16 = load_bundle(dtype=torch.bfloat16)
    assert bf16.model.embed.weight.dtype == torch.bfloat16 and bf16.dtype == torch.bfloat16
    assert bf16.fingerprint == default_fp32.fingerprint
    assert load_bundle(DEFAULT_MODEL_DIR).fingerprint == default_fp32.fingerprint


def test_fingerprint_covers_weights_config_and_tokenizer(tmp_path, tokenizer):
    torch.manual_seed(0)
    model = Megalodon(MegalodonConfig.preset("tiny", vocab_size=tokenizer.vocab_size))
    (tmp_path / "tok.model").write_bytes(tokenizer.model_bytes())
    base = load_bundle(save_model(model, tmp_path / "a", tokenizer=tmp_path / "tok.model")).fingerprint
    assert load_bundle(save_model(model, tmp_path / "same", tokenizer=tmp_path / "tok.model")).fingerprint == base
    assert load_bundle(save_model(model, tmp_path / "no-tok")).fingerprint != base
    with torch.no_grad():
        model.embed.weight[0, 0] += 1e-3
    assert load_bundle(save_model(model, tmp_path / "b", tokenizer=tmp_path / "tok.model")).fingerprint != base
    # a file changed in place (new bytes, new mtime) is hashed again, not served from the cache
    shutil.copytree(tmp_path / "a", tmp_path / "c")
    assert load_bundle(tmp_path / "c").fingerprint == base
    save_model(model, tmp_path / "c", tokenizer=tmp_path / "tok.model")
    assert load_bundle(tmp_path / "c").fingerprint != base


def test_in_memory_model_fingerprint_is_its_fp32_weights(tokenizer):
    torch.manual_seed(0)
    model = Megalodon(MegalodonConfig.preset("tiny", vocab_size=tokenizer.vocab_size))
    twin = Megalodon(model.config)
    twin.load_state_dict(model.state_dict())
    a = load_bundle(model, tokenizer=tokenizer)
    assert a.source == "in-memory" and a.model is model and a.tokenizer is tokenizer
    assert a.fingerprint == load_bundle(twin, tokenizer=tokenizer).fingerprint
    assert a.fingerprint != load_bundle(twin).fingerprint  # the tokenizer is part of the identity
    assert a.fingerprint == weights_fingerprint(twin.double(), tokenizer.model_bytes())  # cast to fp32 first


def test_folder_bundle_refuses_a_second_tokenizer_and_a_model_without_one_says_so(tmp_path, tokenizer):
    folder = save_model(Megalodon(MegalodonConfig.preset("tiny")), tmp_path / "m")
    with pytest.raises(ValueError, match="brings its own tokenizer"):
        load_bundle(folder, tokenizer=tokenizer)
    bare = load_bundle(folder)
    assert bare.tokenizer is None
    with pytest.raises(CheckpointError, match=f"^{folder}: the model has no tokenizer.model"):
        bare.require_tokenizer()


def test_load_model_still_gives_the_bare_module():
    model = load_model(dtype=torch.bfloat16)
    assert isinstance(model, Megalodon) and model.embed.weight.dtype == torch.bfloat16


def test_a_hub_snapshot_is_identified_by_its_blob_names_without_reading_them(tmp_path, monkeypatch):
    """A Hub cache links each file to blobs/<sha256 of its content>: the same fingerprint as a plain
    copy of the files, and the weights are not read to get it."""
    plain = save_model(Megalodon(MegalodonConfig.preset("tiny")), tmp_path / "plain")
    snapshot, blobs = tmp_path / "hub" / "snapshots" / "abc", tmp_path / "hub" / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for file in plain.iterdir():
        data = file.read_bytes()
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(blob)
    expected = load_bundle(plain).fingerprint
    expected_digests = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in plain.iterdir()}

    def no_reading(handle, name):
        raise AssertionError(f"{handle.name} was read to identify a Hub snapshot")

    monkeypatch.setattr(fp.hashlib, "file_digest", no_reading)
    fp._file_digests.clear()
    assert load_bundle(snapshot).fingerprint == expected
    assert {f.name: fp.file_sha256(f) for f in snapshot.iterdir()} == expected_digests
