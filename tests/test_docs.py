"""Generated reference pages stay in step with the code that defines them."""

from __future__ import annotations

from pathlib import Path

from agent.reference import config_reference, metrics_reference

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_configuration_reference_is_current():
    assert (DOCS / "configuration.md").read_text() == config_reference(), \
        "run: vigil docs config > docs/configuration.md"


def test_metrics_reference_is_current():
    assert (DOCS / "metrics.md").read_text() == metrics_reference(), \
        "run: vigil docs metrics > docs/metrics.md"


def test_every_config_key_is_documented():
    undocumented = [line.split("|")[1].strip() for line in config_reference().splitlines()
                    if line.startswith("| `") and line.rstrip().endswith("|  |")]
    assert undocumented == []
