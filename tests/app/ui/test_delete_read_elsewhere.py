"""Delete in the web app for a document another process is reading: the page says what the person can
do (wait for that reading to end, or stop it where it runs), not the Python API's force=True."""

from __future__ import annotations

import pytest

from megalodoc.app.ui import library_handlers as h
from megalodoc.app.ui.errors import UiError


def test_a_document_read_by_another_process_is_not_deleted_with_advice_for_the_page(ctx):
    bundle = ctx.service.bundle
    doc = ctx.service.store.create_document("b" * 64, "big.txt", "text", "/elsewhere/big.txt",
                                            bundle.require_tokenizer().fingerprint, bundle.fingerprint)
    assert ctx.service.store.claim_document(doc.id, "cli-worker-7", 60)  # a `megalodoc ingest` elsewhere
    with pytest.raises(UiError) as refused:
        h.delete_document(ctx, doc.id)
    message = str(refused.value)
    assert message.startswith(f"big.txt (id {doc.id}) is being read by another process (cli-worker-7)")
    assert "wait for that reading to end, or stop it where it runs" in message
    assert "force" not in message and "cancel it first" not in message
    assert ctx.service.store.get_document(doc.id).name == "big.txt"  # still there
