"""The systemd unit: valid, hardened, and running the commands the CLI really has."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests import peers

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "vigil.service"


def _unit_for_this_machine(tmp_path: Path) -> Path:
    """The unit with /opt/vigil/bin/vigil pointing at this checkout's vigil."""
    import shutil
    import sys

    vigil = shutil.which("vigil", path=str(Path(sys.executable).parent))
    assert vigil, "vigil console script not installed in this environment"
    unit = tmp_path / "vigil.service"
    unit.write_text(UNIT.read_text().replace("/opt/vigil/bin/vigil", vigil))
    return unit


def test_unit_verifies(tmp_path):
    analyze = peers.program("systemd-analyze")
    run = subprocess.run([analyze, "verify", str(_unit_for_this_machine(tmp_path))],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_unit_exposure_is_low(tmp_path):
    analyze = peers.program("systemd-analyze")
    run = subprocess.run([analyze, "security", "--offline=true",
                          str(_unit_for_this_machine(tmp_path))], capture_output=True, text=True)
    score = re.search(r"Overall exposure level for vigil.service: ([0-9.]+)", run.stdout)
    assert score, run.stdout + run.stderr
    assert float(score.group(1)) <= 2.0, run.stdout


def test_unit_runs_the_real_commands():
    text = UNIT.read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text
    for option in ("NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=vigil",
                   "User=vigil"):
        assert option in text
    from click.testing import CliRunner

    from agent.cli import main

    for command in re.findall(r"/opt/vigil/bin/vigil (\w+)", text):
        assert CliRunner().invoke(main, [command, "--help"]).exit_code == 0, command
