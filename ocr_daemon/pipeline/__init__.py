"""The work on one document, run by workers: start and plan it, extract chunks, finish it."""
