"""Import and export of the reference implementation's checkpoint layout.

A reference checkpoint folder holds `config.json` (a nested training config whose "model" section uses
the reference field names), `consolidated.pth` (its state dict) and `consolidate_config.json`. Our
module names mirror the reference's, so the parameter mapping is one table of (ours, reference) key
patterns; the reference also stores buffers we recompute (RoPE frequencies, timestep-norm priors),
checked on import and regenerated on export.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from megalodoc.model.checkpoint import CheckpointError, load_state_dict_strict, save_model
from megalodoc.model.config import DEFAULT_ROPE_BASE, MegalodonConfig
from megalodoc.model.megalodon import Megalodon

WEIGHTS_FILE = "consolidated.pth"
CONFIG_FILE = "config.json"
CONSOLIDATE_FILE = "consolidate_config.json"

# (our key, reference key); "{i}" is the layer index. Every parameter of ours appears exactly once.
KEY_TABLE: tuple[tuple[str, str], ...] = (
    ("embed.weight", "embed.weight"),
    *((f"layers.{{i}}.mega.{n}", f"layers.{{i}}.mega.{n}") for n in (
        "timenorm.weight", "timenorm.bias",
        "cema.alpha", "cema.delta", "cema.theta", "cema.gamma", "cema.omega",
        "rmsnorm.weight", "wz.weight", "wz.bias", "wv.weight", "wv.bias", "wr.weight", "wr.bias",
        "wh1.weight", "wh1.bias", "wh2.weight", "gamma", "beta",
    )),
    *((f"layers.{{i}}.nffn.{n}", f"layers.{{i}}.nffn.{n}") for n in (
        "norm.weight", "norm.bias", "fc1.weight", "fc2.weight", "fc3.weight", "alpha",
    )),
    ("output.final_norm.weight", "output.final_norm.weight"),
    ("output.final_norm.bias", "output.final_norm.bias"),
    ("output.output.weight", "output.output.weight"),
)
# Reference buffers: recomputed by us. Per timestep norm: prior_count () int64, prior_mean/prior_logv (G,).
_NORM_PREFIXES = ("layers.{i}.mega.timenorm", "output.final_norm")
# Reference ModelConf fields that map one to one onto ours.
_SHARED_FIELDS = (
    "vocab_size", "num_layers", "model_dim", "z_dim", "value_dim", "num_heads", "ffn_hidden_dim",
    "cema_ndim", "chunk_size", "norm_num_groups", "norm_eps", "swiglu", "rescale_nffn", "scale_emb",
    "share_emb", "init_mode", "dropout", "hidden_dropout", "attention_dropout",
)


def is_upstream_folder(folder: str | os.PathLike) -> bool:
    """True for a folder holding a reference checkpoint (consolidated.pth)."""
    return (Path(folder) / WEIGHTS_FILE).is_file()


def _expand(pattern: str, num_layers: int) -> list[str]:
    return [pattern.format(i=i) for i in range(num_layers)] if "{i}" in pattern else [pattern]


def ours_to_upstream_keys(num_layers: int) -> dict[str, str]:
    """Every concrete (our key -> reference key) pair for a model with num_layers layers."""
    pairs: dict[str, str] = {}
    for ours, ref in KEY_TABLE:
        pairs.update(zip(_expand(ours, num_layers), _expand(ref, num_layers), strict=True))
    return pairs


def config_from_upstream(model_section: dict, source: str) -> MegalodonConfig:
    """Our config from the reference's "model" section; unsupported settings are refused by name."""
    if model_section.get("output_size", -1) not in (-1, model_section.get("vocab_size")):
        raise CheckpointError(f"{source}: output_size != vocab_size is not supported")
    if not model_section.get("norm_affine", True):
        raise CheckpointError(f"{source}: norm_affine=false is not supported")
    missing = [f for f in ("vocab_size", "num_layers", "model_dim") if f not in model_section]
    if missing:
        raise CheckpointError(f"{source}: model section lacks {', '.join(missing)}")
    fields = {f: model_section[f] for f in _SHARED_FIELDS if f in model_section}
    base = model_section.get("rope_base")
    fields["rope_base"] = float(DEFAULT_ROPE_BASE if base is None else base)
    try:
        return MegalodonConfig(**fields)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: {exc}") from exc


def config_to_upstream(config: MegalodonConfig) -> dict:
    """The reference's "model" section for our config."""
    section = {f: getattr(config, f) for f in _SHARED_FIELDS}
    section.update(output_size=-1, norm_affine=True, efficient_attn=None, layerwise_ckpt=False,
                   rope_base=config.rope_base)
    return section


def _check_norm_priors(state_dict: dict[str, torch.Tensor], num_layers: int, source: str) -> None:
    """The reference's priors only matter when prior_count > 0, which we do not support."""
    for prefix in (p for pat in _NORM_PREFIXES for p in _expand(pat, num_layers)):
        count = state_dict.get(f"{prefix}.prior_count")
        if count is not None and int(count) != 0:
            raise CheckpointError(f"{source}: {prefix}.prior_count={int(count)} (learnt priors) is not supported")


def load_upstream(folder: str | os.PathLike) -> Megalodon:
    """Build our model from a reference checkpoint folder."""
    folder = Path(folder)
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: reference checkpoint folder has no config.json")
    try:
        raw = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({exc})") from exc
    section = raw.get("model", raw)
    config = config_from_upstream(section, str(cfg_path))
    weights = folder / WEIGHTS_FILE
    try:
        state_dict = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise CheckpointError(f"{weights}: cannot read the reference state dict ({exc})") from exc
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{weights}: expected a state dict, found {type(state_dict).__name__}")
    if "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    _check_norm_priors(state_dict, config.num_layers, str(weights))
    model = Megalodon(config)
    mapping = ours_to_upstream_keys(config.num_layers)
    ours = model.state_dict()
    tensors = {}
    for key in ours:
        ref = mapping.get(key)
        if ref is None:
            raise CheckpointError(f"internal: no reference key for {key}")
        if ref in state_dict:
            tensors[key] = state_dict[ref].to(ours[key].dtype)
    load_state_dict_strict(model, tensors, str(weights))
    return model


def convert_upstream(src: str | os.PathLike, dst: str | os.PathLike,
                     tokenizer: str | os.PathLike | None = None) -> Path:
    """Convert a reference checkpoint folder into a megalodoc model folder."""
    return save_model(load_upstream(src), dst, tokenizer=tokenizer)


def export_upstream(model: Megalodon, folder: str | os.PathLike) -> Path:
    """Write the model in the reference layout (config.json, consolidated.pth, consolidate_config.json)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    mapping = ours_to_upstream_keys(cfg.num_layers)
    state_dict = {mapping[k]: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if cfg.share_emb:
        state_dict["output.output.weight"] = state_dict["embed.weight"]
    state_dict["rope.freqs"] = model.rope.freqs.detach().cpu().clone()
    for prefix in (p for pat in _NORM_PREFIXES for p in _expand(pat, cfg.num_layers)):
        state_dict[f"{prefix}.prior_count"] = torch.tensor(0, dtype=torch.int64)
        state_dict[f"{prefix}.prior_mean"] = torch.zeros(cfg.norm_num_groups)
        state_dict[f"{prefix}.prior_logv"] = torch.zeros(cfg.norm_num_groups)
    torch.save(state_dict, folder / WEIGHTS_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps({"model": config_to_upstream(cfg)}, indent=2) + "\n")
    (folder / CONSOLIDATE_FILE).write_text(json.dumps({"model_parallel_size": 1, "dtype": "fp32"}, indent=2) + "\n")
    return folder

