"""Training the default model: corpus recipe, tokenizer training, token data and the training loop
(one process, or data parallel under torchrun)."""
