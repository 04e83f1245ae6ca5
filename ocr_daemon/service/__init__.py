"""Long-running processes (`run`, `watch`, systemd): supervisor, embedded Redis, notify, metrics."""
