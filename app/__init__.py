"""Command-line interface, Python API and (later) the reader UI."""
