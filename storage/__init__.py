"""Persistent store: documents, locations, chunk text, state snapshots, sessions (SQLAlchemy)."""
