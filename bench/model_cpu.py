"""CPU throughput of the model: one-shot forward vs chunk-by-chunk streaming, with and without the LM head.

    python bench/model_cpu.py [--out bench/results/model_cpu.json] [--tokens 4096] [--repeats 3]

Prints a table and writes JSON. Streaming a document chunk by chunk carries the recurrent state between
calls; its cost per token should stay close to one forward over the whole document.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from megalodoc.model import Megalodon, MegalodonConfig

CONFIGS = {
    "tiny": MegalodonConfig.preset("tiny"),
    "megalodoc-6m": MegalodonConfig.preset("megalodoc-6m"),  # the shipped default model's architecture
    # ~24M parameters: the size class of the default model
    "small-24M": MegalodonConfig(
        vocab_size=8192, num_layers=6, model_dim=512, z_dim=128, value_dim=1024, num_heads=4,
        ffn_hidden_dim=1024, cema_ndim=16, chunk_size=256, norm_num_groups=32, swiglu=True,
    ),
}


def timed(fn, repeats: int) -> float:
    """Median wall time of fn() over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def measure(name: str, config: MegalodonConfig, tokens: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = Megalodon(config).eval()
    C = config.chunk_size
    tokens = max(C, tokens // C * C)
    ids = torch.randint(0, config.vocab_size, (1, tokens))

    def one_shot(logits: bool):
        with torch.no_grad():
            model(ids, compute_logits=logits)

    def streaming(logits: bool):
        state = None
        with torch.no_grad():
            for start in range(0, tokens, C):
                _, state = model(ids[:, start : start + C], state, compute_logits=logits)

    row = {"config": name, "params": model.num_parameters(), "tokens": tokens, "chunk_size": C}
    for label, fn in [("one_shot_logits", lambda: one_shot(True)), ("stream_logits", lambda: streaming(True)),
                      ("one_shot_no_head", lambda: one_shot(False)), ("stream_no_head", lambda: streaming(False))]:
        row[label + "_tok_s"] = tokens / timed(fn, repeats)
    row["stream_cost_ratio_logits"] = row["one_shot_logits_tok_s"] / row["stream_logits_tok_s"]
    row["stream_cost_ratio_no_head"] = row["one_shot_no_head_tok_s"] / row["stream_no_head_tok_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/model_cpu.json")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(name, cfg, args.tokens, args.repeats) for name, cfg in CONFIGS.items()]
    header = ["config", "params", "tokens", "one-shot tok/s", "stream tok/s", "one-shot no-head", "stream no-head",
              "stream/one-shot cost", "(no head)"]
    print(" | ".join(header))
    for r in rows:
        print(" | ".join([
            r["config"], f"{r['params']:,}", str(r["tokens"]), f"{r['one_shot_logits_tok_s']:.0f}",
            f"{r['stream_logits_tok_s']:.0f}", f"{r['one_shot_no_head_tok_s']:.0f}", f"{r['stream_no_head_tok_s']:.0f}",
            f"{r['stream_cost_ratio_logits']:.2f}x", f"{r['stream_cost_ratio_no_head']:.2f}x",
        ]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"threads": args.threads, "torch": torch.__version__, "machine": platform.machine(),
            "processor": platform.processor()}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
