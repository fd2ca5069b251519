"""Complex exponential moving average (CEMA): float64 loop oracle, blocked twin (CPU path), Triton kernel."""
