"""End-to-end ingest throughput on this CPU: a real PDF and real repositories read into a fresh SQLite store.

    python bench/ingest.py [--model PATH] [--pdf PATH] [--repo PATH ...] [--out bench/results/ingest.json]
                           [--max-tokens N] [--snapshot-every K] [--threads N] [--no-serial]

Prints a table and writes JSON. Each input is ingested by `ingest_path` (the code behind `megalodoc ingest`)
into its own new SQLite file in a temporary folder, with the model's state written at every chunk. The time
is split as the pipeline measures it (IngestOutcome.times): extraction (the main process waiting for text:
pypdf or file reading, in worker processes for PDFs), tokenization, model (forward without the LM head) and
snapshot writing (state serialisation + one transaction with chunk text and locations); "other" is the
rest (claims, status, progress). Goals: snapshot writing <= 5% of the total; extraction overlapped with the
model, i.e. the wait for text is small next to the extraction work. To see the latter, the same source is
also read once without the model, in-process (`serial_extraction_s`): the pypdf work that had to be done;
`overlap` = 1 - wait / serial work (for PDFs read to the end; repositories are read in-process).
torch runs with one intra-op thread by default (--threads): on 2 cores the other core extracts PDF pages,
and two spinning threads on a shared, busy machine measured many times slower per chunk.

Inputs by default: the Debian Reference PDF (package debian-reference-en, 261 pages; fetched with
`apt-get download debian-reference-en` and `dpkg -x` into .data/bench when missing) or, failing that,
/usr/share/doc/libtasn1-doc/libtasn1.pdf; and the stdlib `json` and `email` packages as repositories.

Model: --model, else the shipped default model, else a freshly initialised model of the default-model
architecture with a sentencepiece tokenizer trained on the fly from stdlib text (speed depends on the
architecture and vocabulary, not on the weights; the output says which model was used).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

from megalodoc.ingest.pipeline import CancelToken, IngestSettings, ingest_path
from megalodoc.ingest.snapshot_spacing import DEFAULT_SNAPSHOT_EVERY
from megalodoc.ingest.sources import SourceOptions, open_source
from megalodoc.model import CheckpointError, Megalodon, MegalodonConfig, ModelBundle, load_bundle, save_model
from megalodoc.model.tokenizer import train_tokenizer
from megalodoc.storage import IngestStatus

ROOT = Path(__file__).resolve().parent.parent
STDLIB = Path(sysconfig.get_paths()["stdlib"])
BENCH_DATA = ROOT / ".data" / "bench"
DEBIAN_REFERENCE = BENCH_DATA / "x" / "usr" / "share" / "debian-reference" / "debian-reference.en.pdf"
LIBTASN1 = Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf")


def _fallback_config() -> MegalodonConfig:
    """The default model's architecture (preset "megalodoc-6m"), used when no trained model is at hand;
    its vocabulary comes from the tokenizer trained here."""
    return MegalodonConfig.preset("megalodoc-6m")


FALLBACK_VOCAB = 8192
TOKENIZER_TEXT_CHARS = 4_000_000  # ~4 MB of stdlib source and docs: trains an 8k BPE in seconds
SNAPSHOT_GOAL = 0.05


def default_pdf() -> Path:
    """The Debian Reference PDF (fetched into .data/bench if apt-get can), else the libtasn1 manual."""
    if not DEBIAN_REFERENCE.is_file() and shutil.which("apt-get") and shutil.which("dpkg"):
        BENCH_DATA.mkdir(parents=True, exist_ok=True)
        print(f"fetching the Debian Reference PDF: apt-get download debian-reference-en into {BENCH_DATA} "
              "(--pdf FILE reads another PDF)", flush=True)
        try:
            subprocess.run(["apt-get", "download", "debian-reference-en"], cwd=BENCH_DATA, check=True,
                           capture_output=True, timeout=300)
            deb = sorted(BENCH_DATA.glob("debian-reference-en_*.deb"))[-1]
            subprocess.run(["dpkg", "-x", str(deb), str(BENCH_DATA / "x")], check=True, capture_output=True)
        except (subprocess.SubprocessError, OSError, IndexError) as exc:
            print(f"could not fetch debian-reference-en ({exc}); using {LIBTASN1}")
    if DEBIAN_REFERENCE.is_file():
        return DEBIAN_REFERENCE
    return LIBTASN1


def stdlib_texts(limit: int) -> list[str]:
    """Multi-line chunks (<= 4000 chars) of stdlib .py files in sorted order, up to `limit` characters."""
    texts, total = [], 0
    for path in sorted(STDLIB.rglob("*.py")):
        if "test" in path.parts or "site-packages" in path.parts:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        texts += [text[i : i + 4000] for i in range(0, len(text), 4000)]
        total += len(text)
        if total >= limit:
            break
    return texts


def make_reader(model: str | None, workdir: Path) -> tuple[ModelBundle, str]:
    """The reader to benchmark and a sentence saying which model it is."""
    if model is not None:
        return load_bundle(model), f"model folder {model}"
    try:
        return load_bundle(None), "the shipped default model"
    except CheckpointError as exc:
        reason = str(exc)
    start = time.perf_counter()
    tokenizer = train_tokenizer(stdlib_texts(TOKENIZER_TEXT_CHARS), workdir / "tokenizer.model", FALLBACK_VOCAB)
    config = MegalodonConfig.from_dict({**_fallback_config().to_dict(), "vocab_size": tokenizer.vocab_size})
    torch.manual_seed(0)
    folder = save_model(Megalodon(config), workdir / "model", tokenizer=workdir / "tokenizer.model")
    note = (f"no trained model ({reason}): a freshly initialised model, config {config.to_dict()}, with a "
            f"BPE tokenizer of {tokenizer.vocab_size} pieces trained here on {TOKENIZER_TEXT_CHARS:,} characters "
            f"of stdlib source in {time.perf_counter() - start:.1f} s")
    return load_bundle(folder), note


def serial_extraction(path: Path) -> float:
    """Seconds to read every piece of `path` in this process (no workers, no model): the extraction work."""
    start = time.perf_counter()
    with open_source(path, SourceOptions(pdf_workers=0)) as source:
        for _ in source.pieces():
            pass
    return time.perf_counter() - start


def bench_one(reader: ModelBundle, path: Path, settings: IngestSettings, max_tokens: int | None, serial: bool) -> dict:
    """Ingest `path` into a new SQLite store; the measured split."""
    from megalodoc.storage import open_store

    cancel = CancelToken()
    events = []

    def on_progress(progress) -> None:
        events.append(progress)
        if max_tokens is not None and progress.tokens_done >= max_tokens:
            cancel.cancel()

    with tempfile.TemporaryDirectory(prefix="megalodoc-bench-") as folder:
        store = open_store(str(Path(folder) / "bench.db"))
        try:
            load_before = os.getloadavg()[0]
            cpu_before = time.process_time()
            outcome = ingest_path(store, reader, path, settings, on_progress=on_progress, cancel=cancel)
            cpu = time.process_time() - cpu_before
            if not outcome.ok and outcome.status != IngestStatus.CANCELLED:
                raise SystemExit(f"ingest of {path} failed: {outcome.message}")
            snapshots = len(store.list_snapshots(outcome.document.id))
            db_bytes = sum(p.stat().st_size for p in Path(folder).glob("bench.db*"))
        finally:
            store.close()
    times = outcome.times
    total = outcome.seconds
    staged = sum(times.values())
    last = events[-1] if events else None
    row = {
        "input": str(path), "name": outcome.document.name, "kind": outcome.document.kind, "status": outcome.status,
        "unit_count": last.unit_count if last else None, "unit_name": last.unit_name if last else None,
        "tokens": outcome.tokens_read, "seconds": total, "tokens_per_second": outcome.tokens_read / total,
        "times": times, "other_s": total - staged,
        "shares": {k: v / total for k, v in times.items()},
        "snapshot_share": times["snapshots"] / total, "snapshot_goal_met": times["snapshots"] / total <= SNAPSHOT_GOAL,
        "snapshots": snapshots, "snapshot_ms_each": 1000 * times["snapshots"] / max(1, snapshots),
        "db_bytes": db_bytes, "process_cpu_s": cpu, "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }
    if serial and outcome.document.kind == "pdf" and outcome.status != IngestStatus.CANCELLED:
        work = serial_extraction(path)
        row["serial_extraction_s"] = work
        row["overlap"] = max(0.0, 1 - times["extraction"] / work) if work > 0 else None
        row["extraction_wait_vs_model"] = times["extraction"] / max(times["model"], 1e-9)
    return row


def print_table(rows: list[dict]) -> None:
    header = (f"{'input':22} {'tokens':>8} {'sec':>7} {'tok/s':>7} {'extract':>8} {'tokenize':>8} {'model':>8} "
              f"{'snapshot':>8} {'other':>6} {'snap%':>6} {'serial-x':>8} {'overlap':>7}")
    print(header)
    for r in rows:
        t = r["times"]
        serial = f"{r['serial_extraction_s']:8.1f}" if "serial_extraction_s" in r else f"{'-':>8}"
        overlap = f"{100 * r['overlap']:6.0f}%" if r.get("overlap") is not None else f"{'-':>7}"
        print(f"{r['name'][:22]:22} {r['tokens']:>8,} {r['seconds']:7.1f} {r['tokens_per_second']:7.0f} "
              f"{t['extraction']:8.2f} {t['tokenization']:8.2f} {t['model']:8.2f} {t['snapshots']:8.2f} "
              f"{r['other_s']:6.2f} {100 * r['snapshot_share']:5.1f}% {serial} {overlap}")
    print("times in seconds; extract = waiting for text (PDF pages come from worker processes); "
          "serial-x = the same extraction done alone in-process; overlap = 1 - extract / serial-x "
          "(PDFs read completely; repositories are read in-process)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: the shipped model, else a fresh one)")
    parser.add_argument("--pdf", type=Path, help="PDF to ingest (default: Debian Reference, else libtasn1 manual)")
    parser.add_argument("--repo", type=Path, action="append", help="repository folder (repeatable; default: "
                        "the stdlib json and email packages)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ingest.json")
    parser.add_argument("--max-tokens", type=int, help="stop each input after about this many tokens (cancel)")
    parser.add_argument("--snapshot-every", type=int, default=DEFAULT_SNAPSHOT_EVERY, metavar="K")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: on 2 cores the other one extracts PDF pages; "
                        "two spinning threads on a shared machine are many times slower)")
    parser.add_argument("--pdf-workers", type=int, help="PDF extraction processes (default: the reader's)")
    parser.add_argument("--no-serial", action="store_true", help="skip the extra in-process extraction pass")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inputs = [args.pdf or default_pdf(), *(args.repo or [STDLIB / "json", STDLIB / "email"])]
    options = SourceOptions() if args.pdf_workers is None else SourceOptions(pdf_workers=args.pdf_workers)
    settings = IngestSettings(snapshot_every=args.snapshot_every, source_options=options)
    with tempfile.TemporaryDirectory(prefix="megalodoc-bench-model-") as workdir:
        reader, model_note = make_reader(args.model, Path(workdir))
        print(f"model: {model_note}")
        print(f"model: {reader.model.num_parameters():,} parameters, chunk size {reader.chunk_size}; "
              f"torch threads {torch.get_num_threads()}, PDF workers {options.pdf_workers}, "
              f"snapshot every {args.snapshot_every} chunk(s)")
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} before the runs "
              "(shared machine: other work competes for the cores)\n")
        rows = [bench_one(reader, Path(p), settings, args.max_tokens, not args.no_serial) for p in inputs]
    print_table(rows)
    result = {
        "model": model_note, "parameters": reader.model.num_parameters(), "config": reader.model.config.to_dict(),
        "torch_threads": torch.get_num_threads(), "pdf_workers": options.pdf_workers,
        "snapshot_every": args.snapshot_every, "snapshot_goal_share": SNAPSHOT_GOAL,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
