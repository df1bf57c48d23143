"""A real PostgreSQL server for the production tests: Debian's ``postgresql`` package, a fresh
cluster in a temporary directory, listening on 127.0.0.1 on a free port, password authentication.

``make test`` installs the package when it is missing (scripts/system-packages.sh); a machine
without it fails these tests with the install line, never skips them. PostgreSQL refuses to run as
root, so when the tests run as root the cluster belongs to the ``postgres`` system user (which the
package creates) and its programs run through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.process_helpers import free_port

USER = "dagster"
PASSWORD = "pg-test-secret-3f9c"  # checked never to reach a log or the warehouse
DATABASE = "dagster"


def bin_dir() -> Path:
    configured = os.environ.get("INCIDENT_METRICS_PG_BIN", "").strip()
    candidates = [configured] if configured else sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                                          key=lambda p: int(p.split("/")[-2]))[::-1]
    on_path = shutil.which("initdb")
    if on_path and not configured:
        candidates.append(str(Path(on_path).parent))
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    pytest.fail("no PostgreSQL server (initdb, pg_ctl): `make test` installs Debian's postgresql package; "
                "elsewhere install it or set INCIDENT_METRICS_PG_BIN to its bin directory")



class PostgresServer:
    """``with PostgresServer() as pg:`` a running server; ``pg.env()`` the DAGSTER_POSTGRES_* settings."""

    def __init__(self):
        # Its own directory under /tmp: pytest's tmp_path is private to root, which the postgres user
        # cannot enter.
        self.directory = Path(tempfile.mkdtemp(prefix="incident-metrics-pg-"))
        self.data = self.directory / "pgdata"
        self.port = free_port()
        self.bin = bin_dir()
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and done.returncode:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done

    def start(self) -> "PostgresServer":
        pwfile = self.directory / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self.as_root:
            shutil.chown(self.directory, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        os.chmod(pwfile, 0o600)
        self._run("initdb", "-D", str(self.data), "-U", USER, "--pwfile", str(pwfile),
                  "--auth=scram-sha-256", "--encoding=UTF8", "--no-instructions")
        pwfile.unlink()
        self._pg_ctl_start()
        self.psql(f"create database {DATABASE}", database="postgres")
        return self

    def _pg_ctl_start(self) -> None:
        # timezone=UTC: Dagster's timestamp columns have no time zone; read them as UTC whatever the machine's
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off -c timezone=UTC"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.directory / "server.log"),
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop (fast: open connections are cut) and start again, on the same port and data."""
        self.stop("fast")
        time.sleep(down_seconds)
        self._pg_ctl_start()

    def psql(self, sql: str, *, database: str = DATABASE) -> str:
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        psql = str(self.bin / "psql") if (self.bin / "psql").exists() else shutil.which("psql") or "psql"
        done = subprocess.run([psql,
                               "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", database,
                               "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                              capture_output=True, text=True, env=env, timeout=60)
        if done.returncode:
            raise RuntimeError(f"psql failed: {done.stderr}")
        return done.stdout

    def env(self) -> dict[str, str]:
        return {"DAGSTER_POSTGRES_HOST": "127.0.0.1", "DAGSTER_POSTGRES_PORT": str(self.port),
                "DAGSTER_POSTGRES_USER": USER, "DAGSTER_POSTGRES_PASSWORD": PASSWORD,
                "DAGSTER_POSTGRES_DB": DATABASE}

    def __enter__(self) -> "PostgresServer":
        try:
            return self.start()
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)
