"""The shipped rule set: its unit tests pass, every rule is tested, and it exports to
Prometheus alerting rules that promtool accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from agent import yamlfile
from agent.validation import validate
from rules.model import RuleFile
from tests import peers

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "config" / "rules"
VIGIL = [sys.executable, "-m", "agent.cli"]


def shipped_rules() -> dict[str, Path]:
    out = {}
    for path in sorted(RULES.glob("*.yaml")):
        for group in validate(RuleFile, yamlfile.load(path)).groups:
            for rule in group.rules:
                out[rule.name] = path
    return out


def test_every_rule_test_file_passes():
    files = sorted(str(p) for p in (RULES / "tests").glob("*_test.yaml"))
    assert files
    run = subprocess.run([*VIGIL, "test", "rules", *files], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert " 0 failed" in run.stdout


def test_every_shipped_rule_is_tested():
    tested = set()
    for path in (RULES / "tests").glob("*_test.yaml"):
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            tested |= {check["rule"] for check in test["fault_eval"] if check.get("faults")}
    untested = sorted(set(shipped_rules()) - tested)
    assert untested == [], f"shipped rules no test sees firing: {untested}"


def test_a_failing_expectation_fails(tmp_path):
    """`vigil test rules` is not a rubber stamp: a wrong level is reported with the time."""
    (tmp_path / "t.yaml").write_text(
        f"rule_files: [{RULES / 'ups.yaml'}]\ndevices:\n  - {{id: u, kind: ups, site: s}}\n"
        "tests:\n  - name: wrong level\n    interval: 30s\n    input_series:\n"
        "      - {device: u, metric: ups_on_battery, values: '1x10'}\n    fault_eval:\n"
        "      - {at: 2m, rule: UpsOnBattery, faults: [{device: u, level: 4}]}\n")
    run = subprocess.run([*VIGIL, "test", "rules", str(tmp_path / "t.yaml")],
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert "FAILED" in run.stdout and "at 2m: UpsOnBattery: expected device=u" in run.stdout


def test_export_to_prometheus_rules_is_accepted_by_promtool(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_DEMO_COMMUNITY", "x")
    monkeypatch.setenv("VIGIL_DEMO_CAMERA_PASSWORD", "y")
    out = tmp_path / "vigil-rules.yml"
    run = subprocess.run([*VIGIL, "export", "prometheus-rules", "-c",
                          str(ROOT / "config" / "demo" / "agent.yaml"), "-o", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    exported = yaml.safe_load(out.read_text())
    names = {r["alert"] for g in exported["groups"] for r in g["rules"]}
    skipped = {line.split("/")[1].split(":")[0] for line in run.stderr.splitlines()
               if "not translatable" in line}
    assert names | skipped == set(shipped_rules())
    assert len(names) >= len(shipped_rules()) * 2 // 3  # most rules carry over
    check = subprocess.run([peers.program("promtool"), "check", "rules", str(out)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
