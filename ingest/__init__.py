"""Readers for PDFs, text and repositories; tokenization; the streaming ingest pipeline."""
