"""Prefect tasks: thin wrappers that give stage functions retries, cache keys and names."""

from __future__ import annotations

import errno

from reflectevo.errors import PermanentError

# OS errors that a retry a few seconds later meets again: a full disk or quota, a read-only or forbidden path,
# a missing file.
PERMANENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR}
# What transformers / huggingface_hub say about a model that is not there (an OSError without errno, or the
# text of an error relayed from the engine process).
MISSING_MODEL = ("Incorrect path_or_model_id", "is not a local folder and is not a valid model identifier",
                 "Repo id must be", "does not appear to have a file named config.json")


def is_permanent(error: BaseException) -> bool:
    """Whether `error` fails the same way on a retry: bad config or data, a missing model, sandbox tool or file,
    a full disk; rather than a crash, a timeout or a lost connection."""
    if isinstance(error, (PermanentError, ValueError, TypeError, LookupError, ImportError,
                          NotImplementedError)):
        return True
    if isinstance(error, OSError) and error.errno in PERMANENT_ERRNOS:
        return True
    return any(phrase in str(error) for phrase in MISSING_MODEL)


def retry_transient(task, task_run, state) -> bool:
    """Retry crashes and transient I/O errors, never configuration or data errors: those fail the same way again."""
    try:
        state.result()
    except Exception as e:
        return not is_permanent(e)
    return False
