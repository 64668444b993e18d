"""A throwaway PostgreSQL server for the production-stack test: initdb in a temp folder, `postgres` on a loopback
port, stopped by PID. Debian's `postgresql` package provides the binaries (scripts/setup.sh installs it).

PostgreSQL refuses to run as root; as root the server runs as the package's `postgres` user, in a folder it owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from prefect_stack import free_port


def pg_bin(name: str) -> str | None:
    """A PostgreSQL program: on PATH, else in Debian's versioned folder (not on PATH by default)."""
    if path := shutil.which(name):
        return path
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return versions[-1] if versions else None


class Postgres:
    """One PostgreSQL server with a `prefect` role (trust auth, loopback only) and a `prefect` database."""

    def __init__(self):
        self.port = free_port()
        self.user = "postgres" if os.getuid() == 0 else None
        # Not under pytest's 0700 temp root: the `postgres` user must be able to reach its data folder.
        self.root = Path(tempfile.mkdtemp(prefix="reflectevo-pg-"))
        self.data, self.log = self.root / "data", self.root / "postgres.log"
        self.url = f"postgresql+asyncpg://prefect@127.0.0.1:{self.port}/prefect"
        self.process: subprocess.Popen | None = None

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([pg_bin(args[0]), *args[1:]], user=self.user, capture_output=True, text=True,
                              check=True, timeout=120)

    def start(self, timeout: float = 60) -> None:
        if self.user:
            shutil.chown(self.root, self.user)
        self.run("initdb", "-D", str(self.data), "-U", "prefect", "--auth=trust", "-E", "UTF8")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [pg_bin("postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port),
                 "-k", str(self.root)], user=self.user, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while subprocess.run([pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                             capture_output=True).returncode != 0:
            assert self.process.poll() is None, f"postgres exited {self.process.returncode}: {self.log.read_text()}"
            assert time.monotonic() < deadline, f"postgres not ready after {timeout} s: {self.log.read_text()}"
            time.sleep(0.3)
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "prefect", "prefect")

    def sql(self, query: str) -> str:
        """One query's result, unaligned and without headers."""
        return self.run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "prefect", "-d", "prefect",
                        "-At", "-c", query).stdout.strip()

    def stop(self) -> None:
        """Fast shutdown (SIGINT) by PID, then the folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
