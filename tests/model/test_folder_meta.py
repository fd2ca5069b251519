"""A model folder's config.json: every malformed, unsafe or oversized entry is a CheckpointError naming the
file and the field, refused before any weight file is opened or any module is built."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import torch

from megalodoc.model import CheckpointError, Megalodon, MegalodonConfig, load_bundle, save_model
from megalodoc.model.checkpoint import DEFAULT_MODEL_DIR, load_folder


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    torch.manual_seed(0)
    model = Megalodon(MegalodonConfig.preset("tiny", vocab_size=8192)).eval()
    return save_model(model, tmp_path_factory.mktemp("base") / "m", tokenizer=DEFAULT_MODEL_DIR / "tokenizer.model")


def variant(base, tmp_path, edit):
    """A copy of `base` whose parsed config.json went through `edit` (which may return the new file's text)."""
    folder = tmp_path / "v"
    shutil.copytree(base, folder)
    meta = json.loads((folder / "config.json").read_text())
    text = edit(meta)
    (folder / "config.json").write_text(json.dumps(meta) if text is None else text)
    return folder


def setter(*keys_and_value):
    *keys, value = keys_and_value

    def edit(meta):
        target = meta
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (setter("format_version", "1"), r"format_version must be an integer, not '1'"),
    (setter("format_version", None), r"format_version must be an integer, not None"),
    (setter("format_version", True), r"format_version must be an integer, not True"),
    (setter("tokenizer", 5), r"tokenizer must be a file name or null, not 5"),
    (lambda meta: "[]", r"must hold a JSON object, not a list"),
    (lambda meta: "null", r"must hold a JSON object, not null"),
    (setter("config", "bos_id", -1), r"bos_id=-1 is outside the vocabulary \[0, 8192\)"),
    (setter("config", "bos_id", 2.5), r"bos_id=2\.5 must be an integer"),
    (setter("config", "bos_id", True), r"bos_id=True must be an integer"),
    (setter("config", "swiglu", "false"), r"swiglu='false' must be true or false"),
    (setter("config", "norm_eps", "1e-5"), r"norm_eps='1e-5' must be a number"),
    (setter("config", []), r"config must be a JSON object"),
    (setter("shiny", 1), r"unknown entry 'shiny'"),
    (setter("weights", "model.safetensors"), r"weights must be a list of file names, not 'model\.safetensors'"),
    (setter("weights", []), r"weights must be a list of file names, not \[\]"),
    (lambda meta: meta["config"].pop("vocab_size") and None, r"config is missing vocab_size"),
])
def test_malformed_config_json_is_named(base, tmp_path, edit, message):
    folder = variant(base, tmp_path, edit)
    with pytest.raises(CheckpointError, match=r"config\.json: .*" + message):
        load_folder(folder)


def test_the_shipped_folders_extra_fingerprint_entry_is_accepted():
    assert "fingerprint" in json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert load_folder(DEFAULT_MODEL_DIR).model.config.vocab_size == 8192


@pytest.mark.parametrize("entry, value", [
    ("weights", ["../other/model.safetensors"]),
    ("weights", ["/etc/hostname"]),
    ("weights", ["."]),
    ("tokenizer", "../other/tokenizer.model"),
    ("tokenizer", "/etc/hostname"),
    ("tokenizer", ""),
])
def test_names_outside_the_folder_are_refused_before_opening(base, tmp_path, monkeypatch, entry, value):
    shutil.copytree(base, tmp_path / "other")
    folder = variant(base, tmp_path, setter(entry, value))
    opened = []
    real_open = open

    def watching_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", watching_open)
    with pytest.raises(CheckpointError, match=rf"config\.json: {entry} .*plain file name"):
        load_bundle(folder)
    assert not [p for p in opened if "other" in p or "hostname" in p]


@pytest.mark.parametrize("field, value, message", [
    ("num_layers", 10**30, r"num_layers=10{30} but the weights hold 2 layers"),
    ("vocab_size", 10**12, r"embed\.weight has shape \(8192, 32\), expected \(1000000000000, 32\)"),
    ("chunk_size", 10**12, None),
])
def test_sizes_are_checked_against_the_weight_headers_before_building(base, tmp_path, field, value, message):
    folder = variant(base, tmp_path, setter("config", field, value))
    start = time.perf_counter()
    if message is None:  # a size no weight depends on: loads (and builds nothing of that size)
        assert load_folder(folder).model.config.chunk_size == value
    else:
        with pytest.raises(CheckpointError, match=r"weights do not match config\.json: .*" + message):
            load_folder(folder)
    assert time.perf_counter() - start < 10


def test_integer_weights_are_refused(base, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = variant(base, tmp_path, lambda meta: None)
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["embed.weight"] = tensors["embed.weight"].to(torch.int32)
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"embed\.weight has dtype I32, expected a floating-point type"):
        load_folder(folder)
