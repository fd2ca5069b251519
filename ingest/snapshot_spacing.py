"""The default snapshot spacing, in a module without heavy imports (the CLI's parser reads it)."""

DEFAULT_SNAPSHOT_EVERY = 4
"""Chunks between snapshots by default. Measured with the shipped model (bench/snapshots.py, README):
every chunk stores about 900 bytes per token and every 2 chunks about 480, against a goal of 300;
every 4 chunks stores about 240 and spends under 5% of ingest writing snapshots, while state_at
re-reads at most 4 chunks; every 8 or 16 chunks saves little more space and doubles the re-reading."""
