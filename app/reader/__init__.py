"""The reader service: evidence, answers with citations, continuation and sessions over a stored document."""
