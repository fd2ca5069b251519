"""The reader service: ask with citations, continue, sessions that resume and branch, surprise.

    from megalodoc.app.reader import ReaderService
    service = ReaderService("library.db")       # = megalodoc.Library
"""

from megalodoc.app.reader.answer import MACHINE_LABEL, Answer, Citation
from megalodoc.app.reader.errors import (
    AmbiguousDocumentError,
    DocumentInUseError,
    DocumentNotFoundError,
    DocumentNotReadyError,
    EmptyQuestionError,
    ForeignModelError,
    PositionError,
    QuestionError,
    ReaderError,
    SessionNotFoundError,
    StoredStateError,
)
from megalodoc.app.reader.positions import resolve_position
from megalodoc.app.reader.prompting import PromptFormat, PromptFormatError, load_prompt_format
from megalodoc.app.reader.service import ASK_SAMPLING, CONTINUE_SAMPLING, ReaderService
from megalodoc.app.reader.sessions import SessionPoint, TurnDetails
from megalodoc.app.reader.surprise import SurprisePoint

__all__ = [
    "ASK_SAMPLING",
    "CONTINUE_SAMPLING",
    "MACHINE_LABEL",
    "AmbiguousDocumentError",
    "Answer",
    "Citation",
    "DocumentInUseError",
    "DocumentNotFoundError",
    "DocumentNotReadyError",
    "EmptyQuestionError",
    "QuestionError",
    "ForeignModelError",
    "StoredStateError",
    "PositionError",
    "PromptFormat",
    "PromptFormatError",
    "ReaderError",
    "ReaderService",
    "SessionNotFoundError",
    "SessionPoint",
    "SurprisePoint",
    "TurnDetails",
    "load_prompt_format",
    "resolve_position",
]
