"""What a monitoring centre's Prometheus needs to know about the branch agents.

`vigil export prometheus-targets` writes a file_sd target file (Prometheus's file-based service
discovery) from one or more branch configs: one target group per agent, its /metrics address
and the `branch` label. Why file_sd: the centre's Prometheus picks changes up without a restart
or reload, the file can be produced wherever the inventories live (a deploy job, a cron), and
nothing new runs in the centre.

The agents export every device's series themselves (one scrape per branch, not per device),
with `device`, `site` and `kind` on each series; so the target labels must not use those names
(Prometheus would rename the series' own to `exported_site`). `branch` is the agent's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent import yamlfile
from agent.settings import Settings
from agent.validation import validate

TARGET_LABEL = "branch"
WILDCARDS = {"0.0.0.0", "::", ""}


class TargetError(ValueError):
    """A branch whose scrape address cannot be known from its config."""


@dataclass(frozen=True)
class Branch:
    """One agent as the centre sees it: its agent.yaml and, optionally, the address the centre
    reaches it at (behind NAT or a wildcard `listen`, this differs from `listen`). Only the
    settings are read: the job that writes the targets needs no branch secrets."""

    path: Path
    settings: Settings
    address: str | None = None

    @classmethod
    def load(cls, path: Path, address: str | None = None) -> Branch:
        """Raises ConfigError/ConfigErrors naming the file, line and key."""
        return cls(path, validate(Settings, yamlfile.load(path)), address)


def prometheus_targets(branches: list[Branch]) -> list[dict]:
    """The file_sd document: `[{"targets": ["host:port"], "labels": {"branch": id}}, ...]`,
    in the order given. Two branches with the same agent id or address are refused: their
    series would be indistinguishable (or scraped twice)."""
    groups: list[dict] = []
    seen_ids: dict[str, str] = {}
    seen_addresses: dict[str, str] = {}
    for branch in branches:
        agent_id = branch.settings.agent.id
        where = str(branch.path)
        address = branch.address or _scrape_address(branch.settings.listen, where)
        if agent_id in seen_ids:
            raise TargetError(f"{where}: agent.id '{agent_id}' is also the id of "
                              f"{seen_ids[agent_id]}; each branch needs its own")
        if address in seen_addresses:
            raise TargetError(f"{where}: address {address} is also the address of "
                              f"{seen_addresses[address]}")
        seen_ids[agent_id], seen_addresses[address] = where, where
        groups.append({"targets": [address], "labels": {TARGET_LABEL: agent_id}})
    return groups


def _scrape_address(listen: str, where: str) -> str:
    host, _, port = listen.rpartition(":")
    bare = host.strip("[]")
    if bare in WILDCARDS:
        raise TargetError(f"{where}: listen: {listen} listens on every address; give the "
                          f"address the centre reaches this agent at (--address HOST:PORT)")
    return f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"
