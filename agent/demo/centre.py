"""`vigil demo --centre`: the demo district as a monitoring centre with three branch agents.

The simulated devices are the same as in the single-agent demo; what differs is who watches
them. The district's sites are split into three branches, each with its own agent (its own
inventory, address, state directory), all sharing one ticket store and posting their faults
to one Alertmanager, and the centre's Prometheus (config/centre/prometheus.yml with its rules)
scrapes the three. This module writes those configurations into the work directory; run.py
starts the processes.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import yaml

from agent.auth import add_user
from agent.centre import Branch as CentreBranch
from agent.centre import prometheus_targets

BRANCHES = 3
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")   # one loopback address per branch agent
DEFAULT_AGENT_PORT = 9830
DEFAULT_TRAP_PORT = 1162
CENTRE_INTERVAL = "15s"    # the demo's polls are every 15 s: so are the centre's scrapes
RELAY_PATH = "/api/v1/alertmanager/webhook"
GRAPHS = [
    ("camera online rate per site (recording rule)", "site:vigil_camera_online:ratio"),
    ("cameras per site", "site:vigil_cameras:count"),
    ("open faults by site and level", "site_level:vigil_faults_active:count"),
    ("open tickets by site and level", "site_level:vigil_tickets_open:sum"),
    ("branch agents scraped", 'up{job="vigil"}'),
]


@dataclass
class BranchPlan:
    """One branch agent: its id, sites, address and files in the work directory."""

    id: str
    sites: list[str]
    host: str
    port: int
    trap_port: int
    dir: Path
    dropped: list[str]          # references to other branches' devices, left out

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    @property
    def config(self) -> Path:
        return self.dir / "agent.yaml"

    @property
    def tokens(self) -> Path:
        return self.dir / "tokens.yaml"


def split_sites(inventory: dict) -> list[list[str]]:
    """The sites in three groups of (nearly) equal size, in the file's order, except that sites
    holding devices other sites depend on (the machine room with the core switch) come first:
    a branch machine room belongs to a branch, with its nearest communities."""
    sites = [s["id"] for s in inventory.get("sites", [])]
    site_of = {d["id"]: d.get("site") for d in inventory.get("devices", [])}
    serving = {site_of.get(peer) for d in inventory.get("devices", [])
               for peer in _references(d).values() if site_of.get(peer) != d.get("site")}
    ordered = [s for s in sites if s in serving] + [s for s in sites if s not in serving]
    size = -(-len(ordered) // BRANCHES)
    return [ordered[i * size:(i + 1) * size] for i in range(BRANCHES)
            if ordered[i * size:(i + 1) * size]]


def _references(device: dict) -> dict[str, str]:
    """The device ids a device's `uplink` / `powered_by` name, by field."""
    out = {}
    for field in ("uplink", "powered_by"):
        value = device.get(field) or {}
        for key in ("switch", "ups"):
            if isinstance(value, dict) and value.get(key):
                out[field] = value[key]
    return out


def write_branches(source_inventory: Path, base_settings: dict, workdir: Path, *,
                   port: int | None, trap_port: int | None, alertmanager_url: str | None,
                   tickets_url: str) -> list[BranchPlan]:
    """Each branch's inventory.yaml and agent.yaml under `<workdir>/branch-N/`."""
    inventory = yaml.safe_load(source_inventory.read_text(encoding="utf-8")) or {}
    groups = split_sites(inventory)
    plans = []
    for number, sites in enumerate(groups, 1):
        plan = BranchPlan(f"branch-{number}", sites, HOSTS[number - 1],
                          port or DEFAULT_AGENT_PORT, trap_port or DEFAULT_TRAP_PORT,
                          workdir / f"branch-{number}", [])
        plan.dir.mkdir(parents=True, exist_ok=True)
        _write_inventory(plan, inventory, source_inventory)
        _write_agent_yaml(plan, base_settings, len(groups), alertmanager_url, tickets_url,
                          inventory)
        plans.append(plan)
    return plans


def _write_inventory(plan: BranchPlan, inventory: dict, source: Path) -> None:
    devices = [dict(d) for d in inventory.get("devices", []) if d.get("site") in plan.sites]
    ids = {d["id"] for d in devices}
    for device in devices:
        for field, peer in _references(device).items():
            if peer not in ids:
                del device[field]
                plan.dropped.append(f"{device['id']}.{field} ({peer})")
    document = {**inventory, "sites": [s for s in inventory.get("sites", [])
                                       if s["id"] in plan.sites], "devices": devices}
    lines = [f"# {plan.id} of the demo district, written by `vigil demo --centre` from {source}",
             f"# (the sites {', '.join(plan.sites)}); rewritten at every start."]
    if plan.dropped:
        lines += ["# Left out: references to devices of other branches, which this agent does "
                  "not know",
                  "# (the inventory check refuses them; the centre sees both sides): "
                  + ", ".join(plan.dropped)]
    text = "\n".join(lines) + "\n" + yaml.safe_dump(document, allow_unicode=True,
                                                     sort_keys=False)
    (plan.dir / "inventory.yaml").write_text(text, encoding="utf-8")


def _write_agent_yaml(plan: BranchPlan, base: dict, branches: int, alertmanager_url: str | None,
                      tickets_url: str, inventory: dict) -> None:
    settings = json.loads(json.dumps(base))   # a deep copy of plain YAML data
    names = {s["id"]: s.get("name", s["id"]) for s in inventory.get("sites", [])}
    settings["agent"] = {"id": plan.id,
                         "name": f"演示分局 {plan.id}（{'、'.join(names[s] for s in plan.sites)}）"}
    settings["listen"] = plan.listen
    settings["inventory"] = [str(plan.dir / "inventory.yaml")]
    settings["state_dir"] = str(plan.dir / "state")
    traps = settings.get("traps") or {}
    if traps.get("enabled"):
        traps["listen"] = f"{plan.host}:{plan.trap_port}"
    # the stream probes of the single demo's agent, shared: the machine decodes no more
    rtsp = settings.setdefault("rtsp", {})
    rtsp["cameras_per_minute"] = max(1, round(rtsp.get("cameras_per_minute", 90) / branches))
    rtsp["max_decodes"] = max(1, rtsp.get("max_decodes", 6) // branches)
    settings.setdefault("alertmanager", {})["urls"] = [alertmanager_url] if alertmanager_url else []
    tickets = settings.setdefault("tickets", {})
    tickets["url"] = tickets_url
    tickets["link_base"] = f"{plan.url}/api/v1"
    header = (f"# {plan.id} of `vigil demo --centre`, from config/demo/agent.yaml; rewritten "
              f"at every start.\n")
    plan.config.write_text(header + yaml.safe_dump(settings, allow_unicode=True,
                                                   sort_keys=False), encoding="utf-8")


def make_tokens(plans: list[BranchPlan], workdir: Path) -> tuple[dict[str, dict[str, str]], Path]:
    """An engineer and a viewer per branch agent (`vigil tokens add`), the clear tokens written
    to `<workdir>/tokens.txt` (mode 600) for the person running the demo."""
    tokens: dict[str, dict[str, str]] = {}
    for plan in plans:
        plan.tokens.unlink(missing_ok=True)
        tokens[plan.id] = {role: add_user(plan.tokens, f"demo-{role}", role)
                           for role in ("engineer", "viewer")}
    path = workdir / "tokens.txt"
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    lines = ["# Web UI and API tokens of the demo's branch agents (new at every start)"]
    lines += [f"{plan.id} {role} {token}  {plan.url}/ui/"
              for plan in plans for role, token in tokens[plan.id].items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tokens, path


def write_prometheus(centre_dir: Path, source_dir: Path, plans: list[BranchPlan],
                     prometheus_port: int, alertmanager_port: int) -> Path:
    """config/centre/prometheus.yml and its rule files in `<workdir>/centre/`, the branches'
    targets from `vigil export prometheus-targets`, addresses and intervals for the demo."""
    shutil.rmtree(centre_dir / "rules", ignore_errors=True)
    shutil.copytree(source_dir / "rules", centre_dir / "rules")
    targets = centre_dir / "targets"
    shutil.rmtree(targets, ignore_errors=True)
    targets.mkdir(parents=True)
    groups = prometheus_targets([CentreBranch.load(p.config) for p in plans])
    (targets / "branches.json").write_text(json.dumps(groups, indent=2) + "\n",
                                           encoding="utf-8")
    config = yaml.safe_load((source_dir / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"].update(scrape_interval=CENTRE_INTERVAL, scrape_timeout="10s",
                            evaluation_interval=CENTRE_INTERVAL)
    for manager in config["alerting"]["alertmanagers"]:
        manager["static_configs"] = [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]
    for job in config["scrape_configs"]:
        if job["job_name"] == "prometheus":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{prometheus_port}"]}]
    path = centre_dir / "prometheus.yml"
    path.write_text(f"# Written by `vigil demo --centre` from {source_dir / 'prometheus.yml'}: "
                    f"intervals {CENTRE_INTERVAL},\n# the demo's ports. Rewritten at every "
                    f"start.\n" + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def write_alertmanager(centre_dir: Path, source_dir: Path, relay: BranchPlan,
                       relay_token: str) -> Path:
    """config/centre/alertmanager.yml with its relay receiver (the WeCom/DingTalk path through
    a Vigil agent) pointed at `relay`, authenticated by an engineer's token in a file."""
    token_file = centre_dir / "vigil-token"
    token_file.unlink(missing_ok=True)
    token_file.touch(mode=0o600)
    token_file.write_text(relay_token + "\n", encoding="utf-8")
    config = yaml.safe_load((source_dir / "alertmanager.yml").read_text(encoding="utf-8"))
    for receiver in config.get("receivers", []):
        for hook in receiver.get("webhook_configs", []):
            parts = urllib.parse.urlsplit(hook["url"])
            if parts.path == RELAY_PATH:
                hook["url"] = urllib.parse.urlunsplit(parts._replace(netloc=relay.listen))
                hook.setdefault("http_config", {})["authorization"] = {
                    "credentials_file": str(token_file)}
    path = centre_dir / "alertmanager.yml"
    path.write_text(f"# Written by `vigil demo --centre` from {source_dir / 'alertmanager.yml'}"
                    f": the relay receiver goes to {relay.id}.\n# Rewritten at every start.\n"
                    + yaml.safe_dump(config, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")
    return path
