"""megalodoc: read whole books and code repositories through a Megalodon model, keep the
constant-size recurrent state at every chunk boundary, and resume, ask or continue from any point."""

__version__ = "0.1.0"
