"""How long an ingest will take and how much disk it will fill, before it starts.

``estimate_ingest(paths, options, ...)`` opens each input the way ingest does (so refusals and caps show
up here too, as ``problem``), measures its text (a text file's size, an HTML file's size times its share
of text, a repository's files, a PDF's page count times the text of a few sampled pages) and turns it into
tokens, seconds and bytes of disk with the model's measured costs (``model_costs``) or the documented
defaults. The command line prints it before a large ingest; the reader app shows it before an upload is
read.
"""

from __future__ import annotations

import codecs
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from megalodoc.ingest.snapshot_spacing import DEFAULT_SNAPSHOT_EVERY
from megalodoc.ingest.sources import PdfSource, RepoSource, Source, SourceError, SourceOptions, TextSource, open_source
from megalodoc.ingest.sources.html_text import HtmlTextExtractor
from megalodoc.ingest.sources.path_checks import open_binary
from megalodoc.ingest.sources.pdf_extract import extract_page, open_pdf
from megalodoc.ingest.sources.repo import HEADER
from megalodoc.model import ModelBundle, state_to_bytes
from megalodoc.model.boundary import CALL_CHUNKS, call_span
from megalodoc.model.tokenizer import Tokenizer
from megalodoc.storage.blob_encoding import DEFAULT_ENCODING, encode_blob

DEFAULT_BYTES_PER_TOKEN = 3.3
"""Bytes of text per token of the shipped tokenizer on held-out text (books 3.19, tech 3.49, code 3.67)."""
DEFAULT_TOKENS_PER_SECOND = 2000.0
"""The shipped model's end-to-end ingest speed on one CPU thread (README)."""
DEFAULT_STATE_BYTES = 115_300
"""Stored bytes of one state snapshot of the shipped model (4 layers, D=256, N=16): 134,152 bytes of
state, kept as entropy-coded byte planes (storage/blob_encoding.py), as measured."""
DEFAULT_CHUNK_SIZE = 128
STORED_BYTES_PER_TOKEN_OVER_TEXT = 8
"""Besides a state per snapshot, each token stores its id and its share of the chunk text and of the
full-text index: about twice the text plus this."""
PDF_SAMPLE_PAGES = 6
SAMPLE_CHARS = 64_000
"""Characters of an input's text tokenized to measure its bytes per token, when a tokenizer is given."""
HTML_FEED_BYTES = 16_384
"""Bytes of an HTML file read and given to the text extractor at a time while its share of text is measured."""


@dataclass(frozen=True)
class InputEstimate:
    """One input: what it is, how much text it holds and what reading it costs. ``problem`` is the
    refusal ingest would give (then the costs are 0)."""

    path: str
    kind: str | None
    units: int
    unit_name: str
    text_bytes: int
    tokens: int
    seconds: float
    disk_bytes: int
    problem: str | None = None

    def line(self) -> str:
        """"book.pdf: pdf, 310 pages, about 180,000 tokens, 2 min, 190.0 MB", or the refusal."""
        if self.problem is not None:
            return f"refused: {self.problem}"
        return (f"{self.path}: {self.kind}, {self.units:,} {self.unit_name}s, about {self.tokens:,} tokens, "
                f"{_duration(self.seconds)}, {_size(self.disk_bytes)}")


@dataclass(frozen=True)
class IngestEstimate:
    """The inputs and their totals; ``tokens_per_second`` is the speed the seconds assume."""

    inputs: tuple[InputEstimate, ...]
    tokens_per_second: float

    @property
    def tokens(self) -> int:
        return sum(item.tokens for item in self.inputs)

    @property
    def seconds(self) -> float:
        return sum(item.seconds for item in self.inputs)

    @property
    def disk_bytes(self) -> int:
        return sum(item.disk_bytes for item in self.inputs)

    @property
    def refused(self) -> tuple[InputEstimate, ...]:
        return tuple(item for item in self.inputs if item.problem is not None)

    def summary(self) -> str:
        """One line, e.g. "estimate: 3 inputs, about 1.2M tokens, 10 min at 2,000 tokens/s, 1.3 GB of disk"."""
        count = len(self.inputs)
        refused = f" ({len(self.refused)} refused)" if self.refused else ""
        return (f"estimate: {count} input{'s' if count != 1 else ''}{refused}, about {_count(self.tokens)} tokens, "
                f"{_duration(self.seconds)} at {self.tokens_per_second:,.0f} tokens/s, "
                f"{_size(self.disk_bytes)} of disk")


def model_costs(bundle: ModelBundle, *, calls: int = 1) -> tuple[float, int, int]:
    """(tokens per second, stored bytes of one state, chunk size) of the bundle's model on this machine: one
    warm-up call, then ``calls`` calls timed, each of one call span (`call_span`), without the LM head, as
    ingest runs it."""
    model, chunk, span = bundle.model, bundle.chunk_size, call_span(bundle.model.config)
    ids = torch.randint(0, model.config.vocab_size, (1, span), generator=torch.Generator().manual_seed(0))
    ids = ids.to(bundle.device)  # (1, span)
    with torch.inference_mode():  # as ingest reads
        _, state = model(ids, None, compute_logits=False)
        start = time.perf_counter()
        for _ in range(calls):
            _, state = model(ids, state, compute_logits=False)
        elapsed = max(time.perf_counter() - start, 1e-9)
    state_bytes = len(encode_blob(state_to_bytes(state, bundle), DEFAULT_ENCODING))  # as the store keeps it
    return calls * span / elapsed, state_bytes, chunk


def estimate_ingest(
    paths: Iterable[str | os.PathLike[str]],
    options: SourceOptions | None = None,
    *,
    tokens_per_second: float = DEFAULT_TOKENS_PER_SECOND,
    state_bytes: int = DEFAULT_STATE_BYTES,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
    bytes_per_token: float = DEFAULT_BYTES_PER_TOKEN,
    tokenizer: Tokenizer | None = None,
) -> IngestEstimate:
    """Estimate reading ``paths`` (see the module doc). Never raises for a bad input: it becomes a
    ``problem``. Pass ``model_costs(model)`` results for this machine's speed and the model's state size.
    With the model's ``tokenizer``, each input's bytes per token are measured on a sample of its own text
    (up to SAMPLE_CHARS characters from its start; a PDF's sampled pages) instead of ``bytes_per_token``:
    code and sparse pages take more tokens per byte than the held-out average."""
    if tokens_per_second <= 0 or state_bytes < 0 or chunk_size < 1 or snapshot_every < 1 or bytes_per_token <= 0:
        raise ValueError("estimate_ingest: speeds, sizes and counts must be positive")
    options = options or SourceOptions()
    results = []
    for path in paths:
        shown = os.fspath(path)
        try:
            with open_source(path, options) as source:
                text_bytes, sample = _text_bytes(source, tokenizer is not None)
                kind, units, unit_name = source.kind, source.unit_count, source.unit_name
        except SourceError as error:
            results.append(InputEstimate(shown, None, 0, "", 0, 0, 0.0, 0, str(error)))
            continue
        per_token = bytes_per_token
        if tokenizer is not None and sample.strip():
            per_token = len(sample.encode("utf-8")) / max(1, len(tokenizer.encode(sample)))
        tokens = math.ceil(text_bytes / per_token)
        spacing = math.ceil(snapshot_every / CALL_CHUNKS) * CALL_CHUNKS  # snapshots fall after whole calls
        snapshots = math.ceil(tokens / (chunk_size * spacing)) if tokens else 0
        disk = snapshots * state_bytes + tokens * (2 * per_token + STORED_BYTES_PER_TOKEN_OVER_TEXT)
        results.append(InputEstimate(shown, kind, units, unit_name, text_bytes, tokens,
                                     tokens / tokens_per_second, int(disk)))
    return IngestEstimate(tuple(results), tokens_per_second)


def _text_bytes(source: Source, want_sample: bool) -> tuple[int, str]:
    """The input's bytes of text and, if asked, a sample of its text as ingest reads it ("" if not)."""
    if isinstance(source, PdfSource):
        return _pdf_text_bytes(source)
    if isinstance(source, TextSource):
        size = source.size
    elif isinstance(source, RepoSource):
        headers = sum(len(HEADER.format(path=source.display_path(file.path))) + 1 for file in source.files)
        size = sum(file.size for file in source.files) + headers
    else:
        raise TypeError(f"no estimate for {type(source).__name__}")  # pragma: no cover
    sample = ""
    if want_sample:
        sample, whole = _leading_text(source)
        if whole:  # the whole stream was read: its own size (an HTML file's text without its markup)
            return len(sample.encode("utf-8")), sample
    if isinstance(source, TextSource) and source.format == "html":  # ingest drops the markup
        size = int(size * _html_text_share(source))
    return size, sample


def _html_text_share(source: TextSource) -> float:
    """UTF-8 bytes of readable text per byte of an HTML file, over its start: the file read HTML_FEED_BYTES
    at a time, decoded as ingest decodes it and given to the extractor, until SAMPLE_CHARS of text came
    out (or the file ended). In bytes on both sides: a page of non-ASCII text, or in UTF-16, has other
    bytes per character in the file than in its text."""
    parser = HtmlTextExtractor()
    decoder = codecs.getincrementaldecoder(source.encoding)()
    fed = produced = chars = 0
    with open_binary(source.path) as handle:
        while raw := handle.read(HTML_FEED_BYTES):
            parser.feed(decoder.decode(raw))
            fed += len(raw)
            text = parser.take()
            produced += len(text.encode("utf-8"))
            chars += len(text)
            if chars >= SAMPLE_CHARS:
                break
    return produced / max(fed, 1)


def _leading_text(source: Source) -> tuple[str, bool]:
    """Up to SAMPLE_CHARS characters of the input's text stream from its start, and whether that is all of it."""
    taken: list[str] = []
    count = 0
    for piece in source.pieces():
        taken.append(piece.text)
        count += len(piece.text)
        if count > SAMPLE_CHARS:
            return "".join(taken)[:SAMPLE_CHARS], False
    return "".join(taken), True


def _pdf_text_bytes(source: PdfSource) -> tuple[int, str]:
    """Pages times the mean text of up to PDF_SAMPLE_PAGES pages spread over the document (the middles of
    equal parts: a title page alone says little), and those pages' text."""
    pages = source.page_count
    if not pages:
        return 0, ""
    sample = sorted({int((i + 0.5) * pages / PDF_SAMPLE_PAGES) for i in range(PDF_SAMPLE_PAGES)})  # all < pages
    reader = open_pdf(source.path, source.content_hash)
    texts = [extract_page(reader, index).text for index in sample]
    mean = sum(len(text.encode("utf-8")) for text in texts) / max(len(texts), 1)
    return int(mean * pages), "\n".join(texts)


def _count(tokens: int) -> str:
    if tokens >= 1_000_000:
        return f"{tokens / 1e6:.1f}M"
    if tokens >= 10_000:
        return f"{tokens / 1e3:.0f}K"
    return f"{tokens:,}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _size(size: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} bytes"
