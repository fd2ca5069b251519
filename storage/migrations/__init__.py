"""Alembic migrations of the megalodoc database (run by `megalodoc db upgrade`)."""
