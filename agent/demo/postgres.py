"""The demo centre's shared ticket store: a throwaway PostgreSQL cluster (Debian `postgresql`).

`vigil demo --centre` runs three branch agents on one store, as a monitoring centre does. The
cluster is made with initdb, trust authentication, listening on 127.0.0.1 and a free port
only, started with `pg_ctl start -w` and stopped with `pg_ctl stop -m fast`: the postmaster
of this cluster only, found by its own pid file, never by name.

PostgreSQL refuses to run as root: as root, initdb and pg_ctl run as the `postgres` user
(runuser) and the cluster directory is owned by it. That user must be able to reach the
directory; when the work directory is private to root (a pytest temp dir, a home directory
with mode 700), the cluster goes into a fresh directory under the system temp dir instead,
removed at stop, and the demo says so.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PG_USER = "postgres"
RUNUSER = ("/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser")


class PostgresError(RuntimeError):
    """The cluster could not be made or started; the message ends with its log's tail."""


def find_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory holding initdb and pg_ctl, or None."""
    found = [Path(p) for p in glob.glob(PG_BIN_GLOB)
             if os.access(Path(p) / "initdb", os.X_OK) and os.access(Path(p) / "pg_ctl", os.X_OK)]
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
               default=None)


def url(port: int) -> str:
    """SQLAlchemy URL of the agents' ticket store in the cluster on `port`."""
    return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}/postgres"


@dataclass
class Cluster:
    """One running cluster: where it lives and how to reach it."""

    bin_dir: Path
    base: Path               # holds data/, server.log and the Unix socket
    port: int
    as_user: list[str]       # the runuser prefix as root, else empty
    temporary: bool          # base is outside the work directory: removed at stop

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    @property
    def url(self) -> str:
        return url(self.port)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        """Whether the postmaster of this cluster still runs (as the demo watches it)."""
        pid = self.postmaster_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:     # the postgres user's process, seen by another user
            pass
        return True

    def stop(self) -> None:
        """`pg_ctl stop -m fast`: open sessions are ended, the cluster shuts down cleanly."""
        if (self.data / "postmaster.pid").exists():
            subprocess.run([*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.data),
                            "-m", "fast", "-w", "-t", "60", "stop"], capture_output=True,
                           timeout=90)
        if self.temporary:
            shutil.rmtree(self.base, ignore_errors=True)


def start(workdir: Path, bin_dir: Path, port: int) -> Cluster:
    """A fresh cluster (an earlier demo's is removed first) on 127.0.0.1:`port`, started;
    raises PostgresError."""
    as_user: list[str] = []
    if os.geteuid() == 0:
        runuser = next((r for r in RUNUSER if os.access(r, os.X_OK)), None)
        if runuser is None:
            raise PostgresError("running as root and runuser is missing: cannot start "
                                "PostgreSQL as the postgres user")
        as_user = [runuser, "-u", PG_USER, "--"]
    base, temporary = workdir / "postgres", False
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    if as_user:
        shutil.chown(base, PG_USER, PG_USER)
        if not _reachable(as_user, base):
            base.rmdir()
            base, temporary = Path(tempfile.mkdtemp(prefix="vigil-demo-pg-")), True
            shutil.chown(base, PG_USER, PG_USER)
    cluster = Cluster(bin_dir, base, port, as_user, temporary)
    _run(cluster, [str(bin_dir / "initdb"), "-D", str(cluster.data), "-U", PG_USER,
                   "--auth=trust", "-E", "UTF8", "--no-instructions"], 120)
    # a Unix socket path may hold 107 bytes: a deep work directory gets none (TCP only)
    sockets = str(base) if len(str(base)) < 80 else "''"
    options = (f"-c listen_addresses=127.0.0.1 -c port={cluster.port} "
               f"-c unix_socket_directories={sockets} -c fsync=off")
    try:
        _run(cluster, [str(bin_dir / "pg_ctl"), "-D", str(cluster.data), "-l", str(cluster.log),
                       "-o", options, "-w", "-t", "60", "start"], 90)
    except PostgresError:
        cluster.stop()
        raise
    return cluster


def _run(cluster: Cluster, args: list[str], timeout: float) -> None:
    try:
        done = subprocess.run([*cluster.as_user, *args], capture_output=True, text=True,
                              timeout=timeout, cwd=cluster.base)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostgresError(f"{Path(args[0]).name}: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        if cluster.log.exists():
            tail += cluster.log.read_text(errors="replace").strip().splitlines()[-5:]
        raise PostgresError(f"{Path(args[0]).name} failed (exit status {done.returncode}): "
                            + " | ".join(tail))


def _reachable(as_user: list[str], path: Path) -> bool:
    """Whether the postgres user can enter and write `path` (every parent searchable)."""
    done = subprocess.run([*as_user, "test", "-w", str(path), "-a", "-x", str(path)],
                          capture_output=True, timeout=30)
    return done.returncode == 0
