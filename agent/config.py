"""Loading the whole configuration: agent.yaml, then credentials, profiles and inventory.

All files are checked in one pass and every problem is reported together (as `vigil check`
prints them); a Config is only built when there is none. The daemon loads a new Config on
SIGHUP and keeps the old one if this raises.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from agent import tls, yamlfile
from agent.credentials import Login, load_credentials
from agent.escalation import Policy, builtin_policy, load_policy
from agent.inspection_subjects import add_inspection_subjects
from agent.inventory import Device, Inventory, load_inventory
from agent.settings import Settings, SnmpOptions, merge_snmp
from agent.validation import validate
from agent.yamlfile import ConfigError, ConfigErrors
from collectors.snmp.engine import SnmpAuth
from collectors.snmp.profile import ProfileSet, load_profiles
from collectors.traps.mapping import TrapMappings, load_mappings
from rules.load import RuleSet, known_from, load_rules

DEFAULT_CONFIG = Path("/etc/vigil/agent.yaml")


@dataclass
class Config:
    path: Path
    settings: Settings
    inventory: Inventory
    credentials: dict[str, SnmpAuth | Login]
    profiles: ProfileSet
    trap_mappings: TrapMappings
    rules: RuleSet
    escalation: Policy | None = None
    """The escalation policy (None when tickets are disabled)."""

    def interval(self, device: Device) -> float:
        schedule = self.settings.schedule
        return device.interval or schedule.intervals.get(device.kind, schedule.default_interval)

    def snmp_options(self, device: Device) -> SnmpOptions:
        return merge_snmp(self.settings.snmp_options(), device.snmp)


def _resolve(base: Path, pattern: str) -> list[Path]:
    full = pattern if Path(pattern).is_absolute() else str(base / pattern)
    if glob.has_magic(full):
        return [Path(p) for p in sorted(glob.glob(full))]
    return [Path(full)]


def load_config(path: Path) -> Config:
    """Load and cross-check everything; raise ConfigErrors listing every problem found."""
    doc = yamlfile.load(path)
    settings = validate(Settings, doc)
    base = path.parent
    state_dir = str(_resolve(base, settings.state_dir)[0])
    settings = settings.model_copy(update={
        "state_dir": state_dir,
        "tickets": settings.tickets.model_copy(
            update={"url": _sqlite_url(settings.tickets.url, state_dir)}),
        "tls": tls.resolved(settings.tls, base)})
    errors: list[ConfigError] = tls.check(doc, settings.tls)

    credentials: dict[str, SnmpAuth | Login] = {}
    credentials_ok = False
    cred_path = _resolve(base, settings.credentials)[0]
    if not cred_path.exists():
        errors.append(doc.error(("credentials",), f"file {cred_path} does not exist"))
    else:
        try:
            credentials = load_credentials(cred_path)
            credentials_ok = True
        except ConfigError as exc:
            errors.append(exc)
        except ConfigErrors as exc:
            errors.extend(exc.errors)

    profiles: ProfileSet | None = None
    mappings: TrapMappings | None = None
    try:
        profiles = load_profiles([Path(p) for d in settings.profiles for p in _resolve(base, d)])
        mappings = load_mappings(profiles)
    except ConfigErrors as exc:
        errors.extend(exc.errors)

    docs = []
    for pattern in settings.inventory:
        files = _resolve(base, pattern)
        if not files or not all(f.exists() for f in files):
            errors.append(doc.error(("inventory",), f"no inventory file matches '{pattern}'"))
            continue
        for file in files:
            try:
                docs.append(yamlfile.load(file))
            except ConfigError as exc:
                errors.append(exc)
    inventory: Inventory | None = None
    try:
        kinds = {name: "login" if isinstance(c, Login) else "snmp"
                 for name, c in credentials.items()}
        inventory = load_inventory(docs, kinds if credentials_ok else None,
                                   profiles.names() if profiles else None)
    except ConfigErrors as exc:
        errors.extend(exc.errors)
    if errors:
        raise ConfigErrors(errors)
    if settings.tickets.enabled:  # inspections live in the ticket store
        add_inspection_subjects(inventory, settings.inspections)
    unknown = [n for n in settings.traps.credentials if n not in credentials]
    if unknown and credentials_ok:
        errors.append(doc.error(("traps", "credentials"), f"not in the credentials file: "
                                                          f"{', '.join(unknown)}"))
    rules = RuleSet()
    try:
        files = [f for pattern in settings.rules.files for f in _resolve(base, pattern)]
        rules = load_rules(files, known_from(profiles.catalogue, profiles), inventory,
                           settings.rules.vars)
    except ConfigError as exc:
        errors.append(exc)
    except ConfigErrors as exc:
        errors.extend(exc.errors)
    escalation = _escalation(doc, settings, base, errors) if settings.tickets.enabled else None
    if errors:
        raise ConfigErrors(errors)
    assert inventory is not None and profiles is not None and mappings is not None
    return Config(path, settings, inventory, credentials, profiles, mappings, rules, escalation)


def _sqlite_url(url: str, state_dir: str) -> str:
    """A SQLite URL with a relative database path made relative to `state_dir`."""
    prefix, sep, database = url.partition(":///")
    if sep and prefix.startswith("sqlite") and database and not database.startswith("/") \
            and database != ":memory:":
        return f"{prefix}:///{Path(state_dir) / database}"
    return url


def _escalation(doc: yamlfile.Document, settings: Settings, base: Path,
                errors: list[ConfigError]) -> Policy | None:
    """The escalation policy, its tiers' channels checked against `notifications`."""
    tickets = settings.tickets
    path = _resolve(base, tickets.escalation)[0]
    if path.exists():
        try:
            policy = load_policy(path)
        except ConfigError as exc:
            errors.append(exc)
            return None
        except ConfigErrors as exc:
            errors.extend(exc.errors)
            return None
    elif "escalation" in tickets.model_fields_set:
        errors.append(doc.error(("tickets", "escalation"), f"file {path} does not exist"))
        return None
    else:
        return builtin_policy()
    channels = {c.name for c in settings.notifications.channels}
    policy_doc = yamlfile.load(path)
    for i, tier in enumerate(policy.tiers):
        for j, name in enumerate(tier.channels):
            if name not in channels:
                known = ", ".join(sorted(channels)) or "none defined"
                errors.append(policy_doc.error(
                    ("tiers", i, "channels", j),
                    f"unknown channel '{name}': define it under `notifications.channels` in "
                    f"{doc.file} (defined: {known})"))
    return policy
