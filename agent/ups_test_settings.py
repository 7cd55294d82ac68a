"""agent.yaml `ups_tests`: how UPS battery tests are followed (docs/ups-test.md)."""

from __future__ import annotations

from pydantic import Field

from agent.configbase import Duration, Strict


class UpsTestSettings(Strict):
    """UPS battery tests started over SNMP (docs/ups-test.md). They live in the ticket store's
    database and need `tickets.enabled`."""

    follow_interval: Duration = Field(
        5.0, gt=0, description="How often a running test is read (result, battery charge, "
                               "voltage, runtime, output source): the curve's resolution.")
    start_grace: Duration = Field(
        60.0, gt=0, description="A UPS that never reports 'in progress' is taken at its "
                                "reported result after this long.")
    max_duration: Duration = Field(
        4 * 3600.0, gt=0, description="A test with no result after this long ends as "
                                      "`timeout` (a deep calibration may take hours).")
