"""Timestep normalization (causal cumulative group norm): float64 loop oracle, PyTorch twin, Triton kernel."""
