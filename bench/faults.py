"""bench/run --suite faults: the fault-injection suite, long: `pytest -m faults` run --rounds
times with --crash-rounds SIGKILL rounds per ticket-crash test (CI runs it once with 6 SQLite
and 3 PostgreSQL rounds).

Each round is the whole marked suite on real peers (snmpsim, snmpd, PostgreSQL, Alertmanager,
an SMTP server, webhook receivers, an RTSP server, ONVIF simulators, libfaketime, a tmpfs in
a mount namespace): devices timing out, refusing, answering slowly or with malformed BER,
SOAP and RTSP, rebooting, changing model; the ticket store locked, on a full disk, stopped and
restarted; receivers down; the agent killed at random points; the wall clock stepped. Each
crash test draws a new random seed per round (printed by pytest on failure to replay it:
VIGIL_CRASH_SEED).

Prints per test: runs, passes, mean and worst seconds; the total of scenarios run and
survived, of SIGKILLs survived; the duration of each round against the first (the baseline
measured in the same run: a round getting slower means something accumulates); CPU seconds
of the pytest processes and their peak RSS. Exit status 1 when any run failed.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from bench.fleet import say

REPO = Path(__file__).resolve().parent.parent


def run_round(k: int, args: argparse.Namespace, work: Path) -> tuple[float, list[tuple]]:
    """One `pytest -m faults`; returns its wall seconds and (test, passed, seconds) rows."""
    report = work / f"round-{k}.xml"
    env = {**os.environ, "VIGIL_CRASH_ROUNDS": str(args.crash_rounds),
           "VIGIL_CRASH_PG_ROUNDS": str(max(1, args.crash_rounds // 2))}
    env.pop("VIGIL_CRASH_SEED", None)         # a new seed every round
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-m", "faults", "-q", "-p",
                           "no:cacheprovider", f"--junitxml={report}", "tests",
                           *(["-k", args.select] if args.select else [])],
                          cwd=REPO, env=env, capture_output=True, text=True)
    took = time.monotonic() - started
    (work / f"round-{k}.log").write_text(done.stdout + done.stderr)
    rows = []
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        failed = any(child.tag in ("failure", "error") for child in case)
        skipped = any(child.tag == "skipped" for child in case)
        if not skipped:
            rows.append((name, not failed, float(case.get("time", 0))))
    say(f"  round {k}: {sum(r[1] for r in rows)}/{len(rows)} passed in {took:.0f} s"
        + ("" if done.returncode == 0 else f" (pytest exit {done.returncode}; "
           f"log {work / f'round-{k}.log'})"))
    return took, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run --suite faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="times the whole suite runs")
    parser.add_argument("--crash-rounds", type=int, default=30,
                        help="SIGKILL rounds per SQLite crash test (PostgreSQL: half)")
    parser.add_argument("-k", "--select", metavar="EXPR",
                        help="only the tests pytest -k EXPR selects")
    parser.add_argument("--workdir", type=Path, default=REPO / "build" / "faults")
    args = parser.parse_args(argv)
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    say(f"faults: `pytest -m faults` x{args.rounds}, {args.crash_rounds} SIGKILL rounds per "
        f"SQLite crash test ({max(1, args.crash_rounds // 2)} on PostgreSQL); reports in {work}")
    durations, results = [], defaultdict(list)
    for k in range(1, args.rounds + 1):
        took, rows = run_round(k, args, work)
        durations.append(took)
        for name, passed, seconds in rows:
            results[name].append((passed, seconds))
    say("")
    say("| test | runs | passed | mean s | worst s |")
    say("|---|---|---|---|---|")
    for name, runs in sorted(results.items()):
        say(f"| {name} | {len(runs)} | {sum(p for p, _ in runs)} | "
            f"{sum(s for _, s in runs) / len(runs):.1f} | {max(s for _, s in runs):.1f} |")
    runs = [r for rs in results.values() for r in rs]
    passed = sum(p for p, _ in runs)
    kills = sum(args.crash_rounds if name.endswith("sqlite") else max(1, args.crash_rounds // 2)
                for name, rs in results.items() if "kill_9" in name for p, _ in rs if p)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    say("")
    say(f"scenarios run {len(runs)}, survived (passed) {passed}, failed {len(runs) - passed}; "
        f"{kills} SIGKILLs of an agent amid a fault storm survived (nothing lost or doubled)")
    say("round durations against the first: " + ", ".join(
        f"{d:.0f} s ({d / durations[0]:.2f}x)" for d in durations))
    say(f"CPU of the test processes {usage.ru_utime + usage.ru_stime:.0f} s, peak RSS "
        f"{usage.ru_maxrss / 1024:.0f} MiB")
    return 0 if passed == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
