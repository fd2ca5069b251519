"""End-to-end latency of the reader service's ask with the shipped model on a real PDF.

    flock /tmp/megalodoc-bench.lock python3 bench/reader_ask.py [--questions bench/evidence_questions.json]
        [--pdf /usr/share/doc/libtasn1-doc/libtasn1.pdf] [--pages N] [--limit N] [--db STORE.db]
        [--max-tokens 96] [--threads 2] [--out bench/results/reader_ask.json]

The PDF is ingested with the default model into a temporary SQLite store (or --db, reused when it
already holds it); --pages N stops the ingest after N pages. Each question about that PDF (the
"libtasn1" questions of the questions file, or a built-in handful; --limit N: the first N) is asked at
the end of what was read, with a fixed seed. Measured: seconds until the citations are ready (evidence
ranking), until the first piece of text, until the answer is complete; the generated tokens; and the
process CPU seconds of the whole ask (on a machine shared with other work, CPU seconds with --threads 1
stay close to what an idle core takes, while wall time does not). Then one session of three turns is
timed (each turn also folds and stores its state), and its fourth turn is asked once in the same service
and once in a fresh service restoring the third turn from the store: the two must be token-identical.
Prints a table (p50 / p95 / max) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from megalodoc.app.reader import ReaderService
from megalodoc.ingest.pipeline import CancelToken

ROOT = Path(__file__).resolve().parent.parent
MANUAL = Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf")
BUILT_IN = [
    "Is the parser case sensitive?",
    "Which function encodes a structure into DER?",
    "How do I read ASN.1 definitions from a file?",
    "What does asn1_der_decoding return on error?",
    "Which tool turns ASN.1 definitions into a C array?",
    "How are the errors of the library reported?",
]


def questions_from(path: Path | None) -> list[str]:
    if path is None or not path.exists():
        return BUILT_IN
    data = json.loads(path.read_text())
    return [q["question"] for q in data["questions"] if q["document"] == "libtasn1"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def timed_ask(service: ReaderService, doc, question: str, max_tokens: int, session=None) -> dict:
    cpu = time.process_time()
    start = time.perf_counter()
    answer = service.ask(None if session is not None else doc, question, seed=0,
                         sampling={"max_new_tokens": max_tokens}, session=session)
    evidence = time.perf_counter() - start
    first = None
    for _ in answer:
        if first is None:
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    return {"question": question, "evidence_s": evidence, "first_text_s": first if first is not None else total,
            "total_s": total, "cpu_s": time.process_time() - cpu, "tokens": len(answer.token_ids), "answer": answer}


def summary(rows: list[dict], key: str) -> dict[str, float]:
    values = [row[key] for row in rows]
    return {"p50": statistics.median(values), "p95": percentile(values, 0.95), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=ROOT / "bench" / "evidence_questions.json")
    parser.add_argument("--pdf", type=Path, default=MANUAL)
    parser.add_argument("--db", help="store to use (kept); default: a temporary one")
    parser.add_argument("--pages", type=int, help="stop the ingest after this many pages")
    parser.add_argument("--limit", type=int, help="ask at most this many questions")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "reader_ask.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "bench.db")
        service = ReaderService(db)
        t0 = time.perf_counter()
        cancel = CancelToken()

        def stop_after_pages(progress) -> None:
            if args.pages is not None and progress.units_done >= args.pages:
                cancel.cancel()

        doc = service.ingest(args.pdf, on_progress=stop_after_pages, cancel=cancel)
        ingest_s = time.perf_counter() - t0
        questions = questions_from(args.questions)[: args.limit]
        timed_ask(service, doc, questions[0], 4)  # warm-up
        rows = [timed_ask(service, doc, q, args.max_tokens) for q in questions]
        point = service.start_session(doc, title="bench")
        turns = []
        for q in questions[:3]:
            row = timed_ask(service, doc, q, args.max_tokens, session=point)
            point = row["answer"].point
            turns.append(row)
        last_question = questions[3 % len(questions)]
        straight = service.ask(None, last_question, seed=0, sampling={"max_new_tokens": args.max_tokens},
                               session=point).token_ids  # the uninterrupted session's next turn
        service.close()
        resumed = ReaderService(db)  # as a new process would: restore the third turn from the store
        again = resumed.ask(None, last_question, seed=0, sampling={"max_new_tokens": args.max_tokens},
                            session=resumed.branch(point.after_turn)).token_ids
        identical = again == straight
        resumed.close()
    table = {key: summary(rows, key) for key in ("evidence_s", "first_text_s", "total_s", "cpu_s", "tokens")}
    turn_table = {key: summary(turns, key) for key in ("evidence_s", "total_s", "cpu_s")}
    load = os.getloadavg()[0]
    print(f"document: {args.pdf} ({doc.committed_position:,} tokens, ingest {ingest_s:.1f} s); load {load:.1f}; "
          f"{len(rows)} questions, {args.max_tokens} tokens at most, {args.threads} threads")
    print(f"{'measure':<22}{'p50':>10}{'p95':>10}{'max':>10}")
    for key, stats in table.items():
        print(f"{'ask ' + key:<22}{stats['p50']:>10.3f}{stats['p95']:>10.3f}{stats['max']:>10.3f}")
    for key, stats in turn_table.items():
        print(f"{'session turn ' + key:<22}{stats['p50']:>10.3f}{stats['p95']:>10.3f}{stats['max']:>10.3f}")
    print(f"resumed session gives the uninterrupted tokens: {identical}")
    result = {
        "machine": {"platform": platform.platform(), "threads": args.threads, "torch": torch.__version__,
                    "load_average_1min": load},
        "document": {"path": str(args.pdf), "tokens": doc.committed_position, "ingest_seconds": ingest_s},
        "max_tokens": args.max_tokens,
        "ask": table,
        "session_turn": turn_table,
        "resume_identical": identical,
        "rows": [{k: v for k, v in row.items() if k != "answer"} for row in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
