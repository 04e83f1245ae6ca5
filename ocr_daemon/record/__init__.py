"""A document's record (every process): folder layout, record on disk, Redis state, progress."""
