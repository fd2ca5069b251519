"""The sentencepiece Tokenizer wrapper, with a small real model trained on stdlib source."""

from __future__ import annotations

import hashlib
import sysconfig
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from megalodoc.model.tokenizer import Tokenizer, TokenizerError, UnencodableTextError, train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
VOCAB = 1000


def _training_texts(limit_chars: int = 1_000_000) -> list[str]:
    """Multi-line chunks (<= 4000 chars) of the top-level stdlib modules, sorted, about 1 MB."""
    texts: list[str] = []
    total = 0
    for path in sorted(STDLIB.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        texts.extend(text[start:start + 4000] for start in range(0, len(text), 4000))
        total += len(text)
        if total >= limit_chars:
            break
    return texts


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.getbasetemp() / f"stdlib-bpe-{VOCAB}.model"  # shared with the ingest tests
    if not path.exists():
        train_tokenizer(_training_texts(), path, VOCAB)
    return path


@pytest.fixture(scope="module")
def tokenizer(model_path: Path) -> Tokenizer:
    return Tokenizer.from_file(model_path)


def _real_files() -> list[Path]:
    files = [STDLIB / "json" / "decoder.py", STDLIB / "textwrap.py", STDLIB / "LICENSE.txt"]
    non_ascii = []
    for path in sorted(STDLIB.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if any(ord(char) > 0x2000 for char in text):
            non_ascii.append(path)
        if len(non_ascii) == 3:
            break
    return [path for path in files + non_ascii if path.exists()]


def test_vocabulary_special_ids_and_fingerprint(tokenizer: Tokenizer, model_path: Path):
    assert tokenizer.vocab_size == VOCAB
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2, 3)
    assert tokenizer.special_ids() == {"bos_id": 2, "eos_id": 3, "pad_id": 0, "unk_id": 1}
    assert tokenizer.fingerprint == hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert tokenizer.model_bytes() == model_path.read_bytes()
    assert tokenizer.is_lossless()


def test_round_trip_on_real_files_with_indentation_tabs_and_non_ascii(tokenizer: Tokenizer):
    files = _real_files()
    assert any(any(ord(c) > 0x2000 for c in p.read_text(encoding="utf-8")) for p in files)
    for path in files:
        text = path.read_text(encoding="utf-8")
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text, path
        assert len(ids) < len(text), f"{path}: no compression at all"
    code = "def f(x):\n\tif x:\n\t\treturn '  two  spaces  '\n    \n\n\t# tab\r\n"
    assert tokenizer.decode(tokenizer.encode(code)) == code


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_round_trip_on_any_text(tokenizer: Tokenizer, text: str):
    assert tokenizer.decode(tokenizer.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.text(), st.text())
def test_pieces_concatenate_losslessly(tokenizer: Tokenizer, left: str, right: str):
    assert tokenizer.decode(tokenizer.encode(left) + tokenizer.encode(right)) == left + right


def test_missing_corrupt_empty_and_folder_paths_are_named(tmp_path: Path, model_path: Path):
    with pytest.raises(TokenizerError, match=f"^{tmp_path}/none.model: tokenizer model file not found$"):
        Tokenizer.from_file(tmp_path / "none.model")
    corrupt = tmp_path / "corrupt.model"
    corrupt.write_bytes(model_path.read_bytes()[:300])
    with pytest.raises(TokenizerError, match=f"^{corrupt}: not a valid sentencepiece model"):
        Tokenizer.from_file(corrupt)
    text = tmp_path / "text.model"
    text.write_text("hello\n")
    with pytest.raises(TokenizerError, match=f"^{text}: not a valid sentencepiece model"):
        Tokenizer.from_file(text)
    empty = tmp_path / "empty.model"
    empty.write_bytes(b"")
    with pytest.raises(TokenizerError, match=f"^{empty}: empty file"):
        Tokenizer.from_file(empty)
    with pytest.raises(TokenizerError, match="is a folder"):
        Tokenizer.from_file(tmp_path)


def test_a_lossy_model_is_detected(tmp_path: Path):
    lossy = train_tokenizer(_training_texts(200_000), tmp_path / "lossy.model", 400,
                            normalization_rule_name="nmt_nfkc", add_dummy_prefix=True,
                            remove_extra_whitespaces=True)
    assert not lossy.is_lossless()
    assert lossy.decode(lossy.encode("a    b")) != "a    b"


def test_incremental_decoder_never_yields_half_a_character():
    from megalodoc.model import load_bundle
    from megalodoc.model.tokenizer import IncrementalDecoder, stream_text

    shipped = load_bundle().require_tokenizer()
    text = "Zhōngwén 中文：读书。Emoji 🙂👍🏽 and a replacement char \ufffd kept. Ünïcödé 日本語\n"
    ids = shipped.encode(text)
    byte_pieces = [i for i in ids if shipped.id_to_piece(i).startswith("<0x")]
    assert len(byte_pieces) >= 8  # the shipped tokenizer spells these characters with byte fallback
    # decoding token by token would show broken characters: that is what the decoder must avoid
    assert any("\ufffd" in shipped.decode([i]) for i in byte_pieces)
    decoder = IncrementalDecoder(shipped)
    pieces = [decoder.push(i) for i in ids]
    pieces.append(decoder.finish())
    assert "".join(pieces) == shipped.decode(ids) == text
    assert "".join(pieces).count("\ufffd") == 1  # only the real one
    assert all("\ufffd" not in p for p in pieces if "kept" not in p and p != "\ufffd")
    assert pieces.count("") >= 4  # held back while a character was incomplete
    assert "".join(stream_text(shipped, ids)) == text


def test_text_with_no_utf8_form_is_refused_by_name(tokenizer: Tokenizer):
    # Python reads a command-line byte that is not UTF-8 as a lone surrogate; sentencepiece failed on it
    # with "Unable to cast Python instance of type <class 'str'>"
    question = b"what is \xff here".decode("utf-8", "surrogateescape")
    with pytest.raises(UnencodableTextError, match=r"not valid Unicode at character 9 \('\\udcff'"):
        tokenizer.encode(question)
    assert tokenizer.decode(tokenizer.encode("what is \u00ff here")) == "what is \u00ff here"
