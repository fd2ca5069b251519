"""The weights a config expects, compared with what the weight files hold: names, shapes, dtypes.

`check_weight_headers` reads only the safetensors headers of a folder's weight files (a few KiB), so a
config.json that does not fit its weights (a wrong size, a huge num_layers or vocab_size) is refused
before any module is built or any tensor is read. `weight_problems` is the comparison by name and shape
that `checkpoint.load_state_dict_strict` also uses on loaded tensors.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from safetensors import SafetensorError, safe_open

from megalodoc.model.config import MegalodonConfig
from megalodoc.model.folder_meta import CheckpointError
from megalodoc.model.megalodon import Megalodon

_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # safetensors' names of the dtypes a float weight may be stored in
_LAYER = re.compile(r"layers\.(\d+)\.")
EMBEDDING = "embed.weight"  # (vocab_size, model_dim)


def weight_problems(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Missing, unexpected and mis-shaped names (at most 8 of each list shown), as readable phrases."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else ""))
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected[:8])}" + (" ..." if len(unexpected) > 8 else ""))
    for key in sorted(set(expected) & set(found)):
        if tuple(expected[key]) != tuple(found[key]):
            problems.append(f"{key} has shape {tuple(found[key])}, expected {tuple(expected[key])}")
    return problems


def expected_shapes(config: MegalodonConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every weight a model of `config` has, from a one-layer model; call it only once
    num_layers and the embedding's size are known to match the weight files (the model is built on the CPU:
    on the meta device its initialisation imports torch's compiler, which writes a cache folder)."""
    one = Megalodon(dataclasses.replace(config, num_layers=1, init_mode="none"))
    shapes: dict[str, tuple[int, ...]] = {}
    for key, tensor in one.state_dict().items():
        if key.startswith("layers.0."):
            for i in range(config.num_layers):
                shapes[f"layers.{i}.{key.removeprefix('layers.0.')}"] = tuple(tensor.shape)
        else:
            shapes[key] = tuple(tensor.shape)
    return shapes


def check_weight_headers(folder: Path, weights: Sequence[str], config: MegalodonConfig) -> None:
    """Refuse (CheckpointError naming the folder or file) weight files that are missing or unreadable, or
    whose tensors do not fit `config`; reads only the headers."""
    found: dict[str, tuple[tuple[int, ...], str]] = {}  # name -> (shape, safetensors dtype name)
    for name in weights:
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: weight file listed in config.json is missing")
        try:
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():
                    tensor = handle.get_slice(key)
                    found[key] = (tuple(tensor.get_shape()), tensor.get_dtype())
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: unreadable or truncated safetensors file ({exc})") from exc
    held = {int(match.group(1)) for key in found if (match := _LAYER.match(key))}
    layers = max(held) + 1 if held else 0
    embedding = (config.vocab_size, config.model_dim)
    if config.num_layers != layers:
        problems = [f"config.json says num_layers={config.num_layers} but the weights hold {layers} layers"]
    elif EMBEDDING in found and found[EMBEDDING][0] != embedding:  # before a model of that size is built
        problems = [f"{EMBEDDING} has shape {found[EMBEDDING][0]}, expected {embedding}"]
    else:
        try:
            expected = expected_shapes(config)
        except RuntimeError as exc:  # sizes of the config that no weight pins down, too large to build
            raise CheckpointError(f"{folder / 'config.json'}: a layer of this config cannot be built ({exc})") from exc
        problems = weight_problems(expected, {key: shape for key, (shape, _) in found.items()})
        problems += [f"{key} has dtype {dtype}, expected a floating-point type"
                     for key, (_, dtype) in sorted(found.items()) if dtype not in _FLOAT_DTYPES]
    if problems:
        raise CheckpointError(f"{folder}: weights do not match config.json: " + "; ".join(problems))
