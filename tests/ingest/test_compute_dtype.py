"""A document ingested in fp32 is restored by a bf16 bundle of the same model folder (see state_codec's
policy): same fingerprint, so nothing is re-read; the state comes back with one logged warning."""

from __future__ import annotations

import logging
import sysconfig
from pathlib import Path

import torch
from pipeline_support import make_model_folder

from megalodoc.ingest.library import Library
from megalodoc.model import load_bundle

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def test_fp32_snapshot_restores_in_a_bf16_bundle_with_a_warning(tokenizer, tmp_path, caplog):
    (tmp_path / "tok.model").write_bytes(tokenizer.model_bytes())
    model_dir = make_model_folder(tmp_path / "model", tmp_path / "tok.model", tokenizer.vocab_size)
    book = tmp_path / "book.txt"
    book.write_text((STDLIB / "this.py").read_text())
    with Library(tmp_path / "lib.db", load_bundle(model_dir), snapshot_every=1) as lib:  # a snapshot before 80
        doc = lib.ingest(book)
        fp32_state = lib.state_at(doc, 80)
        assert lib.snapshots(doc)[0].metadata["compute"] == "float32/cpu/calls4"
    bf16 = load_bundle(model_dir, dtype=torch.bfloat16)
    caplog.set_level(logging.WARNING, logger="megalodoc.model.state_codec")
    with Library(tmp_path / "lib.db", bf16) as lib:
        again = lib.ingest(book)  # same fingerprint: the stored document is found, not read again
        assert again.id == doc.id and again.status == "complete"
        bf16_state = lib.state_at(doc, 80)
    warnings = [r.getMessage() for r in caplog.records]
    assert any("computed with float32/cpu/calls4 and continues with bfloat16/cpu/calls4" in w for w in warnings), \
        warnings
    assert bf16_state.position == 80
    # the stored CEMA state comes back exactly; what bf16 adds on top stays close to the fp32 run
    for a, b in zip(fp32_state.layers, bf16_state.layers, strict=True):
        assert b.ema.dtype == torch.complex64
        err = (a.ema - b.ema).abs().max() / a.ema.abs().max()
        assert err < 0.1, float(err)
