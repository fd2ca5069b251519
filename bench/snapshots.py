"""What snapshots cost, by snapshot spacing: stored bytes per token, share of ingest time, `state_at` latency.

    python bench/snapshots.py [--model PATH] [--input PATH] [--every 1,2,4,8,16] [--samples 40]
                              [--max-tokens N] [--ingest-threads 1] [--query-threads 2]
                              [--out bench/results/snapshots.json]

For each spacing K (a snapshot every K chunks of C tokens) the input is ingested by `ingest_path` (the code
behind `megalodoc ingest`) into a new SQLite file, and then:

- bytes/token: growth of the database file (after a WAL checkpoint) over an empty store, divided by the
  tokens read. This counts everything a document costs: state blobs, chunk text and its full-text index,
  token ids, locations, snapshot rows and indexes. `dbstat` splits it by table.
- snapshot share: seconds spent writing snapshots (serialisation + the one transaction with chunk text,
  token ids and locations) over the whole ingest, as the pipeline measures it (IngestOutcome.times).
- state_at p50/p95: `Library.state_at(doc, p)` at `--samples` positions drawn uniformly (seeded) from the
  document: load the latest snapshot <= p, then re-read the stored tokens from its chunk boundary to p.

The machine is shared, so absolute seconds move with the load; the shares are ratios within one run.
OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE, set before torch loads unless already set): with
the default spinning wait, two torch threads on this busy 2-core machine measured 5-40 times slower
per state_at than one thread; with passive waiting they are as fast as one.
Wrap it in `flock /tmp/megalodoc-bench.lock` so benchmarks do not overlap. Prints a table and writes JSON.
Default input: /usr/share/doc/libtasn1-doc/libtasn1.pdf, else the stdlib `json` package.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP; see the docstring

import argparse
import json
import platform
import random
import sqlite3
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

from megalodoc.ingest.library import Library
from megalodoc.ingest.pipeline import CancelToken, IngestSettings, ingest_path
from megalodoc.model import ModelBundle, load_bundle
from megalodoc.model.boundary import boundary_state_nbytes
from megalodoc.storage import open_store

ROOT = Path(__file__).resolve().parent.parent
LIBTASN1 = Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf")
STDLIB_JSON = Path(sysconfig.get_paths()["stdlib"]) / "json"
GOALS = {"snapshot_share": 0.05, "bytes_per_token": 300, "state_at_p95_ms": 250}


def sqlite_bytes(path: Path) -> int:
    """Size of the database file after moving the WAL into it."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return path.stat().st_size


def table_bytes(path: Path) -> dict[str, int]:
    """Bytes of pages per table (indexes and full-text shadow tables under their own names)."""
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
    finally:
        connection.close()
    return {name: int(size) for name, size in rows}


def state_at_latencies(db: Path, bundle: ModelBundle, document_id: int, tokens: int, samples: int,
                       threads: int) -> list[float]:
    """Milliseconds of `state_at` at `samples` seeded random positions in [1, tokens]."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    positions = [random.Random(1234 + i).randint(1, tokens) for i in range(samples)]
    times = []
    try:
        with Library(db, bundle) as lib:
            lib.state_at(document_id, positions[0])  # warm caches and the allocator
            for p in positions:
                start = time.perf_counter()
                state = lib.state_at(document_id, p)
                times.append(1000 * (time.perf_counter() - start))
                assert state.position == p
    finally:
        torch.set_num_threads(before)
    return times


def _shuffle4(data: bytes) -> bytes:
    """Byte planes of 4-byte words, concatenated (the classic float byte-shuffle)."""
    whole = len(data) // 4 * 4
    return b"".join(data[i:whole:4] for i in range(4)) + data[whole:]


def compression_table(data: bytes) -> list[dict]:
    """Size and time of lossless encodings of one stored state: general compressors on the bytes as they
    are, on byte-shuffled bytes, and the store's own encodings."""
    import bz2
    import lzma
    import zlib

    methods = {
        "zlib-1": (lambda b: zlib.compress(b, 1), zlib.decompress),
        "zlib-6": (lambda b: zlib.compress(b, 6), zlib.decompress),
        "lzma-6": (lzma.compress, lzma.decompress),
        "bz2-9": (bz2.compress, bz2.decompress),
        "shuffle4+zlib-6": (lambda b: zlib.compress(_shuffle4(b), 6), zlib.decompress),
        "shuffle4+lzma-6": (lambda b: lzma.compress(_shuffle4(b)), lzma.decompress),
    }
    try:
        import zstandard

        methods["zstd-3"] = (zstandard.ZstdCompressor(level=3).compress, zstandard.ZstdDecompressor().decompress)
    except ImportError:
        pass
    try:
        from megalodoc.storage.blob_encoding import ENCODINGS, decode_blob, encode_blob
    except ImportError:  # a megalodoc from before the store encoded blobs
        ENCODINGS = ()  # noqa: N806
    for encoding in ENCODINGS:
        methods[f"store:{encoding}"] = (lambda b, e=encoding: encode_blob(b, e),
                                        lambda b, e=encoding: decode_blob(b, e, len(data)))
    rows = []
    for name, (encode, decode) in methods.items():
        encode_ms, decode_ms = [], []
        for _ in range(5):
            start = time.perf_counter()
            coded = encode(data)
            encode_ms.append(1000 * (time.perf_counter() - start))
            start = time.perf_counter()
            decode(coded)
            decode_ms.append(1000 * (time.perf_counter() - start))
        rows.append({"method": name, "bytes": len(coded), "ratio": len(coded) / len(data),
                     "encode_ms": statistics.median(encode_ms), "decode_ms": statistics.median(decode_ms)})
    return rows


def print_compression(rows: list[dict], size: int) -> None:
    print(f"\nlossless encodings of one stored state ({size:,} bytes):")
    print(f"{'method':18} {'bytes':>8} {'saved':>6} {'encode ms':>9} {'decode ms':>9}")
    for r in rows:
        print(f"{r['method']:18} {r['bytes']:>8,} {100 * (1 - r['ratio']):>5.1f}% {r['encode_ms']:>9.2f} "
              f"{r['decode_ms']:>9.2f}")


def write_costs(bundle: ModelBundle, state_bytes: bytes, every: int, count: int) -> list[dict]:
    """Milliseconds per `add_snapshot` of a real state with `every` chunks of text, token ids and a location
    each (what ingest writes at spacing `every`), into a fresh SQLite store per blob encoding; median of
    `count` snapshots. Isolates the store's write path from the model and from PDF extraction."""
    import inspect

    from megalodoc.storage import ChunkText, Location

    C = bundle.chunk_size
    tokenizer = bundle.require_tokenizer()
    ids = tokenizer.encode((STDLIB_JSON / "decoder.py").read_text())[:C]
    text = tokenizer.decode(ids)
    encodings = [None]
    if "state_encoding" in inspect.signature(open_store).parameters:
        from megalodoc.storage.blob_encoding import ENCODINGS

        encodings = list(ENCODINGS)
    rows = []
    for encoding in encodings:
        with tempfile.TemporaryDirectory(prefix="megalodoc-bench-writes-") as folder:
            options = {} if encoding is None else {"state_encoding": encoding}
            with open_store(str(Path(folder) / "w.db"), **options) as store:
                document, _ = store.get_or_create_document("bench", "bench", "text", None, "tok", bundle.fingerprint)
                store.set_status(document.id, "ingesting")
                times = []
                for n in range(count):
                    start_token = n * every * C
                    chunks = [ChunkText(start_token + i * C, start_token + (i + 1) * C, text, tuple(ids))
                              for i in range(every)]
                    locations = [Location.text_span(c.start, c.end, c.start * 4, c.end * 4) for c in chunks]
                    data = state_bytes[:-8] + n.to_bytes(8, "little")  # a new blob each time, as in ingest
                    start = time.perf_counter()
                    store.add_snapshot(document.id, start_token + every * C, data, bundle.fingerprint, 1,
                                       {"piece_index": n}, chunks=chunks, locations=locations)
                    times.append(1000 * (time.perf_counter() - start))
        rows.append({"encoding": encoding or "raw (no encodings)", "every": every, "snapshots": count,
                     "add_snapshot_ms_p50": statistics.median(times), "add_snapshot_ms_mean": statistics.fmean(times)})
    return rows


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_spacing(bundle: ModelBundle, path: Path, every: int, args: argparse.Namespace) -> dict:
    """Ingest `path` with a snapshot every `every` chunks into a fresh store and measure it."""
    with tempfile.TemporaryDirectory(prefix="megalodoc-bench-snap-") as folder:
        db = Path(folder) / "bench.db"
        options = {} if args.encoding is None else {"state_encoding": args.encoding}
        open_store(str(db)).close()
        empty = sqlite_bytes(db)
        store = open_store(str(db), **options)
        cancel_after = args.max_tokens

        def on_progress(progress) -> None:
            if cancel_after is not None and progress.tokens_done >= cancel_after:
                cancel.cancel()

        cancel = CancelToken()
        torch.set_num_threads(args.ingest_threads)
        try:
            outcome = ingest_path(store, bundle, path, IngestSettings(snapshot_every=every),
                                  on_progress=on_progress, cancel=cancel)
            if outcome.status not in ("complete", "cancelled"):
                raise SystemExit(f"ingest of {path} failed: {outcome.message}")
            document = store.get_document(outcome.document.id)
            snapshots = store.list_snapshots(document.id)
            sample_state = store.load_snapshot_bytes(snapshots[len(snapshots) // 2].id)
        finally:
            store.close()
        tokens = document.committed_position
        grown = sqlite_bytes(db) - empty
        tables = table_bytes(db)
        latencies = state_at_latencies(db, bundle, document.id, tokens, args.samples, args.query_threads)
    times = outcome.times
    blob_bytes = sum({s.blob_sha256: s.size_bytes for s in snapshots}.values())
    return {
        "every": every, "tokens": tokens, "status": outcome.status, "seconds": outcome.seconds, "times": times,
        "tokens_per_second": outcome.tokens_read / outcome.seconds,
        "snapshots": len(snapshots), "snapshot_ms_each": 1000 * times["snapshots"] / max(1, len(snapshots)),
        "snapshot_share": times["snapshots"] / outcome.seconds,
        "db_growth_bytes": grown, "bytes_per_token": grown / tokens, "state_bytes_distinct": blob_bytes,
        "table_bytes": tables,
        "state_at_ms": latencies, "state_at_p50_ms": percentile(latencies, 0.5),
        "state_at_p95_ms": percentile(latencies, 0.95), "state_at_mean_ms": statistics.fmean(latencies),
        "load_average": os.getloadavg()[0], "sample_state": sample_state,
    }


def print_table(rows: list[dict]) -> None:
    print(f"{'K':>3} {'tokens':>7} {'snaps':>5} {'tok/s':>6} {'snap ms':>7} {'snap%':>6} {'B/token':>8} "
          f"{'states B/tok':>12} {'p50 ms':>7} {'p95 ms':>7} {'load':>5}")
    for r in rows:
        state_share = r["table_bytes"].get("state_blobs", 0) / r["tokens"]
        print(f"{r['every']:>3} {r['tokens']:>7,} {r['snapshots']:>5} {r['tokens_per_second']:>6.0f} "
              f"{r['snapshot_ms_each']:>7.1f} {100 * r['snapshot_share']:>5.1f}% {r['bytes_per_token']:>8.0f} "
              f"{state_share:>12.0f} {r['state_at_p50_ms']:>7.0f} {r['state_at_p95_ms']:>7.0f} "
              f"{r['load_average']:>5.1f}")
    print("K: snapshot every K chunks; snap ms: per snapshot; snap%: snapshot writing / ingest time; "
          "B/token: database growth per token; states B/tok: of which state blob pages; p50/p95: state_at "
          "latency at random positions; load: 1-minute load average after the run (shared machine)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: the shipped model)")
    parser.add_argument("--input", type=Path, help="document to ingest (default: libtasn1 manual, else stdlib json)")
    parser.add_argument("--every", default="1,2,4,8,16", help="snapshot spacings K to measure, comma-separated")
    parser.add_argument("--samples", type=int, default=40, help="state_at positions per spacing")
    parser.add_argument("--max-tokens", type=int, help="stop each ingest after about this many tokens")
    parser.add_argument("--ingest-threads", type=int, default=1,
                        help="torch threads while ingesting (default 1, as bench/ingest.py: the other core "
                        "extracts PDF pages)")
    parser.add_argument("--query-threads", type=int, default=2, help="torch threads for state_at (default 2)")
    parser.add_argument("--encoding", help="how the store keeps state blobs (planes4 or raw; default: the "
                        "store's default)")
    parser.add_argument("--writes-only", action="store_true",
                        help="only the store's write-path timing (add_snapshot), no ingest")
    parser.add_argument("--write-count", type=int, default=60, help="snapshots per write-path timing")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "snapshots.json")
    args = parser.parse_args()
    path = args.input or (LIBTASN1 if LIBTASN1.is_file() else STDLIB_JSON)
    bundle = load_bundle(args.model)
    config = bundle.model.config
    print(f"model: {args.model or 'the shipped default model'}, {bundle.model.num_parameters():,} parameters, "
          f"chunk size {config.chunk_size}; boundary state {boundary_state_nbytes(config):,} bytes of tensors")
    read = "the store's write path only (a state of 4 chunks of json/decoder.py)" if args.writes_only else path
    print(f"input: {read}; ingest threads {args.ingest_threads}, state_at threads {args.query_threads}; "
          f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}\n")
    if args.writes_only:
        from megalodoc.model import state_to_bytes

        sample = state_to_bytes(bundle.model.initial_state(1), bundle)
        with torch.no_grad():  # a state with real values: 4 chunks of text read
            ids = bundle.require_tokenizer().encode((STDLIB_JSON / "decoder.py").read_text())[: 4 * config.chunk_size]
            _, state = bundle.model(torch.tensor([ids]), compute_logits=False)
        sample = state_to_bytes(state, bundle)
        writes = [row for every in (1, 4) for row in write_costs(bundle, sample, every, args.write_count)]
        for row in writes:
            print(f"  add_snapshot, {row['every']} chunk(s) per snapshot, {row['encoding']:>20}: "
                  f"p50 {row['add_snapshot_ms_p50']:.2f} ms, mean {row['add_snapshot_ms_mean']:.2f} ms")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"writes": writes, "load_average": os.getloadavg()[0]}, indent=2) + "\n")
        print(f"wrote {args.out}")
        return
    rows = []
    for every in (int(k) for k in args.every.split(",")):
        rows.append(bench_spacing(bundle, path, every, args))
        print(f"  K={every}: {rows[-1]['bytes_per_token']:.0f} B/token, "
              f"{100 * rows[-1]['snapshot_share']:.1f}% snapshots, p95 {rows[-1]['state_at_p95_ms']:.0f} ms",
              file=sys.stderr)
    print_table(rows)
    sample = rows[0].pop("sample_state")
    for r in rows[1:]:
        r.pop("sample_state")
    compression = compression_table(sample)
    print_compression(compression, len(sample))
    result = {
        "input": str(path), "model": args.model or "default", "config": config.to_dict(),
        "boundary_state_tensor_bytes": boundary_state_nbytes(config), "goals": GOALS,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "ingest_threads": args.ingest_threads,
        "query_threads": args.query_threads, "samples": args.samples,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "encoding": args.encoding or "store default", "runs": rows, "compression": compression,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
