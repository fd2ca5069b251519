"""The service the page needs, on top of `megalodoc.Library` until the reader service offers it all."""

from __future__ import annotations

from megalodoc.ingest.library import Library


class LibraryService(Library):
    """`Library` plus the document deletion the Library tab needs."""

    def delete_document(self, doc: int) -> None:
        """Delete the document; StorageError's DocumentInUseError says why when sessions use it."""
        self.store.delete_document(int(doc))
