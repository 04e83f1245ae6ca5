"""Celery plumbing (workers, watcher): tasks, broker views, transport fix, worker, webhooks."""
