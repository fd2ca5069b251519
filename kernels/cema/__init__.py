"""Complex exponential moving average (CEMA): float64 loop oracle, FFT twin (CPU path), Triton kernel."""
