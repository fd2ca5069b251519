"""The default snapshot spacing, in a module without heavy imports (the CLI's parser reads it)."""

DEFAULT_SNAPSHOT_EVERY = 4
"""Chunks between snapshots by default. Measured with the shipped model (bench/snapshots.py, README "The
store"): a snapshot every chunk stores 917 bytes per token, every 2 chunks 467, against a goal of 300;
every 4 chunks stores 241 and spends 2.5% of ingest writing snapshots, while `state_at` re-reads at most
4 chunks; every 8 or 16 chunks saves less space than that again and re-reads 2 to 4 times more (measured
reading one chunk per model call). Ingest now reads 4 chunks per call (megalodoc.model.boundary.CALL_CHUNKS)
and snapshots only after whole calls, so 4 is also the smallest spacing it writes."""
