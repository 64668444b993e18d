"""Prefect tasks: thin wrappers that give stage functions retries, cache keys and names."""

from __future__ import annotations


def retry_transient(task, task_run, state) -> bool:
    """Retry crashes and I/O errors, never configuration or data errors: those fail the same way again."""
    try:
        state.result()
    except (ValueError, TypeError, KeyError, LookupError):
        return False
    except Exception:
        return True
    return False
