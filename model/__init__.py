"""Megalodon language model: config, layers, typed streaming state, checkpoints, generation."""
