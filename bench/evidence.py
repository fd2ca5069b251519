"""Evidence ranking measured on questions about two documents the shipped model never trained on.

    flock /tmp/megalodoc-bench.lock python3 bench/evidence.py [--questions bench/evidence_questions.json]
        [--model PATH] [--db STORE.db] [--out bench/results/evidence.json]

The libtasn1 manual (PDF, Debian package libtasn1-doc) and the stdlib `json` package (read as a
repository) are ingested into a temporary SQLite store (or --db, reused when it already holds them)
with the shipped default model (or --model). Every question is asked over the whole document
(`before=None`) with each method; a question counts as found at rank r when the r-th passage's
locations overlap one of its answer pages / line ranges. Reported per method and per question style
(literal: the document's own terms; paraphrased: a reader's words): hit@1, hit@5, and the wall time
of one `rank_evidence` call, p50 / p95, wall and CPU (the model already loaded; other work on the
machine shows in the wall time and the load average recorded with the results). With --model-all,
"model-all" is the model alone over every chunk of the document (no full-text step).
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from megalodoc.app.reader.evidence import METHODS, EvidenceHit, rank_evidence
from megalodoc.app.reader.evidence_model import model_scores
from megalodoc.ingest.library import Library
from megalodoc.storage import LocationRecord

ROOT = Path(__file__).resolve().parent.parent
STDLIB = Path(sysconfig.get_paths()["stdlib"])
K = 5
GOALS = {"paraphrased hit@5": 0.80, "p95 seconds": 3.0}

Ranker = Callable[[Library, int, str], list[EvidenceHit]]


def overlaps(location: LocationRecord, answer: dict) -> bool:
    """Whether a passage location lies on an answer page or overlaps an answer's line range."""
    if "page" in answer:
        return location.page == answer["page"]
    low, high = answer["lines"]
    return (location.path == answer["path"] and location.line_start is not None
            and location.line_start <= high and location.line_end >= low)


def found_rank(hits: list[EvidenceHit], answers: list[dict]) -> int | None:
    """1-based rank of the first hit overlapping an answer, or None."""
    for rank, hit in enumerate(hits, start=1):
        if any(overlaps(loc, answer) for loc in hit.locations for answer in answers):
            return rank
    return None


def model_over_all_chunks(lib: Library, document_id: int, question: str) -> list[EvidenceHit]:
    """Every chunk of the document ranked by the model's question log-likelihood alone."""
    doc = lib.store.get_document(document_id)
    chunks = lib.store.get_chunks(document_id, 0, doc.committed_position)
    scores = model_scores(lib.store, lib.bundle, document_id, [c.end for c in chunks], question)
    order = sorted(range(len(chunks)), key=lambda i: (-scores[i], i))[:K]
    return [
        EvidenceHit(chunks[i].id, chunks[i].start, chunks[i].end, chunks[i].text,
                    tuple(lib.store.locations_between(document_id, chunks[i].start, chunks[i].end)),
                    scores[i], "model-all")
        for i in order
    ]


def rankers(methods: list[str], with_model_all: bool) -> dict[str, Ranker]:
    def method(name: str) -> Ranker:
        return lambda lib, doc, q: rank_evidence(lib.store, lib.bundle, doc, q, before=None, k=K, method=name)

    table = {name: method(name) for name in methods}
    if with_model_all:
        table["model-all"] = lambda lib, doc, q: model_over_all_chunks(lib, doc, q)
    return table


def ingest(lib: Library, spec: dict) -> int:
    path = Path(spec["path"]) if spec["kind"] == "pdf" else STDLIB / spec["stdlib"]
    if not path.exists():
        sys.exit(f"bench/evidence.py: {path} is missing ({spec['source']})")
    return lib.ingest(path).id


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def hit_rates(rows: list[dict], method: str) -> dict:
    rates: dict = {}
    for style in ("literal", "paraphrased", "all"):
        picked = [r for r in rows if style == "all" or r["style"] == style]
        ranks = [r["ranks"][method] for r in picked]
        rates[style] = {
            "n": len(picked),
            "hit@1": sum(1 for r in ranks if r == 1) / max(1, len(picked)),
            "hit@5": sum(1 for r in ranks if r is not None and r <= K) / max(1, len(picked)),
        }
    return rates


def summarize(rows: list[dict], method: str) -> dict:
    summary = hit_rates(rows, method)
    for subset in ("tuning", "check"):
        summary[subset] = hit_rates([r for r in rows if r["set"] == subset], method)
    seconds = [r["seconds"][method] for r in rows]
    summary["p50_s"] = statistics.median(seconds)
    summary["p95_s"] = percentile(seconds, 0.95)
    cpu = [r["cpu_seconds"][method] for r in rows]
    summary["cpu_p50_s"] = statistics.median(cpu)
    summary["cpu_p95_s"] = percentile(cpu, 0.95)
    return summary


def print_table(title: str, rates: dict[str, dict], timing: bool) -> None:
    print(title)
    header = f"{'method':<10} {'literal @1':>10} {'@5':>5} {'paraphrased @1':>14} {'@5':>5} {'all @1':>6} {'@5':>5}"
    print(header + (f" {'p50 s':>6} {'p95 s':>6} {'CPU p95 s':>9}" if timing else ""))
    for name, s in rates.items():
        line = (f"{name:<10} {s['literal']['hit@1']:>10.0%} {s['literal']['hit@5']:>5.0%} "
                f"{s['paraphrased']['hit@1']:>14.0%} {s['paraphrased']['hit@5']:>5.0%} "
                f"{s['all']['hit@1']:>6.0%} {s['all']['hit@5']:>5.0%}")
        if timing:
            line += f" {s['p50_s']:>6.2f} {s['p95_s']:>6.2f} {s['cpu_p95_s']:>9.2f}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=ROOT / "bench" / "evidence_questions.json")
    parser.add_argument("--model", help="model folder or Hub id (default: the shipped model)")
    parser.add_argument("--db", type=Path, help="SQLite file to use (kept; reused if it holds the documents)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared 2-core machine a second thread mostly waits)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="methods to measure (default: all)")
    parser.add_argument("--model-all", action="store_true", help="also rank every chunk by the model alone (slow)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "evidence.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = json.loads(args.questions.read_text())

    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "evidence.db"
        with Library(f"sqlite:///{db}", model=args.model) as lib:
            started = time.perf_counter()
            documents = {name: ingest(lib, doc) for name, doc in spec["documents"].items()}
            ingest_s = time.perf_counter() - started
            table = rankers(args.methods, args.model_all)
            for ranker in table.values():  # warm up: first calls pay for lazy initialisation
                ranker(lib, next(iter(documents.values())), "warm up the caches")
            rows = []
            for question in spec["questions"]:
                row = {"id": question["id"], "style": question["style"], "set": question.get("set", "tuning"),
                       "ranks": {}, "seconds": {}, "cpu_seconds": {}, "top": {}}
                for name, ranker in table.items():
                    started, cpu = time.perf_counter(), time.process_time()
                    hits = ranker(lib, documents[question["document"]], question["question"])
                    row["seconds"][name] = time.perf_counter() - started
                    row["cpu_seconds"][name] = time.process_time() - cpu
                    row["ranks"][name] = found_rank(hits, question["answer"])
                    row["top"][name] = [hit.where for hit in hits]
                rows.append(row)
                print(f"{question['id']}: " + ", ".join(f"{m} {r}" for m, r in row["ranks"].items()), file=sys.stderr)
            tokens = {name: lib.store.get_document(doc).token_count for name, doc in documents.items()}

    summaries = {name: summarize(rows, name) for name in table}
    n_check = sum(1 for r in rows if r["set"] == "check")
    print(f"{len(rows)} questions, k={K}; documents: " + ", ".join(f"{n} {t:,} tokens" for n, t in tokens.items()))
    print_table(f"all {len(rows)} questions", summaries, timing=True)
    print_table(f"check set only ({n_check} questions not used to choose the method)",
                {name: s["check"] for name, s in summaries.items()}, timing=False)
    missed = {name: [r["id"] for r in rows if r["ranks"][name] is None] for name in table}
    for name, ids in missed.items():
        print(f"not in top {K} by {name}: {', '.join(ids) or '-'}")
    result = {
        "questions": str(args.questions.relative_to(ROOT) if args.questions.is_relative_to(ROOT) else args.questions),
        "model": args.model or "shipped default",
        "k": K,
        "threads": args.threads,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "ingest_seconds": ingest_s,
        "load_average": os.getloadavg(),
        "tokens": tokens,
        "goals": GOALS,
        "methods": summaries,
        "per_question": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
