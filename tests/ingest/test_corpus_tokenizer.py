"""The corpus tokenizer: trained on the train split only, lossless on real code and prose."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
import sentencepiece as spm

from megalodoc.ingest.corpus.build import write_corpus
from megalodoc.ingest.corpus.tokenizer import sample_chunks, train_corpus_tokenizer
from megalodoc.ingest.corpus.works import Work
from megalodoc.ingest.sources.splitting import split_blocks
from megalodoc.model.train.tokenizer_train import BOS_ID, EOS_ID, PAD_ID, UNK_ID, measure

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TRAIN_MODULES = ["textwrap.py", "argparse.py", "string.py", "shlex.py", "fnmatch.py", "heapq.py", "calendar.py"]
# Files never seen in training: indentation, tabs, non-ASCII, a Latin-1 era file.
UNSEEN_MODULES = ["json/decoder.py", "email/_header_value_parser.py", "tabnanny.py", "locale.py"]
# The opening of Moby Dick (public domain), a held-out work.
MOBY_DICK = """CHAPTER 1. Loomings.

Call me Ishmael. Some years ago--never mind how long precisely--having
little or no money in my purse, and nothing particular to interest me on
shore, I thought I would sail about a little and see the watery part of
the world. It is a way I have of driving off the spleen and regulating
the circulation. Whenever I find myself growing grim about the mouth;
whenever it is a damp, drizzly November in my soul; whenever I find
myself involuntarily pausing before coffin warehouses, and bringing up
the rear of every funeral I meet; and especially whenever my hypos get
such an upper hand of me, that it requires a strong moral principle to
prevent me from deliberately stepping into the street, and methodically
knocking people's hats off--then, I account it high time to get to sea
as soon as I can. This is my substitute for pistol and ball. With a
philosophical flourish Cato throws himself upon his sword; I quietly
take to the ship. There is nothing surprising in this. If they but knew
it, almost all men in their degree, some time or other, cherish very
nearly the same feelings towards the ocean with me.
"""
HELD_OUT_MARKER = "held_out_marker_zyxwvutsrq"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tok")
    works = [Work(n.removesuffix(".py"), "code", n, "python", (STDLIB / n).read_text(encoding="utf-8"))
             for n in TRAIN_MODULES]
    works.append(Work("secret", "books", "held out", "x", (HELD_OUT_MARKER + " ") * 4000))
    write_corpus(works, {}, root / "corpus", heldout=("books/secret",), excluded={})
    return train_corpus_tokenizer(root / "corpus", root / "tok.model", vocab_size=1000), root / "corpus"


def _processor(path: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(path))


def test_special_ids_and_byte_fallback(tokenizer) -> None:
    sp = _processor(tokenizer[0])
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert sp.get_piece_size() == 1000
    assert sum(sp.is_byte(i) for i in range(sp.get_piece_size())) == 256
    ids = sp.encode("\u6f22\u5b57 \U0001f642")  # characters never seen in training become byte pieces
    assert UNK_ID not in ids and any(sp.is_byte(i) for i in ids)


@pytest.mark.parametrize("name", UNSEEN_MODULES)
def test_round_trip_is_exact_on_real_stdlib_files(tokenizer, name: str) -> None:
    sp = _processor(tokenizer[0])
    text = (STDLIB / name).read_bytes().decode("utf-8", errors="replace")
    assert sp.decode(sp.encode(text)) == text


def test_round_trip_is_exact_on_prose_and_on_whitespace(tokenizer) -> None:
    sp = _processor(tokenizer[0])
    for text in (MOBY_DICK, "\tx\r\n  y  \n\n\n   ", " leading space", "trailing space ", "\u00e9\u0301 \ufb01"):
        assert sp.decode(sp.encode(text)) == text, repr(text)


def test_pieces_encoded_separately_decode_to_the_whole(tokenizer) -> None:
    sp = _processor(tokenizer[0])
    text = (STDLIB / "json/encoder.py").read_text(encoding="utf-8")
    pieces = list(split_blocks([text], 777))
    assert "".join(pieces) == text
    assert sp.decode([i for p in pieces for i in sp.encode(p)]) == text  # no dummy prefix per piece


def test_trained_on_the_train_split_only(tokenizer) -> None:
    sp = _processor(tokenizer[0])
    vocab = {sp.id_to_piece(i) for i in range(sp.get_piece_size())}
    assert not any("zyxw" in p for p in vocab)  # the held-out marker repeated 4000 times made no piece
    assert any("def" in p for p in vocab) and any("\n" in p for p in vocab)  # newlines are learned


def test_sampling_is_deterministic_and_proportional(tmp_path: Path) -> None:
    files = []
    for i in range(4):
        files.append(tmp_path / f"f{i}.txt")
        files[-1].write_text("".join(f"{i} line {j}\n" for j in range(3000)))
    a = sample_chunks({"books": files}, bytes_per_slice=40_000)
    assert a == sample_chunks({"books": files}, bytes_per_slice=40_000)
    assert 20_000 < sum(map(len, a)) < 60_000
    assert sum(map(len, sample_chunks({"books": files}, bytes_per_slice=10**9))) == sum(
        f.stat().st_size for f in files)


def test_measure_counts_bytes_and_tokens(tokenizer) -> None:
    path, corpus = tokenizer
    stats = measure(path, [corpus / "heldout/books/secret.txt"])
    text = (corpus / "heldout/books/secret.txt").read_text()
    assert stats.bytes == len(text.encode()) and stats.tokens == len(_processor(path).encode(text))
    assert stats.bytes_per_token == stats.bytes / stats.tokens


_REAL_TOKENIZER = Path(__file__).resolve().parents[2] / ".data/tokenizer/megalodoc-8k.model"
_REAL_CORPUS = Path(__file__).resolve().parents[2] / ".data/corpus"


@pytest.mark.slow
@pytest.mark.skipif(not (_REAL_TOKENIZER.is_file() and (_REAL_CORPUS / "manifest.json").is_file()),
                    reason="needs the built corpus and tokenizer under .data/")
def test_real_tokenizer_is_lossless_on_every_held_out_work() -> None:
    sp = _processor(_REAL_TOKENIZER)
    for path in sorted((_REAL_CORPUS / "heldout").rglob("*.txt")):
        text = path.read_bytes().decode("utf-8")
        assert sp.decode(sp.encode(text)) == text, path.name
