"""Every CPU benchmark script under bench/ runs end to end at a tiny size and writes the files the README
reads from it. Each runs as its own documented command does (a separate process, from the repository
root, into a temporary folder); the checks read the JSON back: the systems, lengths and passes asked
for are all there and ran, the figures are consistent with each other, the plots are PNG files. Timings
themselves are not judged here (they are the benchmarks' business, not the tests').

The GPU-only scripts (bench/gpu_call_cost.py, bench/attention_gpu.py, bench/gpu_checks.py and
long_context.py's GPU command) need CUDA: here they are only checked to refuse at once, with a message, on
a machine without it (and gpu_checks.py's step runner on plain commands).
bench/evidence.py reads two whole documents and is covered by the reader's own tests."""

from __future__ import annotations

import ctypes.util
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from megalodoc.model import load_model

ROOT = Path(__file__).resolve().parents[2]
LIBTASN1 = Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NEEDS_TCMALLOC = pytest.mark.skipif(ctypes.util.find_library("tcmalloc_minimal") is None,
                                    reason="libtcmalloc_minimal is not installed (.ci/run installs it)")


def run_bench(script: str, *args: object, timeout: float = 600) -> str:
    """Run bench/`script` with `args` from the repository root; returns its stdout (it must exit 0)."""
    env = {key: value for key, value in os.environ.items() if key != "LD_PRELOAD"}  # the system allocator
    result = subprocess.run([sys.executable, str(ROOT / "bench" / script), *map(str, args)], cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"bench/{script} exited {result.returncode}:\n{result.stderr[-4000:]}"
    return result.stdout


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def shipped():
    """The shipped model, which the CPU benchmarks read by default."""
    return load_model()


def test_long_context_streams_both_systems_and_writes_its_table_plot_and_report(tmp_path: Path):
    out = tmp_path / "lc"
    # the shared loss expression runs in train_step_cpu.py's test; here each system's own
    stdout = run_bench("long_context.py", "--max-tokens", 2048, "--time-budget", 60, "--baselines", "llama-width",
                       "--stream-repeats", 2, "--repeats", 1, "--decode-tokens", 4, "--one-shot-loss", "own",
                       "--out", out)
    result = read_json(out / "long_context.json")
    assert f"wrote {out / 'long_context.json'}" in stdout
    meta = result["meta"]
    assert meta["device"] == "cpu" and meta["config"] == "shipped" and meta["threads"] == 1
    assert meta["allocator"] == "system"
    stream = {row["system"]: row for row in result["stream"]}
    assert [(row["system"], row["length"]) for row in result["stream"]] == [("megalodoc", 2048),
                                                                           ("llama-width", 2048)]
    for row in stream.values():
        assert row["status"] == "ok" and row["tokens_done"] == 2048, row
        assert row["tokens_per_s"] > 0 and row["decode_tokens_per_s"] > 0 and row["peak_memory_bytes"] > 0
        # both streams of each system were timed, and decoding after each of them
        assert len(row["tokens_per_s_runs"]) == 2 and len(row["decode_tokens_per_s_runs"]) == 2, row
    # the state is the model's constant-size state; the Llama's KV cache holds keys and values of every
    # layer for every token read (fp32)
    llama = meta["parameters"]["llama-width"]
    assert stream["llama-width"]["state_bytes"] == 2048 * llama["layers"] * 2 * llama["hidden"] * 4
    assert stream["megalodoc"]["state_bytes"] < stream["llama-width"]["state_bytes"] / 100
    assert sorted((row["system"], row["backward"]) for row in result["one_shot"]) == [
        ("llama-width", False), ("llama-width", True), ("megalodoc", False), ("megalodoc", True)]
    for row in result["one_shot"]:
        assert row["status"] == "ok" and row["length"] == 2048 and len(row["runs"]) == 1, row
        assert row["tokens_per_s"] > 0 and row["peak_memory_bytes"] > 0, row
        assert len(row["minor_faults_runs"]) == 1 and isinstance(row["minor_faults_runs"][0], int), row
        assert row.get("loss") == ("own" if row["backward"] else None), row
    assert (out / "long_context.png").read_bytes().startswith(PNG_MAGIC)

    report = run_bench("long_context_report.py", out / "long_context.json", "--png", tmp_path / "again.png",
                       "--markdown")
    assert "megalodoc" in report and "llama-width" in report and "2K" in report
    assert (tmp_path / "again.png").read_bytes().startswith(PNG_MAGIC)


# each system's own training loss against the shared expression, on the same tokens (L - 1 read)
OWN_LOSS_SCRIPT = f"""
import json, sys
import torch
import torch.nn.functional as F
sys.path.append({str(ROOT / "bench")!r})
import long_context as lc
from llama_baseline import build_llama, llama_specs, megalodon_non_embedding_parameters
from megalodoc.model import load_model
torch.manual_seed(0)
model = load_model()
spec = llama_specs(model.config, megalodon_non_embedding_parameters(model))[0]
llama, config = build_llama(spec, torch.device("cpu"), torch.float32, max_positions=1024)
ids = torch.randint(4, model.config.vocab_size, (1, 301))
out = {{}}
for system in (lc.MegalodocSystem(model), lc.LlamaSystem(spec.name, llama, config, 0)):
    own = system.training_loss(ids)
    own.backward()
    grads = [p.grad is not None for p in system.model.parameters()]
    system.model.zero_grad(set_to_none=True)
    with torch.no_grad():
        logits = system.logits(ids[:, :-1])[0]  # (300, V)
    targets = ids[0, 1:]  # (300,)
    if system.name != "megalodoc":  # transformers' loss leaves its last position unlabelled
        logits, targets = logits[:-1], targets[:-1]
    out[system.name] = [own.item(), F.cross_entropy(logits, targets).item(), sum(grads), len(grads)]
print(json.dumps(out))
"""


def test_each_systems_own_training_loss_is_the_shared_cross_entropy_and_reaches_every_weight(tmp_path: Path):
    env = {key: value for key, value in os.environ.items() if key != "LD_PRELOAD"}
    # not from the repository root, whose kernels/ folder transformers would take for its `kernels` package
    done = subprocess.run([sys.executable, "-c", OWN_LOSS_SCRIPT], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) == {"megalodoc", "llama-width"}
    for name, (own, shared, with_grad, parameters) in result.items():
        assert abs(own - shared) <= 1e-5 * shared, (name, own, shared)
        assert with_grad == parameters > 10, (name, with_grad, parameters)  # backward reached every weight


def test_train_step_times_trunk_and_whole_step_for_both_systems(tmp_path: Path, shipped):
    run_bench("train_step_cpu.py", "--tokens", 256, "--repeats", 3, "--out", tmp_path)
    result = read_json(tmp_path / "train_step_cpu.json")
    assert result["meta"]["tokens"] == 256 and result["meta"]["vocab"] == shipped.config.vocab_size
    assert set(result["systems"]) == {"megalodoc", "llama-width"}
    assert result["meta"]["allocator"] == "system"
    for name, row in result["systems"].items():
        assert len(row["trunk_runs_s"]) == len(row["step_runs_s"]) == 3, name
        assert min(row["trunk_runs_s"]) > 0 and min(row["step_runs_s"]) > 0, name
        assert len(row["trunk_minor_faults_runs"]) == len(row["step_minor_faults_runs"]) == 3, name


@NEEDS_TCMALLOC
def test_train_step_runs_on_tcmalloc_when_asked(tmp_path: Path):
    stdout = run_bench("train_step_cpu.py", "--tokens", 128, "--repeats", 1, "--allocator", "tcmalloc",
                       "--out", tmp_path)
    result = read_json(tmp_path / "train_step_cpu.json")
    assert result["meta"]["allocator"] == "tcmalloc" and "allocator: tcmalloc" in stdout
    assert set(result["systems"]) == {"megalodoc", "llama-width"}


@NEEDS_TCMALLOC
@pytest.mark.parametrize("processes", [1, 2])
def test_train_cli_allocators_trains_under_both_allocators_to_the_same_weights(tmp_path: Path, processes: int):
    stdout = run_bench("train_cli_allocators.py", "--config", "tiny", "--steps", 3, "--rounds", 1, "--batch-size", 2,
                       "--seq-chunks", 2, "--modules", 8, "--processes", processes, "--out", tmp_path)
    result = read_json(tmp_path / "train_cli_allocators.json")
    assert result["meta"]["processes"] == processes and f"{processes} process(es)" in stdout
    # the command itself says which allocator it runs on, after re-executing itself (one line under torchrun)
    assert ("torch.distributed.run" in result["meta"]["command"]) == (processes > 1)
    assert [(r["allocator"], r["round"]) for r in result["runs"]] == [("system", 1), ("tcmalloc", 1)]
    for run in result["runs"]:
        assert run["loaded"] == run["allocator"], run
        assert len(run["tokens_per_s_steps"]) == 3 and run["tokens_per_s"] > 0, run
    # the allocator changes where tensors live, never their values
    assert result["weights_identical"] is True and "weights identical in every run: True" in stdout


def test_roofline_counts_every_matrix_product_of_both_systems(tmp_path: Path):
    run_bench("roofline_cpu.py", "--tokens", 1024, "--repeats", 1, "--square", 128, "--out", tmp_path)
    result = read_json(tmp_path / "roofline_cpu.json")
    assert result["square_product"]["gflops"] > 0
    assert {row["system"] for row in result["systems"].values()} == {"megalodoc", "llama-width"}
    for name, row in result["systems"].items():
        # every recorded product (the Llama's fused attention counted as its two) is timed alone
        timed = sum(product["count"] * product["flops"] for product in row["products"])
        assert timed == row["matrix_flops"] + row["attention_flops"] > 0, name
        assert all(p["gflops"] > 0 for p in row["products"]), name


def test_model_cpu_measures_one_shot_and_streaming(tmp_path: Path):
    out = tmp_path / "model_cpu.json"
    run_bench("model_cpu.py", "--tokens", 256, "--repeats", 1, "--out", out)
    rows = read_json(out)["rows"]
    assert rows and all(row["tokens"] == 256 for row in rows)
    for row in rows:
        assert row["one_shot_logits_tok_s"] > 0 and row["stream_logits_tok_s"] > 0, row


def test_fingerprint_of_the_shipped_model(tmp_path: Path, shipped):
    out = tmp_path / "fingerprint.json"
    run_bench("fingerprint.py", "--iters", 1, "--out", out)
    result = read_json(out)
    assert result["same_fingerprint_fp32_bf16"] is True and result["parameters"] == shipped.num_parameters()
    assert all(row["median_ms"] > 0 for row in result["rows"])


def test_storage_quick_run_on_sqlite(tmp_path: Path):
    out = tmp_path / "storage.json"
    run_bench("storage.py", "--quick", "--dir", tmp_path, "--out", out)
    result = read_json(out)
    assert result["dialect"] == "sqlite"
    # --quick lists and searches a tenth of what the goals name
    assert {"write 1 MiB", "read 1 MiB", "list 1,000 snapshots", "search 10,000 chunks"} <= set(result["results"])
    assert all(row["n"] >= 1 and row["median_ms"] > 0 for row in result["results"].values())


def test_kernels_cpu_smoke_compares_both_kernels_with_their_twins(tmp_path: Path):
    run_bench("kernels.py", "--cpu-smoke", "--out", tmp_path)
    result = read_json(tmp_path / "kernels.json")
    assert result["mode"] == "cpu-smoke"
    seen = {(row["op"], row["impl"], row["pass"]) for row in result["rows"]}
    assert seen == {(op, impl, step) for op in ("cema", "timestep_norm") for impl in ("twin", "triton")
                    for step in ("fwd", "fwd+bwd")}
    assert all(row["rel_rms_vs_twin"] < 1e-5 for row in result["rows"])


def test_snapshot_writes_alone(tmp_path: Path):
    out = tmp_path / "writes.json"
    run_bench("snapshots.py", "--writes-only", "--write-count", 5, "--out", out)
    writes = read_json(out)["writes"]
    assert {row["encoding"] for row in writes} == {"raw", "planes4"}
    assert all(row["snapshots"] == 5 and row["add_snapshot_ms_p50"] > 0 for row in writes)


def test_snapshot_spacing_on_a_short_ingest(tmp_path: Path):
    out = tmp_path / "spacing.json"
    document = tmp_path / "decoder.py"
    document.write_text((Path(json.__file__).parent / "decoder.py").read_text())
    run_bench("snapshots.py", "--input", document, "--max-tokens", 1500, "--every", 4, "--samples", 3, "--out", out)
    result = read_json(out)
    (run,) = result["runs"]
    assert run["every"] == 4 and run["tokens"] % (4 * result["config"]["chunk_size"]) == 0
    assert run["snapshots"] == run["tokens"] // (4 * result["config"]["chunk_size"])


@pytest.mark.skipif(not LIBTASN1.is_file(), reason="needs the Debian package libtasn1-doc")
def test_ingest_benchmark_reads_a_pdf_and_two_repositories(tmp_path: Path):
    out = tmp_path / "ingest.json"
    run_bench("ingest.py", "--max-tokens", 1500, "--no-serial", "--pdf", LIBTASN1, "--out", out)
    runs = read_json(out)["runs"]
    assert [run["kind"] for run in runs] == ["pdf", "repo", "repo"]
    for run in runs:
        assert run["tokens"] >= 1500 and run["status"] == "cancelled", run  # stopped at --max-tokens
        # the parts of the ingest time (extraction, tokenization, model, snapshots) leave the rest to other work
        assert all(share > 0 for share in run["shares"].values()) and sum(run["shares"].values()) <= 1, run
        assert set(run["shares"]) == {"extraction", "tokenization", "model", "snapshots"}, run


@pytest.mark.skipif(not LIBTASN1.is_file(), reason="needs the Debian package libtasn1-doc")
def test_reader_ask_benchmark_answers_a_question(tmp_path: Path):
    out = tmp_path / "reader.json"
    run_bench("reader_ask.py", "--pages", 2, "--limit", 1, "--max-tokens", 8, "--out", out)
    result = read_json(out)
    assert result["document"]["tokens"] > 0 and result["max_tokens"] == 8
    ask = result["ask"]
    assert ask["evidence_s"]["p50"] > 0 and 0 < ask["tokens"]["max"] <= 8  # the answer keeps to --max-tokens


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", [
    ["gpu_call_cost.py", "{out}"],
    ["attention_gpu.py", "--out", "{out}"],
    ["long_context.py", "--device", "cuda", "--dtype", "bf16", "--config", "mega200M", "--quick", "--cuda-graph",
     "--call-tokens", "8192", "--stream-repeats", "1", "--out", "{out}"],
    ["long_context.py", "--cuda-graph", "--out", "{out}"],
    ["gpu_checks.py", "{out}"],
], ids=["gpu_call_cost", "attention_gpu", "long_context-cuda", "long_context-cuda-graph-on-cpu", "gpu_checks"])
def test_gpu_commands_refuse_at_once_without_cuda(tmp_path: Path, command: list[str]):
    out = tmp_path / "out"
    script, *args = command
    result = subprocess.run([sys.executable, str(ROOT / "bench" / script), *(a.format(out=out) for a in args)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "CUDA" in last or "--device cuda" in last, last
    assert "Traceback" not in result.stderr and not out.exists()


def test_gpu_checks_runs_a_step_to_its_limit_and_records_it(tmp_path: Path):
    """bench/gpu_checks.py's step runner (the part that runs without CUDA): a step's exit status, output
    and time are recorded, and a step past its limit is killed and recorded as stopped."""
    spec = importlib.util.spec_from_file_location("gpu_checks", ROOT / "bench" / "gpu_checks.py")
    gpu_checks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_checks)
    ok = gpu_checks.run_step("ok", [sys.executable, "-c", "print('one'); print('two')"], 60, tmp_path)
    assert ok["status"] == "passed" and ok["returncode"] == 0 and ok["last_lines"] == ["one", "two"]
    assert (tmp_path / "ok.log").read_text() == "one\ntwo\n"
    failed = gpu_checks.run_step("bad", [sys.executable, "-c", "raise SystemExit(3)"], 60, tmp_path)
    assert failed["status"] == "failed" and failed["returncode"] == 3
    slow = gpu_checks.run_step("slow", [sys.executable, "-c", "import time; print('started', flush=True); "
                                                              "time.sleep(60)"], 2, tmp_path)
    assert slow["status"] == "stopped after 2 s" and slow["returncode"] is None
    assert slow["last_lines"] == ["started"] and slow["seconds"] < 30
    steps = gpu_checks.steps(tmp_path)
    assert list(steps) == list(gpu_checks.SHARES) == ["kernels", "long_context", "call_cost"]
    assert sum(gpu_checks.SHARES.values()) == pytest.approx(1.0)
    for name, target in (("kernels", "tests/kernels"), ("long_context", "bench/long_context.py"),
                         ("call_cost", "bench/gpu_call_cost.py")):  # what each step runs is in the repository
        assert target in steps[name] and (ROOT / target).exists(), steps[name]
