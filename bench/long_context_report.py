"""Tables and the plot of bench/long_context.py's results (also usable on a saved JSON file):

    python bench/long_context_report.py bench/reported/cpu/long_context.json [--png out.png] [--markdown]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MEGALODOC = "megalodoc"


def _k(n: int) -> str:
    return f"{n // (1 << 20)}M" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n // 1024}K"


def _num(value, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def _mib(value) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f}"


def stream_table(result: dict) -> list[list[str]]:
    """One row per (length, system): tokens/s, ratio megalodoc / system, ms per chunk, memory, state."""
    rows = [["length", "system", "tokens/s", "megalodoc x", "ms/chunk start", "ms/chunk end", "end x",
             "peak MiB", "state/KV MiB", "decode tok/s", "status"]]
    mega = {r["length"]: r for r in result["stream"] if r["system"] == MEGALODOC}
    for r in result["stream"]:
        ratio = None
        m = mega.get(r["length"])
        if r["system"] != MEGALODOC and m and m.get("tokens_per_s") and r.get("tokens_per_s") and r["status"] == "ok":
            ratio = m["tokens_per_s"] / r["tokens_per_s"]
        end = r.get("ms_per_chunk_end") if r["status"] == "ok" else None
        end_text = _num(end, "{:.1f}")
        if end is None and r.get("probe_ms_per_chunk_end") is not None:
            end = r["probe_ms_per_chunk_end"]
            end_text = f"{end:.1f} (probe)"
        end_ratio = None
        if r["system"] != MEGALODOC and m and m.get("ms_per_chunk_end") and end:
            end_ratio = end / m["ms_per_chunk_end"]
        rows.append([
            _k(r["length"]), r["system"], _num(r.get("tokens_per_s")), _num(ratio, "{:.2f}x"),
            _num(r.get("ms_per_chunk_start"), "{:.1f}"), end_text, _num(end_ratio, "{:.2f}x"),
            _mib(r.get("peak_memory_bytes")), _mib(r.get("state_bytes")),
            _num(r.get("decode_tokens_per_s"), "{:.1f}"),
            r["status"] + (f"; decode: {r['decode_status']}" if r.get("decode_status") else ""),
        ])
    return rows


def one_shot_table(result: dict) -> list[list[str]]:
    rows = [["length", "pass", "system", "tokens/s", "megalodoc x", "peak MiB", "status"]]
    mega = {(r["length"], r["backward"]): r for r in result["one_shot"] if r["system"] == MEGALODOC}
    for r in result["one_shot"]:
        m = mega.get((r["length"], r["backward"]))
        ratio = None
        if r["system"] != MEGALODOC and m and m.get("tokens_per_s") and r.get("tokens_per_s"):
            ratio = m["tokens_per_s"] / r["tokens_per_s"]
        rows.append([_k(r["length"]), "fwd+bwd" if r["backward"] else "fwd", r["system"],
                     _num(r.get("tokens_per_s")), _num(ratio, "{:.2f}x"), _mib(r.get("peak_memory_bytes")),
                     r["status"]])
    return rows


def format_table(rows: list[list[str]], markdown: bool = False) -> str:
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


LEGEND = ("tokens/s: the whole stream from an empty state; megalodoc x: megalodoc's tokens/s over the "
          "system's; ms/chunk end: mean of the last 8 chunks ('probe': one chunk timed after a cache filled "
          "to that length with random keys/values, where the stream was stopped); end x: the system's ms/chunk "
          "at the end over megalodoc's.")


def print_tables(result: dict, markdown: bool = False) -> None:
    meta = result["meta"]
    print(f"\n{meta.get('gpu') or meta.get('processor') or meta['machine']}, torch {meta['torch']}, "
          f"transformers {meta.get('transformers')}, threads {meta['threads']}, dtype {meta['dtype']}, "
          f"config {meta['config']}, chunk {meta['chunk']}, backend {meta.get('megalodoc_backend')}")
    print("\nstreaming\n" + format_table(stream_table(result), markdown))
    print(LEGEND)
    if result.get("one_shot"):
        print("\none-shot (with logits)\n" + format_table(one_shot_table(result), markdown))


def write_plot(result: dict, path: Path) -> None:
    """tokens/s and peak memory against streamed length, log-log, one line per system."""
    import matplotlib

    matplotlib.use("Agg")  # a script: no display
    import matplotlib.pyplot as plt

    systems = list(dict.fromkeys(r["system"] for r in result["stream"]))
    fig, (ax_speed, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in systems:
        done = [r for r in result["stream"] if r["system"] == name and r["status"] == "ok"]
        if not done:
            continue
        lengths = [r["length"] for r in done]
        ax_speed.plot(lengths, [r["tokens_per_s"] for r in done], marker="o", label=name)
        ax_mem.plot(lengths, [r["peak_memory_bytes"] / 2**20 for r in done], marker="o", label=name)
    meta = result["meta"]
    where = meta.get("gpu") or f"CPU, {meta['threads']} thread(s)"
    for ax, label in ((ax_speed, "streaming tokens/s"), (ax_mem, "peak memory (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens streamed")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    mem_kind = "torch.cuda.max_memory_allocated" if meta.get("gpu") else "process RSS"
    ax_mem.set_title(mem_kind, fontsize=9)
    fig.suptitle(f"megalodoc vs Llama ({meta['config']}, {meta['dtype']}, {where})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path)
    parser.add_argument("--png", type=Path)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    result = json.loads(args.json.read_text())
    print_tables(result, args.markdown)
    if args.png:
        write_plot(result, args.png)


if __name__ == "__main__":
    main()
