"""Storage latency on SQLite: state write/read (1 MiB, 16 MiB), listing 10,000 snapshots, full-text search
over 100,000 chunks.

    python bench/storage.py [--out bench/results/storage.json] [--dir DIR] [--url URL] [--quick]

Prints a table and writes JSON. Every number is the wall time of one public `Store` call (one unit of
work: its own transaction, commit included; reads include the sha256 check). The database is a fresh
file in a temporary directory (or --dir) on the local disk; --url runs against another empty database.
Goals: 1 MiB write <= 20 ms, read <= 10 ms; listing 10,000 snapshots <= 50 ms; search <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from megalodoc.storage import ChunkText, Location, Store, display_url, open_store

MODEL = "bench-model"
GOALS_MS = {
    "write 1 MiB": 20.0,
    "read 1 MiB": 10.0,
    "list 10,000 snapshots": 50.0,
    "search 100,000 chunks": 50.0,
}
# Words of synthetic chunk text: a Zipf-like vocabulary so that common words match many chunks and
# rare ones few, as in real text. ~160 words is about the text of a 256-token chunk.
VOCABULARY = [f"w{i}" for i in range(20_000)]
COMMON = ["the", "state", "model", "chunk", "reader", "page", "token", "memory", "attention", "layer"]


Samples = list[tuple[float, float]]  # (wall seconds, CPU seconds of this process)


def percentiles(samples: Samples) -> dict[str, float]:
    """Wall-time median / p95 / min, and the median CPU time (which other load on the machine barely
    moves; wall time on a busy machine includes waiting for a core)."""
    ms = sorted(wall * 1000 for wall, _ in samples)
    return {
        "median_ms": statistics.median(ms),
        "p95_ms": ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))],
        "min_ms": ms[0],
        "cpu_median_ms": statistics.median(cpu * 1000 for _, cpu in samples),
        "n": len(ms),
    }


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> Samples:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        samples.append((time.perf_counter() - wall, time.process_time() - cpu))
    return samples


def bench_state_io(store: Store, size: int, repeats: int) -> tuple[dict, dict]:
    """Write `repeats` distinct states of `size` bytes (positions increasing), then read each back."""
    document = store.create_document(f"io-{size}", f"io {size}", "text", None, "tok", MODEL)
    rng = random.Random(size)
    payloads = [rng.randbytes(size) for _ in range(repeats + 1)]
    ids: list[int] = []
    position = 0

    def write() -> None:
        nonlocal position
        position += 256
        info = store.add_snapshot(
            document.id,
            position,
            payloads[len(ids)],
            MODEL,
            1,
            chunks=[ChunkText(position - 256, position, "chunk text " * 80)],
            locations=[Location.page_range(position - 256, position, position // 256)],
        )
        ids.append(info.id)

    writes = timed(write, repeats)
    cursor = iter(ids[1:] + ids[:1])
    reads = timed(lambda: store.load_snapshot_bytes(next(cursor)), repeats)
    return percentiles(writes), percentiles(reads)


def bench_listing(store: Store, count: int, repeats: int) -> dict:
    document = store.create_document("listing", "listing", "pdf", None, "tok", MODEL)
    for index in range(1, count + 1):
        store.add_snapshot(document.id, index * 256, index.to_bytes(8, "little") * 8, MODEL, 1)
    listed = store.list_snapshots(document.id)
    assert len(listed) == count, len(listed)
    return percentiles(timed(lambda: store.list_snapshots(document.id), repeats))


def chunk_text(rng: random.Random, words: int) -> str:
    picked = []
    for _ in range(words):
        if rng.random() < 0.3:
            picked.append(rng.choice(COMMON))
        else:
            picked.append(VOCABULARY[min(len(VOCABULARY) - 1, int(rng.paretovariate(1.1)) - 1)])
    return " ".join(picked)


def bench_search(store: Store, count: int, words: int, repeats: int) -> dict:
    rng = random.Random(7)
    document = store.create_document("search", "search", "text", None, "tok", MODEL)
    batch = 5000
    for first in range(0, count, batch):
        chunks = [
            ChunkText(i * 256, (i + 1) * 256, chunk_text(rng, words)) for i in range(first, min(count, first + batch))
        ]
        store.add_chunks(document.id, chunks)
    store.add_locations(document.id, [Location.page_range(i * 256, (i + 1) * 256, i + 1) for i in range(count)])
    queries = {
        "rare word": "w15000",
        "mid word": "w300",
        "common word": "attention",
        "two words (all)": "memory w40",
        "phrase": '"the state"',
        "three words (any)": ("reader w77 w999", "any"),
        "hostile text": 'state" AND (NEAR w5*',
    }
    results = {}
    all_samples: Samples = []
    for label, query in queries.items():
        text, match = query if isinstance(query, tuple) else (query, "all")
        hits = store.search(text, limit=10, match=match)
        samples = timed(lambda text=text, match=match: store.search(text, limit=10, match=match), repeats)
        all_samples += samples
        results[label] = {"query": text, "match": match, "hits": len(hits), **percentiles(samples)}
    results["all queries"] = percentiles(all_samples)
    return results


def database_size(url: str) -> int | None:
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url[len("sqlite:///") :])
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/storage.json", help="JSON output path")
    parser.add_argument("--dir", default=None, help="directory for the SQLite file (default: a temp dir)")
    parser.add_argument("--url", default=None, help="an empty database URL to use instead of SQLite")
    parser.add_argument("--quick", action="store_true", help="1/10 of the sizes, for a smoke run")
    args = parser.parse_args()

    scale = 10 if args.quick else 1
    snapshots, chunks, words = 10_000 // scale, 100_000 // scale, 160
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="megalodoc-bench-"))
    url = args.url or f"sqlite:///{workdir / 'bench.db'}"
    rows: list[tuple[str, dict]] = []
    load_before = round(os.getloadavg()[0], 2)
    with open_store(url) as store:
        write_1m, read_1m = bench_state_io(store, 1 << 20, repeats=40)
        rows += [("write 1 MiB", write_1m), ("read 1 MiB", read_1m)]
        write_16m, read_16m = bench_state_io(store, 16 << 20, repeats=8)
        rows += [("write 16 MiB", write_16m), ("read 16 MiB", read_16m)]
        rows.append((f"list {snapshots:,} snapshots", bench_listing(store, snapshots, repeats=20)))
        search = bench_search(store, chunks, words, repeats=20)
        rows.append((f"search {chunks:,} chunks", search["all queries"]))
        dialect = store.dialect

    print(f"\nstorage benchmark: {dialect}, {display_url(url)}")
    print(f"load average before: {load_before}, after: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'operation':<26}{'median ms':>11}{'p95 ms':>9}{'min ms':>9}{'CPU ms':>9}{'goal ms':>9}  ok")
    for label, stats in rows:
        goal = GOALS_MS.get(label)
        verdict = "" if goal is None else ("yes" if stats["median_ms"] <= goal else "NO")
        goal_text = "" if goal is None else f"{goal:.0f}"
        print(
            f"{label:<26}{stats['median_ms']:>11.2f}{stats['p95_ms']:>9.2f}{stats['min_ms']:>9.2f}"
            f"{stats['cpu_median_ms']:>9.2f}{goal_text:>9}  {verdict}"
        )
    print(f"\nsearch queries over {chunks:,} chunks of {words} words (limit 10):")
    for label, stats in search.items():
        if label != "all queries":
            print(
                f"  {label:<20}{stats['query']!r:<28}{stats['hits']:>4} hits  median {stats['median_ms']:.2f} ms"
                f"  CPU {stats['cpu_median_ms']:.2f} ms"
            )

    result = {
        "benchmark": "storage",
        "dialect": dialect,
        "sqlite_version": sqlite3.sqlite_version,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "database_bytes": database_size(url),
        "chunk_words": words,
        "goals_ms": GOALS_MS,
        "results": {label: stats for label, stats in rows},
        "search_queries": search,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
