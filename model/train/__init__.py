"""Training the default model: corpus recipe, tokenizer training, token data, the training loop (single process or DDP)."""
