"""Megalodon vs same-size Transformers on one long real document, side by side in one process.

    python bench/long_context.py                       # CPU: the shipped model, fp32, 1 thread
    python bench/long_context.py --max-tokens 8192 --time-budget 20 --out /tmp/lc   # a CI-sized smoke run
    python bench/long_context.py --device cuda --dtype bf16 --config mega200M --quick --out FOLDER

Three measurements, every system in the same run (megalodoc, then each Transformer baseline, length by
length, so that they share the machine's state):
1. streaming: one document fed chunk by chunk (C tokens per call: megalodoc's chunk size, for both, or
   --call-tokens) from an empty state up to 2K ... 1M tokens: tokens/s, ms per call at the start and at
   the end (lengths up to 8K are streamed --stream-repeats times, systems taking turns, and the median
   run is kept), peak
   memory (RSS on CPU, torch.cuda.max_memory_allocated on GPU), bytes of the state or of the KV cache;
   at the decode lengths, tokens/s of greedy decoding from the state reached (after every repeated
   stream, median kept). Streams and decoding run under torch.inference_mode, as ingest and generation
   run; the one-shot forward under torch.no_grad, as the surprise curve runs;
2. one-shot (training-style, with logits): forward, and forward + backward of the cross-entropy, at
   2K, 4K, 8K, 32K tokens. The loss is the same expression for every system (F.cross_entropy of its whole
   logits), or with --one-shot-loss own each system's own training loss: megalodoc train's
   (LanguageModelLoss: on a CPU the head and the cross-entropy a block of rows at a time) and
   transformers' (LlamaForCausalLM with labels=), both reading the length's first L - 1 tokens;
One-shot rows record the minor page faults of each timed run. --allocator tcmalloc reruns the script on
tcmalloc, which keeps freed memory in the process (bench/allocator.py): timings then leave out the page
faults that glibc's fresh 64 MiB blocks take, and peak RSS holds what earlier measurements left.
A baseline that exceeds the per-stream time budget or the memory cap stops there; that is recorded,
and its longer lengths are skipped. Writes long_context.json and long_context.png into --out and prints
a table.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

# The script's folder holds bench/kernels.py, which would shadow the `kernels` package that transformers
# probes for: import transformers' Llama with that folder off the path, then add it back at the end.
_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path.pop(0)
try:
    import transformers.models.llama.modeling_llama  # noqa: F401
except ImportError:
    pass  # recorded in the results: the baselines need the bench extra
sys.path.append(str(_HERE))

from allocator import ALLOCATORS, loaded_allocator, minor_faults, run_under  # noqa: E402

from megalodoc.model import Megalodon, MegalodonConfig, load_model  # noqa: E402
from megalodoc.model.cuda_graph import GraphedStream  # noqa: E402
from megalodoc.model.train.trainer import LanguageModelLoss  # noqa: E402

from llama_baseline import (  # noqa: E402
    build_llama,
    cache_bytes,
    cache_keyword,
    llama_specs,
    megalodon_non_embedding_parameters,
    new_cache,
    non_embedding_parameters,
)
from long_context_report import print_tables, write_plot  # noqa: E402
from repeated_runs import median_run  # noqa: E402

K = 1024
STREAM_LENGTHS = [2 * K, 4 * K, 8 * K, 32 * K, 128 * K, 512 * K, 1024 * K]
# streamed lengths up to this are repeated (--stream-repeats) and the median run kept: one short run is noisy
REPEATED_MAX = 8 * K
ONE_SHOT_LENGTHS = [2 * K, 4 * K, 8 * K, 32 * K]
DECODE_LENGTHS = [2 * K, 32 * K, 128 * K]
# torch >= 2.5 names it at the top level; older versions only under torch.cuda
OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
# chunks averaged for "ms per chunk at the start" (after the first, which pays one-off costs) and "at the end"
EDGE_CHUNKS = 8
# chunks whose median is "ms per chunk at the end, median": a mean of 8 moves by a few % with one slow chunk
MEDIAN_CHUNKS = 32
# a long stream's calls are also cut into this many consecutive slices, each summarised by its median
# call time: whether a call's cost grows along the stream, which the ends alone cannot tell from noise
SLICES = 16


# ---------------------------------------------------------------- the document
def document_ids(tokens: int, tokenizer_path: Path) -> torch.Tensor:
    """At least `tokens` ids of real text: the Python standard library's .py files, concatenated in
    sorted order and repeated if needed, encoded with the shipped tokenizer."""
    from megalodoc.model.tokenizer import Tokenizer

    tok = Tokenizer.from_file(tokenizer_path)
    root = Path(os.__file__).parent
    files = sorted(p for p in root.rglob("*.py") if not {"site-packages", "dist-packages"} & set(p.parts))
    ids: list[int] = []
    for path in files:
        ids.extend(tok.encode(path.read_text(encoding="utf-8", errors="replace")))
        if len(ids) >= tokens:
            break
    if not ids:
        raise RuntimeError(f"no .py files found under {root} to build the benchmark document from")
    reps = -(-tokens // len(ids))
    return torch.tensor((ids * reps)[:tokens], dtype=torch.int64)


# ---------------------------------------------------------------- memory and time
def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Meter:
    """Peak memory of one measured stretch: RSS sampled every 2 ms by a thread on CPU (torch releases the
    GIL inside its ops), the allocator's peak on CUDA. Use as a context manager."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Meter:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            self.peak = self.base
        else:
            self.base = self.peak = rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_bytes())

    def growth(self) -> int:
        return self.peak - self.base

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, rss_bytes())
        else:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()

    def result(self) -> dict:
        return {"peak_memory_bytes": self.peak, "memory_growth_bytes": self.peak - self.base}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------- systems
class MegalodocSystem:
    name = "megalodoc"

    def __init__(self, model: Megalodon, cuda_graph: bool = False) -> None:
        self.model = model
        self.state = None
        self.kv_bytes_per_token = 0  # the state does not grow
        # chunk-aligned calls from a boundary state replay a captured CUDA graph (model/cuda_graph.py)
        self.graphed = GraphedStream(model) if cuda_graph else None

    def reset(self) -> None:
        self.state = None

    def step(self, ids: torch.Tensor) -> None:
        if self.graphed is not None:
            self.state = self.graphed(ids, self.state)
        else:
            _, self.state = self.model(ids, self.state, compute_logits=False)

    def state_bytes(self) -> int:
        return 0 if self.state is None else self.state.nbytes()

    def next_logits(self, ids: torch.Tensor) -> torch.Tensor:
        logits, self.state = self.model(ids, self.state)
        return logits[0, -1]

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids)[0]

    def training_loss(self, ids: torch.Tensor) -> torch.Tensor:
        """`megalodoc train`'s loss of reading ids[:, :-1] and predicting ids[:, 1:] (L - 1 targets)."""
        return LanguageModelLoss(self.model)(ids[:, :-1], ids[:, 1:])


class LlamaSystem:
    def __init__(self, name: str, model, config, kv_bytes_per_token: int) -> None:
        self.name = name
        self.kv_bytes_per_token = kv_bytes_per_token
        self.model = model
        self.config = config
        self.keyword = cache_keyword(model)
        self.cache = None

    def reset(self) -> None:
        self.cache = new_cache(self.config)

    def step(self, ids: torch.Tensor) -> None:
        self.model.model(input_ids=ids, use_cache=True, **{self.keyword: self.cache})

    def state_bytes(self) -> int:
        return cache_bytes(self.cache)

    def probe_ms(self, ids: torch.Tensor, position: int, device: torch.device, repeats: int = 3) -> float:
        """ms for one chunk after `position` cached tokens, the cache filled with random keys and values
        instead of streamed ones (the work of a call does not depend on the values). Successive calls
        append, so the timed chunks sit at position + 1..repeats chunks (a few chunks past the length)."""
        cfg = self.config
        cache = new_cache(cfg)
        head_dim = cfg.hidden_size // cfg.num_attention_heads
        param = next(self.model.parameters())
        for layer in range(cfg.num_hidden_layers):
            shape = (1, cfg.num_key_value_heads, position, head_dim)
            cache.update(torch.randn(shape, dtype=param.dtype, device=device),
                         torch.randn(shape, dtype=param.dtype, device=device), layer)
        times = []
        with torch.inference_mode():  # as stream() runs
            for _ in range(repeats + 1):
                sync(device)
                t0 = time.perf_counter()
                self.model.model(input_ids=ids, use_cache=True, **{self.keyword: cache})
                sync(device)
                times.append(time.perf_counter() - t0)
        del cache
        return 1e3 * sorted(times[1:])[len(times[1:]) // 2]

    def next_logits(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **{self.keyword: self.cache})
        return out.logits[0, -1]

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids).logits

    def training_loss(self, ids: torch.Tensor) -> torch.Tensor:
        """transformers' own causal-LM loss of reading ids[:, :-1] (it shifts the labels itself: L - 2
        targets, its last position unlabelled)."""
        return self.model(input_ids=ids[:, :-1], labels=ids[:, :-1]).loss


# ---------------------------------------------------------------- measurements
class Budget:
    """The whole run's deadline (seconds since start), after which remaining work is skipped."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def over(self) -> bool:
        return time.perf_counter() > self.end


def stream(system, ids: torch.Tensor, chunk: int, device: torch.device, args, run: Budget,
           decode: bool) -> dict:
    """Feed ids chunk by chunk from an empty state; stop early on the time budget or memory cap."""
    row: dict = {"system": system.name, "length": int(ids.shape[1]), "chunk": chunk}
    system.reset()
    times: list[float] = []
    status = "ok"
    cap = args.memory_cap_gib * 2**30
    start = time.perf_counter()
    try:
        # inference_mode, as ingest reads; every system alike
        with Meter(device) as meter, torch.inference_mode():
            for pos in range(0, ids.shape[1], chunk):
                t0 = time.perf_counter()
                system.step(ids[:, pos : pos + chunk])
                sync(device)
                times.append(time.perf_counter() - t0)
                elapsed = time.perf_counter() - start
                if pos + chunk < ids.shape[1]:
                    if elapsed > args.time_budget:
                        status = f"stopped: time budget {args.time_budget:g}s"
                        break
                    if device.type != "cuda" and meter.growth() > cap:
                        status = f"stopped: memory cap {args.memory_cap_gib:g} GiB"
                        break
                    if run.over():
                        status = "stopped: run deadline"
                        break
    except OOM:
        status = "stopped: out of memory"
    done = min(len(times) * chunk, ids.shape[1])
    total = sum(times)
    row.update(status=status, tokens_done=done, seconds=total, tokens_per_s=done / total if total else None)
    if times:
        first = times[1 : 1 + EDGE_CHUNKS] or times[:1]
        row["ms_per_chunk_start"] = 1e3 * sum(first) / len(first)
        row["ms_per_chunk_end"] = 1e3 * sum(times[-EDGE_CHUNKS:]) / len(times[-EDGE_CHUNKS:])
        row["ms_per_chunk_end_median"] = 1e3 * statistics.median(times[-MEDIAN_CHUNKS:])
        if len(times) >= SLICES * MEDIAN_CHUNKS:
            bounds = [len(times) * i // SLICES for i in range(SLICES + 1)]
            row["ms_per_chunk_slice_medians"] = [
                1e3 * statistics.median(times[a:b]) for a, b in itertools.pairwise(bounds)
            ]
    row["state_bytes"] = system.state_bytes() if status != "stopped: out of memory" else None
    row.update(meter.result())
    if decode and status == "ok":
        row.update(measure_decode(system, ids, device, args.decode_tokens))
    system.reset()  # free the cache before the next system runs
    return row


def probe_row(system, row: dict, ids_all: torch.Tensor, chunk: int, device: torch.device, args) -> None:
    """Where a baseline could not stream to the length, time one chunk at the end of it with a filled
    cache (see LlamaSystem.probe_ms): the cost per chunk it would have reached."""
    position = row["length"] - chunk
    if device.type != "cuda" and system.kv_bytes_per_token * position > args.memory_cap_gib * 2**30:
        return
    try:
        ms = system.probe_ms(ids_all[:, position : position + chunk], position, device)
    except OOM:
        row["probe_status"] = "out of memory"
        return
    row["probe_ms_per_chunk_end"] = ms


def measure_decode(system, ids: torch.Tensor, device: torch.device, n: int) -> dict:
    """Greedy decoding from the state reached: one token per call, the token read back each step."""
    token = ids[:, -1:]
    out: dict = {}
    try:
        with torch.inference_mode():  # as Generation runs its model calls
            for _ in range(4):  # warm-up (first calls allocate)
                token = system.next_logits(token).argmax().view(1, 1)
            sync(device)
            t0 = time.perf_counter()
            for _ in range(n):
                token = system.next_logits(token).argmax().view(1, 1)
            int(token)
            out["decode_tokens_per_s"] = n / (time.perf_counter() - t0)
    except OOM:
        out["decode_status"] = "out of memory"
    return out


def one_shot_once(system, ids: torch.Tensor, device: torch.device, backward: bool, loss: str = "shared") -> float:
    """Seconds of one forward (no grad) or forward + backward of the next-token cross-entropy: the same
    expression for every system ("shared") or the system's own training loss ("own")."""
    t0 = time.perf_counter()
    if backward:
        if loss == "own":
            value = system.training_loss(ids)
        else:
            value = F.cross_entropy(system.logits(ids)[0, :-1].float(), ids[0, 1:])
        value.backward()
        system.model.zero_grad(set_to_none=True)
    else:
        with torch.no_grad():
            system.logits(ids)
    sync(device)
    return time.perf_counter() - t0


def one_shot_rows(systems, ids_all: torch.Tensor, lengths: list[int], device, args, run: Budget) -> list[dict]:
    """Per length and pass: one warm-up run per system, then the timed runs with the systems taking turns
    (so that a drift of the machine's speed reaches every system alike); the median run is kept."""
    rows = []
    last: dict[tuple[str, bool], tuple[int, float]] = {}
    for L in lengths:
        ids = ids_all[:, :L]
        for backward in (False, True):
            timed = 1 if L > 8 * K else args.repeats
            here: dict[str, dict] = {}
            for system in systems:
                row = here[system.name] = {"system": system.name, "length": L, "backward": backward}
                if backward:
                    row["loss"] = args.one_shot_loss
                prev = last.get((system.name, backward))
                # megalodoc's cost grows linearly, a Transformer's at most quadratically (attention):
                # skip what would exceed the budget (timed runs plus one warm-up)
                power = 1 if system.name == "megalodoc" else 2
                guess = None if prev is None else prev[1] * (L / prev[0]) ** power * (timed + 1)
                if run.over():
                    row["status"] = "skipped: run deadline"
                elif prev is not None and prev[1] < 0:
                    row["status"] = "skipped: a shorter length failed"
                elif guess is not None and guess > args.time_budget:
                    row["status"] = f"skipped: estimated {guess:.0f}s > time budget"
                else:
                    row.update(status="ok", runs=[], minor_faults_runs=[], peak_memory_bytes=0,
                               memory_growth_bytes=0)
            for index in range(timed + 1):  # index 0 warms up
                turn = index % len(systems)
                for system in systems[turn:] + systems[:turn]:
                    row = here[system.name]
                    if row["status"] != "ok":
                        continue
                    try:
                        with Meter(device) as meter:
                            faults = minor_faults()
                            seconds = one_shot_once(system, ids, device, backward, args.one_shot_loss)
                            faults = minor_faults() - faults
                    except OOM:
                        row.update(status="stopped: out of memory")
                        continue
                    if index:
                        row["runs"].append(seconds)
                        row["minor_faults_runs"].append(faults)
                        for key, value in meter.result().items():
                            row[key] = max(row[key], value)
            for system in systems:
                row = here[system.name]
                if row["status"] == "ok":
                    seconds = sorted(row["runs"])[len(row["runs"]) // 2]
                    row.update(seconds=seconds, tokens_per_s=L / seconds)
                    last[(system.name, backward)] = (L, seconds)
                elif row["status"] == "stopped: out of memory":
                    last[(system.name, backward)] = (L, -1.0)
                rows.append(row)
                print(_short(row), flush=True)
    return rows


def _short(row: dict) -> str:
    keys = ("system", "length", "backward", "status", "tokens_per_s", "ms_per_chunk_end", "decode_tokens_per_s")
    return "  ".join(f"{k}={row[k]:.1f}" if isinstance(row.get(k), float) else f"{k}={row[k]}"
                     for k in keys if k in row)


# ---------------------------------------------------------------- setup
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--config", default="shipped",
                        help="'shipped' (the default model's weights) or a preset name (random weights)")
    parser.add_argument("--out", default="bench/results", help="folder for long_context.json / .png")
    parser.add_argument("--max-tokens", type=int, default=STREAM_LENGTHS[-1], help="drop longer lengths")
    parser.add_argument("--time-budget", type=float, default=300.0,
                        help="seconds per streamed length or one-shot measurement before a system is stopped")
    parser.add_argument("--deadline", type=float, default=4 * 3600.0, help="seconds for the whole run")
    parser.add_argument("--memory-cap-gib", type=float, default=6.0,
                        help="CPU: stop a stream whose RSS grows by more than this")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--allocator", choices=ALLOCATORS, default="system",
                        help="the C allocator under the run: the system's (glibc) or tcmalloc, preloaded; "
                             "under tcmalloc, peak RSS includes memory kept from earlier measurements")
    parser.add_argument("--repeats", type=int, default=3, help="timed one-shot repeats (median) up to 8K")
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--baselines", default="llama-width,llama-params",
                        help="comma-separated subset of llama-width,llama-params, run in this order ('' for none)")
    parser.add_argument("--no-one-shot", action="store_true")
    parser.add_argument("--one-shot-loss", choices=("shared", "own"), default="shared",
                        help="forward+backward loss: F.cross_entropy of the whole logits for every system, or "
                             "each system's own training loss (megalodoc train's, transformers' labels=)")
    parser.add_argument("--call-tokens", type=int, default=None,
                        help="tokens per streaming call for every system (default: megalodoc's chunk size)")
    parser.add_argument("--stream-repeats", type=int, default=3,
                        help=f"streams per system at lengths up to {REPEATED_MAX // K}K (median kept)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="megalodoc streams through captured CUDA graphs (model/cuda_graph.py)")
    parser.add_argument("--backend", choices=("torch", "triton"),
                        help="megalodoc's kernels (sets MEGALODOC_BACKEND); default: the dispatcher's choice")
    parser.add_argument("--quick", action="store_true",
                        help="GPU-sized run of about 4 minutes: budget 20 s per stream, deadline 200 s, "
                             "one-shot with 1 repeat")
    args = parser.parse_args()
    try:
        device_type = torch.device(args.device).type
    except RuntimeError as error:
        parser.error(f"--device {args.device}: {error}")
    if device_type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device here (torch {torch.__version__})")
    if args.cuda_graph and device_type != "cuda":
        parser.error("--cuda-graph needs --device cuda")
    if args.quick:
        args.time_budget = min(args.time_budget, 20.0)
        args.deadline = min(args.deadline, 200.0)
        args.repeats = 1
    return args


def load_megalodon(args, device: torch.device, dtype: torch.dtype) -> tuple[Megalodon, Path]:
    from megalodoc.model.checkpoint import DEFAULT_MODEL_DIR

    tokenizer = DEFAULT_MODEL_DIR / "tokenizer.model"
    if args.config == "shipped":
        return load_model(device=device, dtype=dtype), tokenizer
    torch.manual_seed(0)
    cfg = MegalodonConfig.preset(args.config)
    with torch.device(device):
        model = Megalodon(cfg)
    return model.to(dtype=dtype).eval(), tokenizer


def machine(device: torch.device, args) -> dict:
    info = {
        "platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "device": str(device), "allocator": loaded_allocator(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    from megalodoc.kernels.dispatch import choose_backend

    info["megalodoc_backend"] = choose_backend(torch.empty(0, device=device))
    return info


def main() -> None:
    args = parse_args()
    run_under(args.allocator)
    if args.backend:
        os.environ["MEGALODOC_BACKEND"] = args.backend  # read by the dispatcher at every call
    run = Budget(args.deadline)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    model, tokenizer = load_megalodon(args, device, dtype)
    cfg = model.config
    chunk = args.call_tokens or cfg.chunk_size  # tokens per streaming call
    mega_ne = megalodon_non_embedding_parameters(model)
    stream_lengths = [L for L in STREAM_LENGTHS if L <= args.max_tokens]
    one_shot_lengths = [L for L in ONE_SHOT_LENGTHS if L <= args.max_tokens]
    ids_all = document_ids(max(stream_lengths + one_shot_lengths), tokenizer).to(device)[None]  # (1, T)
    systems: list = [MegalodocSystem(model, cuda_graph=args.cuda_graph)]
    params = {"megalodoc": {"non_embedding": mega_ne, "total": model.num_parameters()}}
    wanted = [b for b in args.baselines.split(",") if b]
    baseline_note = None
    if wanted:
        try:
            specs = {spec.name: spec for spec in llama_specs(cfg, mega_ne)}
            for spec in (specs[name] for name in wanted if name in specs):  # in the order asked for
                llama, lcfg = build_llama(spec, device, dtype, max_positions=2 * stream_lengths[-1])
                kv = spec.kv_bytes_per_token(torch.finfo(dtype).bits // 8)
                systems.append(LlamaSystem(spec.name, llama, lcfg, kv))
                params[spec.name] = {
                    "non_embedding": non_embedding_parameters(llama, ("model.embed_tokens.", "lm_head.")),
                    "total": sum(p.numel() for p in llama.parameters()),
                    "hidden": spec.hidden, "layers": spec.layers, "ffn": spec.ffn, "heads": spec.heads,
                }
        except ImportError as exc:
            baseline_note = f"transformers is not installed ({exc}); pip install -e '.[bench]'"
            print(baseline_note, flush=True)
    print(f"device {device}, dtype {args.dtype}, threads {torch.get_num_threads()}, chunk {chunk}; "
          f"parameters {params}", flush=True)

    for system in systems:  # warm-up: first calls compile kernels and grow allocator pools
        warm = stream(system, ids_all[:, : 2 * chunk], chunk, device, args, run, decode=True)
        print(f"warm-up {system.name}: {warm['status']}", flush=True)
    stream_rows: list[dict] = []
    stopped: dict[str, str] = {}
    for index, L in enumerate(stream_lengths):
        turn = index % len(systems)  # rotate who goes first, so that no system always follows another
        order = systems[turn:] + systems[:turn]
        rows: dict[str, list[dict]] = {}
        for system in order:
            if system.name in stopped:
                row = {"system": system.name, "length": L, "status": f"skipped: {stopped[system.name]}"}
            elif run.over():
                row = {"system": system.name, "length": L, "status": "skipped: run deadline"}
            elif device.type != "cuda" and system.kv_bytes_per_token * L > args.memory_cap_gib * 2**30:
                row = {"system": system.name, "length": L,
                       "status": f"skipped: KV cache {system.kv_bytes_per_token * L / 2**30:.1f} GiB > memory cap"}
            else:
                row = stream(system, ids_all[:, :L], chunk, device, args, run, decode=L in DECODE_LENGTHS)
                if row["status"] != "ok":
                    stopped[system.name] = f"{row['status']} at a shorter length"
            rows[system.name] = [row]
        if L <= REPEATED_MAX:  # more runs, systems taking turns, then each system's median run
            for _ in range(args.stream_repeats - 1):
                for system in order:
                    if rows[system.name][0]["status"] == "ok" and not run.over():
                        rows[system.name].append(
                            stream(system, ids_all[:, :L], chunk, device, args, run, decode=L in DECODE_LENGTHS))
        for system in order:
            runs = [r for r in rows[system.name] if r["status"] == "ok"]
            row = rows[system.name][0]
            if len(runs) > 1:
                row = median_run(runs)
            if row["status"] != "ok" and hasattr(system, "probe_ms") and not row["status"].endswith("deadline"):
                probe_row(system, row, ids_all, chunk, device, args)
            stream_rows.append(row)
            print(_short(row), flush=True)
    one_rows = [] if args.no_one_shot else one_shot_rows(systems, ids_all, one_shot_lengths, device, args, run)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "meta": {**machine(device, args), "dtype": args.dtype, "config": args.config,
                 "megalodon_config": cfg.to_dict(), "chunk": chunk, "parameters": params,
                 "args": vars(args), "baseline_note": baseline_note,
                 "document": "Python standard library .py files, sorted, concatenated, repeated as needed",
                 "wall_seconds": round(time.perf_counter() - (run.end - args.deadline), 1)},
        "stream": stream_rows,
        "one_shot": one_rows,
    }
    (out / "long_context.json").write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    print_tables(result)
    write_plot(result, out / "long_context.png")
    print(f"wrote {out / 'long_context.json'} and {out / 'long_context.png'}")


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


if __name__ == "__main__":
    main()
