"""ReaderService.ask / continue_ / evidence with a tiny model on real documents and a real SQLite store."""

from __future__ import annotations

import json

import pytest
import torch

from megalodoc.app.reader import (
    MACHINE_LABEL,
    DocumentNotFoundError,
    EmptyQuestionError,
    ForeignModelError,
    PositionError,
    PromptFormat,
    QuestionError,
    ReaderService,
)
from megalodoc.app.reader.cursor import document_cursor, fold
from megalodoc.model import Megalodon, MegalodonConfig, save_model
from megalodoc.model.boundary import CALL_CHUNKS


def test_evidence_stops_at_the_reading_point_unless_whole_document(service, book):
    doc = service.ingest(book)
    late = service.evidence(doc, "shlex lexical analyzer", whole_document=True)
    # the best passage names the topic; later ones may come from the words those passages use for it
    assert late and ("shlex" in late[0].passage.lower() or "lexical" in late[0].passage.lower())
    point = min(c.start for c in late if "shlex" in c.passage.lower() or "lexical" in c.passage.lower())
    early = service.evidence(doc, "shlex lexical analyzer", at=point)
    assert all(c.end <= point for c in early)
    assert {c.start for c in late} - {c.start for c in early}


def test_ask_gives_citations_first_then_streams_labelled_text(service, pdf):
    doc = service.ingest(pdf)
    answer = service.ask(doc, "Who are the keepers of lighthouses?", seed=5, sampling={"max_new_tokens": 12})
    assert answer.citations and answer.citations[0].page == 3 and answer.citations[0].where == "page 3"
    assert "lighthouses" in answer.citations[0].passage
    assert answer.label == MACHINE_LABEL and not answer.finished
    pieces = list(answer)
    assert answer.finished and "".join(pieces) == answer.text
    assert 1 <= len(answer.token_ids) <= 12
    with pytest.raises(RuntimeError):
        list(answer)
    again = service.ask(doc, "Who are the keepers of lighthouses?", seed=5, sampling={"max_new_tokens": 12})
    assert again.token_ids == answer.token_ids  # the seed fixes the sampling
    data = json.loads(json.dumps(answer.to_dict()))
    assert data["citations"][0]["page"] == 3 and data["settings"]["seed"] == 5


def test_ask_at_a_page_cites_nothing_after_it(service, pdf):
    doc = service.ingest(pdf)
    answer = service.ask(doc, "lighthouses keepers", at="p. 3", seed=1, sampling={"max_new_tokens": 2})
    assert all(c.page is None or c.page < 3 for c in answer.citations)
    assert answer.position == service.store.position_of_page(doc.id, 3)


def test_answer_reads_evidence_and_question_after_the_state_at_the_reading_point(service, book):
    """The tokens come from the restored state: greedy decoding equals a hand-made run of the model over
    the document prefix, then the prompt."""
    doc = service.ingest(book)
    at = 300
    answer = service.ask(doc, "wrap text", at=at, sampling={"greedy": True, "max_new_tokens": 6})
    prompt = answer.prompt_ids
    ids = service.store.token_ids(doc.id, 0, at) + prompt
    model = service.bundle.model
    expected = []
    with torch.no_grad():
        logits, state = model(torch.tensor([ids]), None)
        for _ in range(6):
            token = int(torch.argmax(logits[0, -1]))
            expected.append(token)
            logits, state = model(torch.tensor([[token]]), state)
    got = answer.token_ids
    assert got == expected[: len(got)] and len(got) >= 1
    passages = "".join(service.prompt_format.passage.format(where=c.where, text=c.passage)
                       for c in answer.citations[: service.prompt_format.max_passages])
    assert service.tokenizer.decode(prompt) == service.prompt_format.question.format(
        passages=passages, question="wrap text")


def test_continue_from_any_point_and_from_the_start(service, book):
    doc = service.ingest(book)
    middle = service.continue_(doc, at=0.5, max_tokens=7, seed=3)
    assert middle.citations == () and len(middle.token_ids) <= 7 and middle.position == round(0.5 * doc.token_count)
    start = service.continue_(doc, at=0, max_tokens=3, seed=3)
    assert start.prompt_ids == [service.bundle.model.config.bos_id] and len(start.token_ids) >= 1


def test_prompt_format_comes_from_the_model_folder(tmp_path, tiny_model_dir, pdf):
    folder = tmp_path / "model"
    folder.mkdir()
    for item in tiny_model_dir.iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["prompt_format"] = {"question": "<q>{question}</q>{passages}<a>", "passage": "[{where}]", "stop": ["</a>"]}
    (folder / "config.json").write_text(json.dumps(config))
    with ReaderService(tmp_path / "x.db", folder) as svc:
        assert svc.prompt_format == PromptFormat(question="<q>{question}</q>{passages}<a>", passage="[{where}]",
                                                 stop=("</a>",))
        doc = svc.ingest(pdf)
        answer = svc.ask(doc, "lighthouses", seed=1, sampling={"max_new_tokens": 1})
        shown = "".join(f"[{c.where}]" for c in answer.citations[:2])
        assert answer.citations[0].where == "page 3"
        assert svc.tokenizer.decode(answer.prompt_ids) == f"<q>lighthouses</q>{shown}<a>"


def test_stop_strings_end_the_text_and_are_never_shown(service):
    from megalodoc.app.reader.answer import TextStream

    fmt = PromptFormat(stop=("\n\n", "END"))
    tokenizer = service.tokenizer
    pieces = [tokenizer.encode(text) for text in ("\n", "The", " answer", "\n", "\n", "more")]
    ids = [i for piece in pieces for i in piece]
    stream = TextStream(iter(ids), tokenizer, fmt)
    shown = list(stream)
    assert "".join(shown) == stream.text == "\nThe answer" and stream.stopped
    assert tokenizer.decode(stream.ids) == "\nThe answer\n\n"  # the stop string's tokens were read
    assert all("\n\n" not in piece for piece in shown)
    stream = TextStream(iter(tokenizer.encode("a END b")), tokenizer, fmt)
    assert "".join(stream) == "a " and stream.stopped
    whole = "no stop here, \u00e9t\u00e9 \U0001f642"
    stream = TextStream(iter(tokenizer.encode(whole)), tokenizer, fmt)
    pieces = list(stream)
    assert "".join(pieces) == whole and not stream.stopped and all("\ufffd" not in p for p in pieces)


def test_fold_keeps_a_tail_and_equals_reading_everything(service, book):
    doc = service.ingest(book)
    C = service.bundle.chunk_size
    S = CALL_CHUNKS * C  # tokens per model call: cursors fold to multiples of it
    cursor = document_cursor(service.store, service.bundle, doc, 5 * C + 3)
    assert cursor.boundary.position == S and len(cursor.tail) == 5 * C + 3 - S and cursor.boundary.at_chunk_boundary
    extra = service.store.token_ids(doc.id, 5 * C + 3, 3 * S)
    folded = fold(service.bundle, cursor, extra)
    assert folded.boundary.position == 2 * S and len(folded.tail) == S  # at least one token stays in the tail
    ids = service.store.token_ids(doc.id, 0, 2 * S)
    state = None
    with torch.no_grad():  # call by call from the start, as ingest reads
        for start in range(0, 2 * S, S):
            _, state = service.bundle.model(torch.tensor([ids[start:start + S]]), state, compute_logits=False)
    for key, value in state.to_flat().items():
        assert torch.equal(folded.boundary.to_flat()[key], value), key


def test_bad_input_gives_typed_errors_naming_the_document(service, book, tmp_path, tiny_model_dir):
    doc = service.ingest(book)
    with pytest.raises(EmptyQuestionError, match="book.txt"):
        service.ask(doc, "   ")
    point = service.start_session(doc)
    with pytest.raises(QuestionError, match=r"book.txt \(id \d+\): the question contains a NUL .* at character 4"):
        service.ask(None, "why\x00?", session=point)  # PostgreSQL could not store the turn: refused first
    assert service.turns(point) == []
    service.delete_session(point)
    with pytest.raises(PositionError, match=r"book.txt .*outside"):
        service.ask(doc, "wrap", at=doc.token_count + 1)
    with pytest.raises(DocumentNotFoundError, match="id 999"):
        service.ask(999, "wrap")
    service.delete_document(doc)
    with pytest.raises(DocumentNotFoundError):
        service.ask(doc, "wrap")
    # a document read by another model: refused before any state is loaded
    other_dir = tmp_path / "other-model"
    torch.manual_seed(1)
    config = service.bundle.model.config
    save_model(Megalodon(MegalodonConfig(**config.to_dict())), other_dir, tokenizer=tiny_model_dir / "tokenizer.model")
    with ReaderService(tmp_path / "reader.db", other_dir) as other:
        theirs = other.ingest(book)
    with pytest.raises(ForeignModelError, match="book.txt .*another model"):
        service.ask(theirs.id, "wrap")


def test_a_document_deleted_before_the_answer_streams_is_named(service, book):
    doc = service.ingest(book)
    answer = service.ask(doc, "wrap text", at=200, seed=1, sampling={"max_new_tokens": 3})
    assert answer.citations  # the evidence was read at once
    service.delete_document(doc)
    with pytest.raises(DocumentNotFoundError, match=r"book.txt \(id \d+\): deleted meanwhile"):
        list(answer)


def test_documents_resolve_by_id_or_name(service, book, repo):
    doc = service.ingest(book)
    service.ingest(repo)
    assert service.document("book.txt").id == doc.id == service.document(str(doc.id)).id
    assert [d.name for d in service.documents()] == ["book.txt", "proj"]
