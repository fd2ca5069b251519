"""Subcommand modules of the `megalodoc` CLI; each defines `register(subparsers)` and sets `handler`."""
