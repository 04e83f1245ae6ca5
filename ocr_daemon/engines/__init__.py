"""Text extraction engines: the interface (`base`), the registry, one adapter per engine."""
