"""File formats (workers and intake): sniff a type from content; PDF and image adapters."""
