"""The package list in pyproject.toml covers every Python folder of the five root packages."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"model": "megalodoc.model", "kernels": "megalodoc.kernels", "ingest": "megalodoc.ingest",
           "storage": "megalodoc.storage", "app": "megalodoc.app"}


def test_every_python_folder_is_a_listed_package():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    missing = []
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).parent.parts
            if "__pycache__" in parts:
                continue
            name = ".".join((package, *parts))
            if name not in listed:
                missing.append(f"{name} (holds {path.relative_to(ROOT)})")
            elif not (path.parent / "__init__.py").is_file():
                missing.append(f"{name} has no __init__.py")
    assert not missing, "add to [tool.setuptools] packages: " + ", ".join(sorted(set(missing)))
