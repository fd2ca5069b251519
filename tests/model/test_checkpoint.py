"""Model folders: bit-exact round trip, sharding, bad folders, Hub ids offline, reference layout."""

import json

import pytest
import torch

from megalodoc.app.cli import main as cli_main
from megalodoc.model import CheckpointError, Megalodon, MegalodonConfig, load_model, save_model
from megalodoc.model import checkpoint as checkpoint_module
from megalodoc.model.checkpoint import DEFAULT_MODEL_DIR, load_folder
from megalodoc.model.upstream import KEY_TABLE, export_upstream, ours_to_upstream_keys

TOKENIZER = DEFAULT_MODEL_DIR / "tokenizer.model"  # 8192 pieces


def same_weights(a: Megalodon, b: Megalodon) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Megalodon(MegalodonConfig.preset("tiny")).eval()


def test_round_trip_bit_exact_and_same_logits(tiny, tmp_path):
    save_model(tiny, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["format"] == "megalodoc" and meta["weights"] == ["model.safetensors"]
    loaded = load_model(tmp_path / "m")
    assert same_weights(tiny, loaded) and loaded.config == tiny.config and not loaded.training
    ids = torch.randint(0, 256, (1, 20))
    with torch.no_grad():
        assert torch.equal(tiny(ids)[0], loaded(ids)[0])


def test_shards_stay_under_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_module, "SHARD_BYTES", 64 * 1024)
    model = Megalodon(MegalodonConfig.preset("tiny", vocab_size=1024, model_dim=64))
    save_model(model, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert len(meta["weights"]) > 1
    weight_map = json.loads((tmp_path / "m" / "model.safetensors.index.json").read_text())["weight_map"]
    for name in meta["weights"]:
        size = (tmp_path / "m" / name).stat().st_size
        held = [k for k, v in weight_map.items() if v == name]
        # a shard is within the limit (plus its JSON header), or holds one tensor that alone exceeds it
        assert size <= 64 * 1024 + 4096 or len(held) == 1, (name, size, held)
    assert same_weights(model, load_model(tmp_path / "m"))


def test_resaving_with_fewer_shards_removes_the_old_shards_and_nothing_else(tmp_path, monkeypatch):
    folder = tmp_path / "m"
    model = Megalodon(MegalodonConfig.preset("tiny", vocab_size=1024, model_dim=64))
    monkeypatch.setattr(checkpoint_module, "SHARD_BYTES", 64 * 1024)
    save_model(model, folder)
    sharded = json.loads((folder / "config.json").read_text())["weights"]
    (folder / "notes.safetensors").write_bytes(b"a file of the person's own")
    monkeypatch.setattr(checkpoint_module, "SHARD_BYTES", 16 * 1024 * 1024)
    save_model(model, folder)
    assert len(sharded) > 1
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "notes.safetensors"]
    assert same_weights(model, load_model(folder))


def test_tokenizer_is_copied_and_recorded(tmp_path):
    model = Megalodon(MegalodonConfig.preset("tiny", vocab_size=8192))
    save_model(model, tmp_path / "m", tokenizer=TOKENIZER)
    loaded = load_folder(tmp_path / "m")
    assert loaded.tokenizer_file.read_bytes() == TOKENIZER.read_bytes()
    assert loaded.files == ("config.json", "model.safetensors", "tokenizer.model")


def test_truncated_weights_are_named(tiny, tmp_path):
    save_model(tiny, tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: unreadable or truncated"):
        load_model(tmp_path / "m")


def test_missing_key_is_named(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    save_model(tiny, tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    tensors = load_file(str(weights))
    del tensors["layers.1.mega.cema.alpha"]
    save_file(tensors, str(weights))
    with pytest.raises(CheckpointError, match=r"missing keys: layers\.1\.mega\.cema\.alpha"):
        load_model(tmp_path / "m")


def test_wrong_config_for_weights(tiny, tmp_path):
    save_model(tiny, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["config"]["ffn_hidden_dim"] = 32
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"fc1\.weight has shape \(64, 32\), expected \(32, 32\)"):
        load_model(tmp_path / "m")


def test_bad_paths(tmp_path):
    with pytest.raises(CheckpointError, match="no such model folder"):
        load_model(tmp_path / "nothing-here")
    (tmp_path / "f.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_model(tmp_path / "f.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(tmp_path / "empty")


def test_hub_repo_id_offline_fails_at_once_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="pass its local path instead"):
        load_model("someone/megalodon-small")


def test_key_table_covers_every_parameter_once():
    for cfg in (MegalodonConfig.preset("tiny"), MegalodonConfig.preset("tiny", swiglu=False, share_emb=True,
                                                                      rescale_nffn=True)):
        mapping = ours_to_upstream_keys(cfg.num_layers)
        ours = set(Megalodon(cfg).state_dict())
        assert ours <= set(mapping), ours - set(mapping)
        assert len(set(mapping.values())) == len(mapping)
    assert len({ours for ours, _ in KEY_TABLE}) == len(KEY_TABLE)


@pytest.mark.parametrize("overrides", [{}, {"share_emb": True, "swiglu": False, "rescale_nffn": True}])
def test_reference_layout_round_trip(tmp_path, overrides):
    torch.manual_seed(1)
    model = Megalodon(MegalodonConfig.preset("tiny", **overrides)).eval()
    export_upstream(model, tmp_path / "ref")
    raw = torch.load(tmp_path / "ref" / "consolidated.pth", weights_only=True)
    # the reference keys and buffers named in its documentation are all there
    for key in ("embed.weight", "layers.0.mega.timenorm.weight", "layers.0.mega.cema.alpha", "layers.0.mega.wz.weight",
                "layers.0.nffn.fc1.weight", "output.final_norm.weight", "output.output.weight", "rope.freqs",
                "layers.0.mega.timenorm.prior_count", "output.final_norm.prior_logv"):
        assert key in raw, key
    assert raw["layers.0.mega.cema.gamma"].shape == (32, 4, 2)
    section = json.loads((tmp_path / "ref" / "config.json").read_text())["model"]
    assert section["model_dim"] == 32 and section["cema_ndim"] == 4
    assert (tmp_path / "ref" / "consolidate_config.json").is_file()
    # load directly, and through the CLI converter
    assert same_weights(model, load_model(tmp_path / "ref"))
    assert cli_main(["convert-upstream", str(tmp_path / "ref"), str(tmp_path / "ours")]) == 0
    converted = load_model(tmp_path / "ours")
    assert same_weights(model, converted)
    ids = torch.randint(0, 256, (1, 30))
    with torch.no_grad():
        assert torch.equal(model(ids)[0], converted(ids)[0])


def test_reference_config_with_null_rope_base_and_bad_prior(tmp_path):
    torch.manual_seed(2)
    model = Megalodon(MegalodonConfig.preset("tiny"))
    export_upstream(model, tmp_path / "ref")
    cfg_path = tmp_path / "ref" / "config.json"
    raw_cfg = json.loads(cfg_path.read_text())
    raw_cfg["model"]["rope_base"] = None
    cfg_path.write_text(json.dumps(raw_cfg))
    assert load_model(tmp_path / "ref").config.rope_base == 10_000.0
    sd = torch.load(tmp_path / "ref" / "consolidated.pth", weights_only=True)
    sd["layers.1.mega.timenorm.prior_count"] = torch.tensor(5)
    torch.save(sd, tmp_path / "ref" / "consolidated.pth")
    with pytest.raises(CheckpointError, match=r"layers\.1\.mega\.timenorm\.prior_count=5"):
        load_model(tmp_path / "ref")
    (tmp_path / "ref" / "consolidated.pth").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="consolidated.pth: cannot read"):
        load_model(tmp_path / "ref")



def test_failed_save_leaves_the_previous_model_loadable(tmp_path):
    torch.manual_seed(3)
    old = Megalodon(MegalodonConfig.preset("tiny", vocab_size=8192)).eval()
    save_model(old, tmp_path / "m", tokenizer=TOKENIZER)
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    new = Megalodon(MegalodonConfig.preset("tiny", vocab_size=8192, num_layers=3)).eval()
    with pytest.raises(CheckpointError, match=r"no-such\.model: tokenizer model file not found"):
        save_model(new, tmp_path / "m", tokenizer=tmp_path / "no-such.model")
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    assert same_weights(old, load_model(tmp_path / "m"))


def test_failed_shard_write_leaves_the_previous_model_and_no_temporary_files(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_module, "SHARD_BYTES", 64 * 1024)
    config = MegalodonConfig.preset("tiny", vocab_size=1024, model_dim=64)
    torch.manual_seed(4)
    old = Megalodon(config).eval()
    save_model(old, tmp_path / "m")
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    assert len(before) > 3  # config, index and several shards
    real_save_file, calls = checkpoint_module.save_file, []

    def disk_full_at_the_second_shard(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_save_file(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "save_file", disk_full_at_the_second_shard)
    with pytest.raises(OSError, match="No space left"):
        save_model(Megalodon(config), tmp_path / "m")
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    assert same_weights(old, load_model(tmp_path / "m"))


def test_tokenizer_larger_than_the_vocabulary_is_refused_at_save(tiny, tmp_path):
    with pytest.raises(CheckpointError, match=r"tokenizer\.model: the tokenizer has 8192 pieces but the model only "
                                              r"256 embeddings"):
        save_model(tiny, tmp_path / "m", tokenizer=TOKENIZER)
    assert not (tmp_path / "m" / "config.json").exists()


def test_saved_files_share_one_mode_that_follows_the_umask(tmp_path):
    import os
    import stat

    model = Megalodon(MegalodonConfig.preset("tiny", vocab_size=8192))
    old = os.umask(0o027)
    try:
        save_model(model, tmp_path / "m", tokenizer=TOKENIZER)
    finally:
        os.umask(old)
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in (tmp_path / "m").iterdir()}
    assert modes == {"config.json": "0o640", "model.safetensors": "0o640", "tokenizer.model": "0o640"}


def test_empty_model_path_is_refused(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="empty"):
        load_model("")


def test_a_mistyped_local_path_is_said_to_be_neither_folder_nor_fetched(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"no local folder 'models/mine' exists"):
        load_model("models/mine")
