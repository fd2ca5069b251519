"""Triton kernels for CEMA and timestep normalization, each with a plain-PyTorch twin, and their dispatch."""
