"""megalodoc: read whole books and code repositories through a Megalodon model, keep the
constant-size recurrent state at every chunk boundary, and resume, ask or continue from any point."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`megalodoc.Library` (the reader service, `megalodoc.app.reader.ReaderService`) is imported on first
    use, so `import megalodoc` stays cheap."""
    if name in ("Library", "ReaderService"):
        from megalodoc.app.reader import ReaderService

        return ReaderService
    raise AttributeError(f"module 'megalodoc' has no attribute {name!r}")
