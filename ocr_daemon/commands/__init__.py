"""One-shot CLI commands a person types: submit, cancel, retry, status (and finding a document)."""
