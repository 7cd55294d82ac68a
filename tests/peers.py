"""Real protocol peers for the tests: snmpsim, net-snmp snmpd, Prometheus, promtool.

Each peer runs as a child process bound to 127.0.0.1 on a free port and is stopped (by its
PID) when the test is done. A missing program skips the test with the reason, except under
CI=true, where a missing peer fails: CI must never pass by skipping.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT.parent / "shared" / "recordings" / "snmp"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    """Skip outside CI, fail under CI=true."""
    if IN_CI:
        pytest.fail(f"CI=true and {what}: the test command must install it", pytrace=False)
    pytest.skip(what)


def program(name: str, *extra_dirs: str) -> str:
    """Absolute path of an external program, or skip/fail naming the Debian package."""
    found = shutil.which(name) or next(
        (str(Path(d) / name) for d in extra_dirs if (Path(d) / name).exists()), None)
    if not found:
        missing(f"'{name}' is not installed (apt-get install {DEBIAN_PACKAGE.get(name, name)})")
    return found  # type: ignore[return-value]


DEBIAN_PACKAGE = {"snmpd": "snmpd", "snmpget": "snmp", "snmpbulkget": "snmp",
                  "prometheus": "prometheus", "promtool": "prometheus",
                  "snmptrap": "snmp", "snmptrapd": "snmptrapd", "pdftotext": "poppler-utils",
                  "pdftoppm": "poppler-utils", "pdffonts": "poppler-utils"}


def recordings() -> Path:
    if not RECORDINGS.is_dir():
        missing(f"device recordings not found at {RECORDINGS}")
    return RECORDINGS


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_udp_snmp(port: int, community: str, timeout: float = 30.0) -> None:
    """Wait until an SNMP agent answers a GET of sysUpTime on 127.0.0.1:port."""
    from collectors.snmp.ber import BerCodec

    payload = BerCodec().request("2c", community, "get", 1, ["1.3.6.1.2.1.1.3.0"], 0)
    deadline = time.time() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        while time.time() < deadline:
            sock.sendto(payload, ("127.0.0.1", port))
            try:
                sock.recvfrom(65535)
                return
            except OSError:
                continue
    raise RuntimeError(f"no SNMP agent answered on 127.0.0.1:{port} within {timeout}s")


def wait_http(url: str, timeout: float = 30.0) -> None:
    import urllib.request

    deadline = time.time() + timeout
    last: Exception | None = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError as exc:  # not up yet
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s: {last}")


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """End a child we started, by its PID: SIGTERM, then SIGKILL after the grace period."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def child(args: list[str], log: Path, env: dict[str, str] | None = None
          ) -> Iterator[subprocess.Popen]:
    """A child process with its output in `log`, stopped by PID when the block ends."""
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            yield proc
        finally:
            stop(proc)


@contextmanager
def snmpsim(data_dir: Path, work: Path, endpoints: list[str] | None = None,
            extra_args: list[str] | None = None) -> Iterator[int]:
    """Run snmpsim serving `data_dir` (community = file stem); yields the first port."""
    port = free_port()
    endpoints = endpoints or [f"127.0.0.1:{port}"]
    responder = Path(sys.executable).parent / "snmpsim-command-responder"
    if not responder.exists():
        missing("snmpsim is not installed in this environment (pip install snmpsim)")
    args = [str(responder), f"--data-dir={data_dir}", f"--cache-dir={work / 'snmpsim-cache'}",
            "--logging-method=null", *(f"--agent-udpv4-endpoint={e}" for e in endpoints),
            *(extra_args or [])]
    env = {**os.environ, "SNMPSIM_ALLOW_ROOT": "true"}
    with child(args, work / "snmpsim.log", env):
        first = next(data_dir.glob("*.snmprec")).stem
        wait_udp_snmp(int(endpoints[0].rsplit(":", 1)[1]), first, timeout=60)
        yield int(endpoints[0].rsplit(":", 1)[1])


@contextmanager
def snmpd(work: Path, v3_users: list[tuple[str, str, str, str, str]],
          community: str = "public", ipv6: bool = False) -> Iterator[int]:
    """net-snmp snmpd on 127.0.0.1 (or [::1]) and a free port; v3_users: (user, auth,
    authpass, priv, privpass). Serves the host's own MIB-II (system, interfaces, ...)."""
    binary = program("snmpd", "/usr/sbin")
    port = free_port()
    conf = work / "snmpd.conf"
    lines = [f"agentAddress udp:127.0.0.1:{port}", f"rocommunity {community} 127.0.0.1"]
    if ipv6:
        lines += [f"agentAddress udp:127.0.0.1:{port},udp6:[::1]:{port}",
                  f"rocommunity6 {community} ::1"]
        lines.pop(0)
    for user, auth, auth_pass, priv, priv_pass in v3_users:
        lines.append(f"createUser {user} {auth} {auth_pass} {priv} {priv_pass}")
        lines.append(f"rouser {user} priv")
    conf.write_text("\n".join(lines) + "\n")
    (work / "snmpd-state").mkdir(exist_ok=True)
    args = [binary, "-f", "-C", "-c", str(conf), "-Lf", str(work / "snmpd.out"),
            "-M", "/dev/null", "-m", ""]
    env = {**os.environ, "SNMP_PERSISTENT_DIR": str(work / "snmpd-state")}
    with child(args, work / "snmpd.log", env):
        wait_udp_snmp(port, community, timeout=20)
        yield port


@contextmanager
def prometheus(work: Path, targets: list[str], interval: str = "1s") -> Iterator[str]:
    """Prometheus scraping `targets` (host:port) every `interval`; yields its base URL."""
    binary = program("prometheus")
    port = free_port(socket.SOCK_STREAM)
    conf = work / "prometheus.yml"
    quoted = ", ".join(f"'{t}'" for t in targets)
    conf.write_text(
        f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
        f"scrape_configs:\n  - job_name: vigil\n    static_configs:\n"
        f"      - targets: [{quoted}]\n")
    args = [binary, f"--config.file={conf}", f"--storage.tsdb.path={work / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    url = f"http://127.0.0.1:{port}"
    with child(args, work / "prometheus.log"):
        wait_http(f"{url}/-/ready", timeout=60)
        yield url


def prometheus_query(url: str, query: str) -> list[dict]:
    """Instant query through Prometheus' HTTP API; returns the result vector."""
    import json
    import urllib.parse
    import urllib.request

    with urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode(
            {"query": query}), timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"]


@contextmanager
def alertmanager(work: Path) -> Iterator[str]:
    """Alertmanager (Debian prometheus-alertmanager) on 127.0.0.1 and a free port, every alert
    routed to a receiver that notifies nobody, clustering off; yields its base URL."""
    binary = program("prometheus-alertmanager")
    port = free_port(socket.SOCK_STREAM)
    conf = work / "alertmanager.yml"
    conf.write_text('route:\n  receiver: "null"\n  group_wait: 100ms\n  group_interval: 1s\n'
                    'receivers:\n  - name: "null"\n')
    # An empty --cluster.listen-address turns off HA gossip (else it binds 0.0.0.0:9094).
    args = [binary, f"--config.file={conf}", f"--storage.path={work / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    url = f"http://127.0.0.1:{port}"
    with child(args, work / "alertmanager.log"):
        wait_http(f"{url}/-/ready", timeout=30)
        yield url


DEBIAN_PACKAGE.update({"amtool": "prometheus-alertmanager", "initdb": "postgresql",
                       "pg_ctl": "postgresql", "runuser": "util-linux"})


class Postgres:
    """A throwaway PostgreSQL (Debian `postgresql`) on 127.0.0.1 and a free port, trust auth;
    `url` is an SQLAlchemy URL (`postgresql+psycopg://postgres@127.0.0.1:PORT/postgres`).
    `stop()` and `start()` again keep the cluster and its port (a database server restarted
    under the agent's feet).

    As root, initdb and pg_ctl run as the `postgres` user (`runuser`), and the cluster lives
    in a fresh directory under the system temp dir owned by that user (pytest's own temp
    dirs are private to root). Stopped with `pg_ctl stop -m fast` (the postmaster of this
    cluster only, by its pid file) and removed; its log is copied to `work/postgres.log`."""

    def __init__(self, work: Path) -> None:
        import tempfile

        pg_bin = "/usr/lib/postgresql/15/bin"
        self.initdb = program("initdb", "/usr/local/bin", pg_bin)
        self.pg_ctl = program("pg_ctl", "/usr/local/bin", pg_bin)
        self.as_postgres: list[str] = []
        self.work = work
        self.base = Path(tempfile.mkdtemp(prefix="vigil-pg-"))
        if os.geteuid() == 0:
            runuser = program("runuser", "/usr/sbin", "/sbin")
            self.as_postgres = [runuser, "-u", "postgres", "--"]
            shutil.chown(self.base, "postgres", "postgres")
        self.data, self.log = self.base / "data", self.base / "server.log"
        self.port = free_port(socket.SOCK_STREAM)
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        subprocess.run([*self.as_postgres, self.initdb, "-D", str(self.data), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8"], check=True, capture_output=True,
                       timeout=120)

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                   f"-c unix_socket_directories={self.base} -c fsync=off")
        subprocess.run([*self.as_postgres, self.pg_ctl, "-D", str(self.data), "-l",
                        str(self.log), "-o", options, "-w", "-t", "60", "start"], check=True,
                       capture_output=True, timeout=90)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run([*self.as_postgres, self.pg_ctl, "-D", str(self.data), "-m", "fast",
                            "-w", "stop"], capture_output=True, timeout=60)

    def remove(self) -> None:
        self.stop()
        if self.log.exists():
            shutil.copy(self.log, self.work / "postgres.log")
        shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def postgres(work: Path) -> Iterator[str]:
    """A started Postgres (see the class); yields its URL, removes it after."""
    server = None
    try:
        server = Postgres(work)
        server.start()
        yield server.url
    finally:
        if server is not None:
            server.remove()


def fast_rules(work: Path, wait: str = "3s") -> str:
    """The shipped rules (config/rules) with every `for:` of seconds or minutes shortened to
    `wait`, for tests about what happens after a fault fires (tickets, the centre), not about
    the rules' timing (test_rules_daemon.py keeps the real ones). Returns the glob to use in
    agent.yaml's `rules.files`."""
    rules = work / "rules"
    rules.mkdir(exist_ok=True)
    for path in (ROOT / "config" / "rules").glob("*.yaml"):
        (rules / path.name).write_text(re.sub(r"\bfor: \d+[sm]\b", f"for: {wait}",
                                              path.read_text(encoding="utf-8")),
                                       encoding="utf-8")
    return str(rules / "*.yaml")


@contextmanager
def demo_site() -> Iterator[None]:
    """The demo district's fixed loopback addresses and ports (agent/demo/site.py) for one
    test at a time across the pytest-xdist workers: an exclusive lock on a file, held until
    the test's demo has stopped."""
    with open(Path("/tmp") / "vigil-tests-demo-site.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
