"""Two CPU processes (torchrun, gloo, DDP) compute what one process computes with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import torch

from megalodoc.app.allocator import tcmalloc_library
from megalodoc.ingest.corpus.build import write_corpus
from megalodoc.ingest.corpus.tokenizer import train_corpus_tokenizer
from megalodoc.ingest.corpus.works import Work
from megalodoc.model import Megalodon, MegalodonConfig, load_model
from megalodoc.model.train.token_data import corpus_token_file
from megalodoc.model.train.train_config import TrainConfig
from megalodoc.model.train.trainer import train

STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODULES = ["textwrap.py", "argparse.py", "string.py", "shlex.py", "heapq.py", "calendar.py"]
STEPS, BATCH, CHUNKS, LR, WARMUP = 4, 4, 3, 1e-2, 1
# Same arithmetic, different float summation order (gradients summed over ranks instead of micro-batches).
LOSS_RTOL, PARAM_ATOL = 1e-5, 2e-5


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    works = [Work(n.removesuffix(".py"), "code", n, "python", (STDLIB / n).read_text(encoding="utf-8"))
             for n in MODULES]
    write_corpus(works, {}, tmp_path / "corpus", heldout=(), excluded={})
    tok = train_corpus_tokenizer(tmp_path / "corpus", tmp_path / "tok.model", vocab_size=512)
    data = corpus_token_file(tmp_path / "corpus", tok, "train")

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "megalodoc.app.cli", "train", "--config", "tiny", "--data", str(tmp_path / "corpus"),
           "--tokenizer", str(tok), "--out", str(tmp_path / "ddp"), "--steps", str(STEPS),
           "--batch-size", str(BATCH), "--seq-chunks", str(CHUNKS), "--lr", str(LR),
           "--warmup-steps", str(WARMUP), "--log-every", "1", "--val-batches", "0"]
    # started on the system allocator, so that the workers' re-execution on tcmalloc is what is checked below
    env = {**{k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}, "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 process(es) on cpu" in proc.stdout
    if tcmalloc_library() is not None:  # each worker re-executed itself on tcmalloc; rank 0 says so
        assert proc.stderr.count("megalodoc train: C allocator tcmalloc") == 1, proc.stderr[-3000:]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(MegalodonConfig.preset("tiny", vocab_size=512),
                       TrainConfig(steps=STEPS, batch_size=BATCH, micro_batch_size=BATCH // 2, seq_chunks=CHUNKS,
                                   lr=LR, warmup_steps=WARMUP, log_every=1),
                       data, tmp_path / "single", tokenizer_path=tok, log=lambda _: None)
    finally:
        torch.set_num_threads(threads)

    log = [json.loads(line) for line in (tmp_path / "ddp/train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))
    for r in log:
        want = single.losses[r["step"]]
        assert abs(r["loss"] - want) <= LOSS_RTOL * abs(want), f"step {r['step']}: {r['loss']} vs {want}"
    assert single.losses[STEPS] < single.losses[1]  # it trained at all
    a = load_model(tmp_path / "ddp/model").state_dict()
    b = load_model(tmp_path / "single/model").state_dict()
    assert a.keys() == b.keys()
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    assert worst <= PARAM_ATOL, f"largest parameter difference {worst:.3e}"
    torch.manual_seed(0)  # the trainer's initialization (seed 0): training moved the weights far more
    init = Megalodon(MegalodonConfig.preset("tiny", vocab_size=512)).state_dict()
    moved = max((b[k].double() - init[k].double()).abs().max().item() for k in a)
    assert moved > 1000 * PARAM_ATOL
