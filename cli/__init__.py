"""The `reflectevo` command: the top layer, the only code that parses flags and prints for a user.

    app.py       `reflectevo` (typer app), `evolve`, and the error handling every command shares (`guarded`)
    resume.py    `reflectevo resume`
    verify.py    `reflectevo verify`
    interop.py   `reflectevo import | export | export-model`
    rounds.py    what the round commands print: per-stage counts and metrics, repaired problem rows

The commands call stages/ and flows/; nothing below imports this package.
"""

from __future__ import annotations

import os

# Before anything imports prefect. A busy machine is normal: Prefect's 20 s for the temporary server to start is
# not enough on a loaded 2-core box. Telemetry fails offline and logs an ERROR on every run. The user's own
# settings win.
PREFECT_DEFAULTS = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
for _key, _value in PREFECT_DEFAULTS.items():
    os.environ.setdefault(_key, _value)
