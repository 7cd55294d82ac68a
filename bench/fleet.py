"""The simulated devices: several net-snmp `snmpd` processes, each on many loopback endpoints.

Device i is the endpoint 127.77.(i // 250).(i % 250 + 1):PORT, served by snmpd process
i % processes, so any first-n slice of the devices is spread evenly over the processes.
snmpd waits with select(), so one process must stay well under FD_SETSIZE (1024) sockets:
`endpoints_per_process` defaults to 850.

snmpd serves this host's own MIB (system group, IF-MIB for the interfaces of the network
namespace it runs in). Every process is started by PID and stopped by PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SNMPD = "/usr/sbin/snmpd"
COMMUNITY = "public"
V3_USER = ("vigil-bench", "SHA", "bench-auth-pass", "AES", "bench-priv-pass")
"""SNMPv3 user on every endpoint: (name, auth protocol, auth password, priv, priv password)."""
ADDRESS_PREFIX = "127.77"


def endpoint(i: int, port: int) -> tuple[str, int]:
    return f"{ADDRESS_PREFIX}.{i // 250}.{i % 250 + 1}", port


@dataclass
class Fleet:
    work: Path
    devices: int
    port: int
    endpoints_per_process: int = 850
    procs: list[subprocess.Popen] = field(default_factory=list)
    commands: list[tuple[list[str], dict[str, str]]] = field(default_factory=list)

    @property
    def processes(self) -> int:
        return max(1, -(-self.devices // self.endpoints_per_process))

    def endpoints(self) -> list[tuple[str, int]]:
        return [endpoint(i, self.port) for i in range(self.devices)]

    def start(self, log: callable = print) -> None:
        count = self.processes
        served: list[list[str]] = [[] for _ in range(count)]
        for i, (address, port) in enumerate(self.endpoints()):
            served[i % count].append(f"udp:{address}:{port}")
        for k, addresses in enumerate(served):
            home = self.work / f"snmpd-{k}"
            (home / "persist").mkdir(parents=True, exist_ok=True)
            conf = home / "snmpd.conf"
            user, auth, auth_password, priv, priv_password = V3_USER
            conf.write_text(
                "# written by bench/run; the listening addresses are on the command line\n"
                f"rocommunity {COMMUNITY} 127.0.0.0/8\n"
                f"createUser {user} {auth} {auth_password} {priv} {priv_password}\n"
                f"rouser {user} priv\n"
                # snmpbulkget asks for every row of every column in one GETBULK
                "maxGetbulkResponses 2000\n"
                "maxGetbulkRepeats 200\n"
                "master no\n")
            env = {**os.environ, "SNMP_PERSISTENT_DIR": str(home / "persist"),
                   "SNMPCONFPATH": str(home)}
            args = [SNMPD, "-f", "-C", "-c", str(conf), "-M", "/dev/null", "-m", "",
                    "-I", "-smux", "-LF", "0-5", str(home / "snmpd.log"),
                    "-p", str(home / "snmpd.pid"),
                    # on the command line: `agentaddress` in a file is cut at 2,560 characters
                    *addresses]
            self.commands.append((args, env))
            self.procs.append(self._spawn(k))
        pids = ", ".join(str(p.pid) for p in self.procs)
        log(f"  started {count} snmpd process(es) (pids {pids})"
            f" serving {self.devices} endpoints {ADDRESS_PREFIX}.X.Y:{self.port}")
        self.wait_ready()

    def _spawn(self, k: int) -> subprocess.Popen:
        args, env = self.commands[k]
        return subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)

    def restart(self, k: int) -> None:
        """Start process `k` again after it was stopped (a reboot: its sysUpTime and
        interface counters start from zero)."""
        if self.procs[k].poll() is None:
            raise RuntimeError(f"snmpd #{k} is still running")
        self.procs[k] = self._spawn(k)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Every process answers on its first endpoint (snmpget, short timeout)."""
        count = self.processes
        pending = {k: endpoint(k, self.port) for k in range(min(count, self.devices))}
        deadline = time.monotonic() + timeout
        while pending:
            for k, (address, port) in list(pending.items()):
                proc = self.procs[k]
                if proc.poll() is not None:
                    log_file = self.work / f"snmpd-{k}" / "snmpd.log"
                    tail = log_file.read_text()[-800:] if log_file.exists() else ""
                    raise RuntimeError(f"snmpd #{k} exited with {proc.returncode}: {tail}")
                done = subprocess.run(
                    ["snmpget", "-v2c", "-c", COMMUNITY, "-m", "", "-On", "-t", "0.5", "-r", "0",
                     f"{address}:{port}", "1.3.6.1.2.1.1.3.0"],
                    capture_output=True, env={**os.environ, "SNMPCONFPATH": str(self.work)})
                if done.returncode == 0:
                    del pending[k]
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"snmpd processes {sorted(pending)} did not answer in "
                                   f"{timeout:g}s")
            if pending:
                time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """CPU used so far by all responder processes (single-threaded; /proc schedstat)."""
        return sum(proc_cpu_precise(p.pid) for p in self.procs if p.poll() is None)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()


def say(text: str = "") -> None:
    """A line of the benchmark's report, at once (the runs are long)."""
    print(text, flush=True)


def interrupt(signum: int, frame: object) -> None:
    """SIGTERM handler: stop like Ctrl-C, so every process started is stopped by its PID."""
    raise KeyboardInterrupt


def stop_process(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """End a child we started, by its PID: SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads, live and ended), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def proc_cpu_precise(pid: int) -> float:
    """CPU of a process's live threads from schedstat (nanoseconds), summed."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1e9


def proc_status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0
