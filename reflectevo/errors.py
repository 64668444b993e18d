"""The one family of errors that fail the same way every time: bad configuration, bad data, a missing model or tool.

A `PermanentError` is never retried (tasks.retry_transient) and the CLI reports it as one line with exit code 2.
Everything else raised inside a run (a crash, a full disk, a lost connection) is an incident: the CLI prints its
cause in one line, writes the full traceback to a log file, names that file, and exits 1.

`ConfigError` and `DataError` are also `ValueError`s, so code that already catches `ValueError` for bad input still does.
This module imports nothing of ours, so every layer (problems, configs, tasks, CLI) can use it.
"""

from __future__ import annotations


class PermanentError(Exception):
    """An error that rerunning cannot fix: the message says what to change."""


class ConfigError(PermanentError, ValueError):
    """A bad flag, config file field, task name, engine or model path."""


class DataError(PermanentError, ValueError):
    """A file or record that cannot be read as what it should be; names the file, line and field."""


class RefusedError(PermanentError):
    """The command would replace data it did not create, or another run holds what it needs."""


class SetupError(PermanentError):
    """The machine lacks a tool or package the run needs (e.g. bwrap for the code verifier's sandbox)."""
