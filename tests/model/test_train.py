"""Training on real tokens (stdlib text, a tokenizer trained in the fixture) with the `tiny` preset:
schedule, data windows, token files, loss going down, exact resume, the CLI."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch

from megalodoc.app.allocator import loaded_allocator, tcmalloc_library
from megalodoc.app.cli import main as cli_main
from megalodoc.ingest.corpus.build import write_corpus
from megalodoc.ingest.corpus.tokenizer import train_corpus_tokenizer
from megalodoc.ingest.corpus.works import Work
from megalodoc.model import Megalodon, MegalodonConfig, load_model
from megalodoc.model.train import checkpoints as ckpt
from megalodoc.model.train.token_data import WindowSampler, corpus_token_file, gather_windows
from megalodoc.model.train.train_config import TrainConfig, lr_lambda, parameter_groups, resolve_model_config
from megalodoc.model.train.trainer import train

STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODULES = ["textwrap.py", "argparse.py", "string.py", "shlex.py", "fnmatch.py", "glob.py", "queue.py",
           "heapq.py", "bisect.py", "calendar.py", "json/decoder.py"]
VOCAB = 512


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest (and steadiest on a shared machine) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("train")
    works = [Work(n.replace("/", "_").removesuffix(".py"), "code", n, "python",
                  (STDLIB / n).read_text(encoding="utf-8")) for n in MODULES]
    write_corpus(works, {}, root / "corpus", heldout=("code/json_decoder",), excluded={})
    tok = train_corpus_tokenizer(root / "corpus", root / "tok.model", vocab_size=VOCAB)
    return {"root": root, "dir": root / "corpus", "tokenizer": tok,
            "train": corpus_token_file(root / "corpus", tok, "train"),
            "heldout": corpus_token_file(root / "corpus", tok, "heldout")}


def tiny() -> MegalodonConfig:
    return MegalodonConfig.preset("tiny", vocab_size=VOCAB)


def quick(**overrides) -> TrainConfig:
    base = dict(steps=6, batch_size=4, seq_chunks=4, lr=1e-2, warmup_steps=2, log_every=1, checkpoint_every=3,
                val_batches=2)
    return TrainConfig(**{**base, **overrides})


# ---- schedule and optimizer groups ----


def test_lr_warms_up_linearly_then_decays_by_cosine_to_the_floor() -> None:
    f = lr_lambda(TrainConfig(steps=110, warmup_steps=10, min_lr_ratio=0.1))
    assert [round(f(s), 6) for s in range(3)] == [0.1, 0.2, 0.3]
    assert f(9) == 1.0 and f(10) == 1.0
    assert math.isclose(f(60), 0.1 + 0.9 * 0.5, rel_tol=1e-12)  # half way through the cosine
    assert math.isclose(f(110), 0.1) and math.isclose(f(500), 0.1)
    decay = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))


def test_weight_decay_only_on_linear_and_embedding_matrices() -> None:
    model = Megalodon(MegalodonConfig.preset("tiny", share_emb=True))
    decay, no_decay = parameter_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "embed.weight" in decayed and any(n.endswith("wz.weight") for n in decayed)
    assert not any(k in n for n in decayed for k in ("cema", "norm", "bias", "gamma", "beta", "omega"))
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_train_config_rejects_bad_values_and_uneven_batches() -> None:
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(steps=5, warmup_steps=10)
    with pytest.raises(ValueError, match="not divisible by 3 processes"):
        TrainConfig(batch_size=4).per_rank_batches(3)
    assert TrainConfig(batch_size=8, micro_batch_size=2).per_rank_batches(2) == (4, 2)
    with pytest.raises(ValueError, match="cema_max_half_life"):
        TrainConfig(cema_max_half_life=4)


def test_model_config_from_preset_json_and_model_folder(tmp_path: Path) -> None:
    assert resolve_model_config("megalodoc-6m") == MegalodonConfig.preset("megalodoc-6m")
    with pytest.raises(ValueError, match="neither a preset"):
        resolve_model_config("default-10m")
    spec = tmp_path / "c.json"
    spec.write_text(json.dumps({"preset": "tiny", "num_layers": 3}))
    assert resolve_model_config(str(spec)) == MegalodonConfig.preset("tiny", num_layers=3)
    spec.write_text(json.dumps({"config": MegalodonConfig.preset("tiny").to_dict()}))
    assert resolve_model_config(str(spec)) == MegalodonConfig.preset("tiny")
    with pytest.raises(ValueError, match="neither a preset"):
        resolve_model_config("no-such-preset")


# ---- data ----


def test_token_file_holds_each_document_between_bos_and_eos(corpus: dict) -> None:
    tf = corpus["train"]
    sp = spm.SentencePieceProcessor(model_file=str(corpus["tokenizer"]))
    tokens = np.asarray(tf.tokens)
    bos = np.flatnonzero(tokens == sp.bos_id())
    eos = np.flatnonzero(tokens == sp.eos_id())
    assert len(bos) == len(eos) == tf.meta["documents"] == len(MODULES) - 1
    first = tokens[bos[0] + 1 : eos[0]].tolist()
    assert sp.decode(first) == (corpus["dir"] / "train/code/argparse.txt").read_text()
    assert tf.meta["tokens"] == len(tokens) and tf.meta["vocab_size"] == VOCAB


def test_token_cache_is_reused_and_rebuilt_for_another_tokenizer(corpus: dict, tmp_path: Path) -> None:
    again = corpus_token_file(corpus["dir"], corpus["tokenizer"], "train")
    assert again.path == corpus["train"].path
    assert again.path.stat().st_mtime_ns == corpus["train"].path.stat().st_mtime_ns  # not rewritten
    other = train_corpus_tokenizer(corpus["dir"], tmp_path / "other.model", vocab_size=600)
    rebuilt = corpus_token_file(corpus["dir"], other, "train")
    assert rebuilt.path != again.path and rebuilt.meta["vocab_size"] == 600


def test_window_sampler_is_a_function_of_the_sample_index() -> None:
    sampler = WindowSampler(num_tokens=10_000, window=64, seed=3)
    per_epoch = sampler.samples_per_epoch()
    starts = sampler.starts(0, per_epoch)
    assert len(set(starts.tolist())) == per_epoch  # no window twice in an epoch
    assert starts.min() >= 0 and (starts + 64 + 1).max() <= 10_000
    assert np.array_equal(sampler.starts(5, 7), starts[5:12])  # resuming mid-way reads the same windows
    assert not np.array_equal(sampler.starts(per_epoch, 20), starts[:20])  # next epoch reshuffles
    assert not np.array_equal(WindowSampler(10_000, 64, seed=4).starts(0, 20), starts[:20])


def test_gather_windows_shifts_targets_by_one() -> None:
    tokens = np.arange(100, dtype=np.uint16)
    ids, targets = gather_windows(tokens, np.array([0, 10]), 8)
    assert ids.dtype == torch.int64 and ids.shape == (2, 8)
    assert ids[1].tolist() == list(range(10, 18)) and targets[1].tolist() == list(range(11, 19))


# ---- training ----


def test_loss_decreases_and_the_model_is_saved(corpus: dict, tmp_path: Path) -> None:
    result = train(tiny(), quick(steps=25, warmup_steps=3, checkpoint_every=100), corpus["train"], tmp_path / "run",
                   tokenizer_path=corpus["tokenizer"], val_data=corpus["heldout"], log=lambda _: None)
    losses = [result.losses[s] for s in range(1, 26)]
    assert losses[0] > math.log(VOCAB) - 0.5  # starts near uniform
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 1.0, losses
    assert result.val_loss is not None and result.val_loss < losses[0] - 0.5
    model = load_model(tmp_path / "run/model")
    assert model.config == tiny()
    assert (tmp_path / "run/model/tokenizer.model").read_bytes() == corpus["tokenizer"].read_bytes()
    log = [json.loads(line) for line in (tmp_path / "run/train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 26)) and all(r["tokens_per_s"] > 0 for r in log)


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resume_repeats_the_uninterrupted_run_exactly(corpus: dict, tmp_path: Path) -> None:
    cfg, tcfg = tiny(), quick(micro_batch_size=2)
    quiet = {"log": lambda _: None, "tokenizer_path": corpus["tokenizer"]}
    whole = train(cfg, tcfg, corpus["train"], tmp_path / "whole", **quiet)
    first = train(cfg, tcfg, corpus["train"], tmp_path / "split", stop_at=4, **quiet)
    assert first.model_dir is None and sorted(first.losses) == [1, 2, 3, 4]
    second = train(cfg, tcfg, corpus["train"], tmp_path / "split", resume=True, **quiet)
    assert sorted(second.losses) == [5, 6]
    for step in range(1, 7):
        got = first.losses.get(step, second.losses.get(step))
        assert got == whole.losses[step], f"step {step}: {got} != {whole.losses[step]}"
    a, b = _params(load_model(tmp_path / "whole/model")), _params(load_model(tmp_path / "split/model"))
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_resume_refuses_other_settings_and_fresh_runs_refuse_old_checkpoints(corpus: dict, tmp_path: Path) -> None:
    quiet = {"log": lambda _: None}
    train(tiny(), quick(), corpus["train"], tmp_path / "run", stop_at=3, **quiet)
    with pytest.raises(ValueError, match="already holds training checkpoints"):
        train(tiny(), quick(), corpus["train"], tmp_path / "run", **quiet)
    with pytest.raises(ValueError, match="lr"):
        train(tiny(), quick(lr=5e-3), corpus["train"], tmp_path / "run", resume=True, **quiet)
    with pytest.raises(ValueError, match="model config"):
        train(tiny().preset("tiny", vocab_size=VOCAB, num_layers=1), quick(), corpus["train"], tmp_path / "run",
              resume=True, **quiet)


def test_long_memory_start_is_applied_and_old_checkpoints_without_the_setting_resume(
        corpus: dict, tmp_path: Path) -> None:
    quiet = {"log": lambda _: None}
    result = train(tiny(), quick(steps=2, lr=1e-6, cema_max_half_life=512), corpus["train"], tmp_path / "long", **quiet)
    _, q, _ = load_model(result.model_dir).layers[0].mega.cema.coefficients()
    q = q.detach()
    half_life = math.log(0.5) / math.log(float(q[:, 0].abs().mean()))
    assert 450 < half_life < 580, half_life  # the ladder's longest rung, barely moved by two tiny steps

    train(tiny(), quick(), corpus["train"], tmp_path / "old", stop_at=3, **quiet)
    newest = ckpt.list_checkpoints(tmp_path / "old")[-1]
    payload = ckpt.load_checkpoint(newest)
    del payload["train_config"]["cema_max_half_life"]  # as written before the setting existed
    ckpt.save_checkpoint(tmp_path / "old", 3, payload, keep=2)
    resumed = train(tiny(), quick(), corpus["train"], tmp_path / "old", resume=True, **quiet)
    assert sorted(resumed.losses) == [4, 5, 6]


def test_cli_trains_from_a_corpus_folder(corpus: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = cli_main(["train", "--config", "tiny", "--data", str(corpus["dir"]), "--tokenizer",
                   str(corpus["tokenizer"]), "--out", str(tmp_path / "run"), "--steps", "2", "--batch-size", "2",
                   "--seq-chunks", "2", "--warmup-steps", "1", "--log-every", "1", "--val-batches", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "step 2/2 loss" in out and "validation loss" in out
    config = json.loads((tmp_path / "run/model/config.json").read_text())["config"]
    assert config["vocab_size"] == VOCAB and config["chunk_size"] == 16


NEEDS_TCMALLOC = pytest.mark.skipif(tcmalloc_library() is None,
                                    reason="libtcmalloc_minimal is not installed (.ci/run installs it)")
ALLOCATOR_LINE = "megalodoc train: C allocator "


def run_train_command(corpus: dict, out: Path, *extra: str, env: dict | None = None,
                      launcher: tuple[str, ...] = (sys.executable, "-m", "megalodoc.app.cli")
                      ) -> subprocess.CompletedProcess:
    """`python -m megalodoc.app.cli train` (or `launcher train`) for one step in a process of its own,
    started on the system allocator (no LD_PRELOAD), as a person's shell starts it."""
    cmd = [*launcher, "train", "--config", "tiny", "--data", str(corpus["dir"]),
           "--tokenizer", str(corpus["tokenizer"]), "--out", str(out), "--steps", "1", "--batch-size", "2",
           "--seq-chunks", "2", "--warmup-steps", "0", "--val-batches", "0", "--device", "cpu", *extra]
    base = {key: value for key, value in os.environ.items() if key != "LD_PRELOAD"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**base, "OMP_NUM_THREADS": "1", **(env or {})})


@NEEDS_TCMALLOC
@pytest.mark.parametrize("choice, runs_on", [(None, "tcmalloc"), ("tcmalloc", "tcmalloc"), ("system", "system")])
def test_the_command_trains_on_the_allocator_chosen(corpus: dict, tmp_path: Path, choice: str | None,
                                                    runs_on: str) -> None:
    done = run_train_command(corpus, tmp_path / "run", *(["--allocator", choice] if choice else []))
    assert done.returncode == 0, done.stderr[-3000:]
    # the line is printed after the re-execution, from what /proc/self/maps then holds
    said = [line[len(ALLOCATOR_LINE):] for line in done.stderr.splitlines() if line.startswith(ALLOCATOR_LINE)]
    assert said == [runs_on], done.stderr[-3000:]
    assert "step 1/1 loss" in done.stdout and (tmp_path / "run/model/config.json").is_file()


@NEEDS_TCMALLOC
@pytest.mark.skipif(shutil.which("megalodoc") is None, reason="the megalodoc console script is not on PATH")
def test_the_console_script_re_executes_itself_too(corpus: dict, tmp_path: Path) -> None:
    done = run_train_command(corpus, tmp_path / "run", launcher=(shutil.which("megalodoc"),))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{ALLOCATOR_LINE}tcmalloc" in done.stderr.splitlines(), done.stderr[-3000:]


@NEEDS_TCMALLOC
def test_a_preload_that_does_not_take_is_reported_not_retried(corpus: dict, tmp_path: Path) -> None:
    # the mark the re-executed process carries, on a process where tcmalloc is not mapped
    done = run_train_command(corpus, tmp_path / "run", "--allocator", "tcmalloc",
                             env={"MEGALODOC_TCMALLOC_PRELOADED": "1"})
    assert done.returncode == 2
    assert done.stderr.startswith("megalodoc train: --allocator tcmalloc: tcmalloc: libtcmalloc_minimal"), done.stderr
    assert "was preloaded but is not mapped into the process" in done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(loaded_allocator() == "tcmalloc", reason="this test process already runs on tcmalloc")
def test_called_from_python_the_process_is_not_re_executed(corpus: dict, tmp_path: Path, capsys) -> None:
    common = ["train", "--config", "tiny", "--data", str(corpus["dir"]), "--tokenizer", str(corpus["tokenizer"]),
              "--steps", "1", "--batch-size", "2", "--seq-chunks", "2", "--warmup-steps", "0", "--val-batches", "0",
              "--device", "cpu"]
    assert cli_main([*common, "--out", str(tmp_path / "auto")]) == 0  # auto: this process goes on as it is
    assert ALLOCATOR_LINE not in capsys.readouterr().err and loaded_allocator() == "system"
    assert (tmp_path / "auto/model/config.json").is_file()
    assert cli_main([*common, "--out", str(tmp_path / "run"), "--allocator", "tcmalloc"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("megalodoc train: --allocator tcmalloc: this process was not started as the megalodoc "
                          "command"), err
    assert not (tmp_path / "run").exists()


@NEEDS_TCMALLOC
def test_a_program_that_sets_sys_argv_itself_is_not_re_executed(corpus: dict, tmp_path: Path) -> None:
    # as IPython's %run or a wrapper does: the interpreter's own arguments are another program's
    program = "import sys; from megalodoc.app.cli import run; sys.argv = ['megalodoc', 'train', *sys.argv[1:]]; " \
              "sys.exit(run())"
    done = subprocess.run([sys.executable, "-c", program, "--config", "tiny", "--data", str(corpus["dir"]),
                           "--tokenizer", str(corpus["tokenizer"]), "--out", str(tmp_path / "run"), "--steps", "1",
                           "--allocator", "tcmalloc"], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})
    assert done.returncode == 2, done.stderr[-3000:]
    assert "this process was not started as the megalodoc command" in done.stderr
    assert not (tmp_path / "run").exists()


def test_auto_leaves_another_preloaded_library_in_charge(corpus: dict, tmp_path: Path) -> None:
    import ctypes.util

    other = ctypes.util.find_library("m")  # a library that serves no malloc: what matters is that one is set
    done = run_train_command(corpus, tmp_path / "run", env={"LD_PRELOAD": other})
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"megalodoc train: LD_PRELOAD={other} is set: the allocator is left as it is" in done.stderr
    assert ALLOCATOR_LINE not in done.stderr


def test_a_missing_tcmalloc_or_another_system_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from megalodoc.app import allocator

    if allocator.loaded_allocator() == "tcmalloc":
        pytest.skip("this test process already runs on tcmalloc")

    def no_exec(*_args) -> None:
        raise AssertionError("the test process must not be re-executed")

    monkeypatch.setattr(allocator.os, "execve", no_exec)
    monkeypatch.setattr(allocator, "tcmalloc_library", lambda: None)  # as on a machine without the package
    with pytest.raises(allocator.AllocatorError, match=r"not installed \(Debian: apt-get install libtcmalloc-minimal4"):
        allocator.reexec_on("tcmalloc")
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    with pytest.raises(allocator.AllocatorError, match="preloading it needs Linux"):
        allocator.reexec_on("tcmalloc")
    with pytest.raises(ValueError, match="allocator must be one of"):
        allocator.reexec_on("jemalloc")


def test_the_re_execution_mark_is_not_passed_on_once_the_allocator_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from megalodoc.app import allocator

    monkeypatch.setenv("MEGALODOC_TCMALLOC_PRELOADED", "1")  # as in a process re-executed on tcmalloc
    allocator.reexec_on(allocator.loaded_allocator())  # runs on what it asks for: nothing to do
    assert "MEGALODOC_TCMALLOC_PRELOADED" not in os.environ  # a child asking for tcmalloc may re-execute


def test_cli_reports_an_unusable_input_in_one_line(corpus: dict, tmp_path: Path, capsys) -> None:
    good = {"--config": "tiny", "--data": str(corpus["dir"]), "--tokenizer": str(corpus["tokenizer"]),
            "--out": str(tmp_path / "run"), "--steps": "1", "--warmup-steps": "0"}
    (tmp_path / "bad.model").write_text("not a model")
    (tmp_path / "empty").mkdir()
    cases = [
        ({"--config": "nope"}, "--config 'nope' is neither a preset"),
        ({"--tokenizer": str(tmp_path / "gone.model")}, f"{tmp_path / 'gone.model'}: no such tokenizer model"),
        ({"--tokenizer": str(tmp_path / "bad.model")}, f"{tmp_path / 'bad.model'}: not a sentencepiece model"),
        ({"--data": str(tmp_path / "empty")}, f"{tmp_path / 'empty'}: no manifest.json"),
        ({"--batch-size": "0"}, "invalid TrainConfig: "),
        ({"--seq-chunks": "4096"}, f"{corpus['train'].path}: "),  # windows longer than the corpus
    ]
    for change, start in cases:
        args = {**good, **change}
        assert cli_main(["train", *(x for kv in args.items() for x in kv)]) == 2, change
        err = capsys.readouterr().err
        assert err.startswith(f"megalodoc train: {start}") and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("field, value, message", [
    ("lr", float("nan"), "lr=nan must be > 0"), ("lr", float("inf"), "lr=inf must be > 0"),
    ("weight_decay", -0.1, "weight_decay=-0.1 must be >= 0"), ("grad_clip", float("inf"), "grad_clip=inf"),
    ("grad_clip", 0.0, "grad_clip=0.0 must be > 0"), ("beta2", 1.0, "beta2=1.0 must be in [0, 1)"),
    ("cema_max_half_life", float("nan"), "cema_max_half_life=nan must be 0"),
])
def test_train_settings_that_are_not_finite_or_in_range_are_refused(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(**{field: value})
