"""The suite's own guard rails: CI cannot pass by skipping or by running nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_pytest(tmp_path: Path, body: str, ci: bool) -> subprocess.CompletedProcess:
    test = tmp_path / "test_sample.py"
    test.write_text(body)
    env = {**os.environ, "CI": "true" if ci else ""}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(ROOT), "--confcutdir", str(ROOT / "tests"),
                           str(test)],
                          cwd=ROOT, env=env, capture_output=True, text=True)


def test_skip_fails_under_ci(tmp_path):
    body = ("from tests import peers\n\ndef test_needs_peer():\n"
            "    peers.missing('a peer that is not installed')\n")
    assert run_pytest(tmp_path, body, ci=False).returncode == 0
    assert run_pytest(tmp_path, body, ci=True).returncode != 0


def test_no_tests_is_a_failure(tmp_path):
    assert run_pytest(tmp_path, "x = 1\n", ci=True).returncode != 0


def test_ci_entry_point_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "exec scripts/test" in ci
    assert "scripts/test" in readme.split("\n## ", 1)[0]  # in the README's opening commands
