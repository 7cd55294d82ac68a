"""The `vigil` command: run, check, poll, profiles, docs, demo.

click is used for the command tree, help texts and option parsing; output is plain text
that reads well in a terminal and in a CI log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys
from pathlib import Path

import click

from agent.cli_common import CONFIG_OPTION, _load, _table
from agent.cli_grounding import GROUNDING_COMMANDS
from agent.cli_inspections import INSPECTION_COMMANDS
from agent.cli_reports import REPORT_COMMANDS
from agent.cli_rules import RULE_COMMANDS
from agent.cli_stats import stats
from agent.cli_tickets import TICKET_COMMANDS
from agent.cli_ups import UPS_COMMANDS
from agent.credential_audit import weak_credentials
from agent.plans import rtsp_overload
from agent.yamlfile import ConfigError, ConfigErrors


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vigil")
def main() -> None:
    """Vigil: device-health agent for CCTV / public-security video networks.

    Polls the cameras, NVRs, UPS units, switches and lightning-protection monitors of one
    branch machine room and exports their health to Prometheus.

    \b
    Typical use:
      vigil check -c /etc/vigil/agent.yaml     validate every config file
      vigil poll ups-room-1                    poll one device now, print its readings
      vigil run                                the daemon (systemd runs this)
      vigil demo                               simulated district network on loopback
    """


@main.command()
@CONFIG_OPTION
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="Override agent.yaml's log_level.")
def run(config_path: Path, log_level: str | None) -> None:
    """Run the agent daemon until SIGTERM or Ctrl-C.

    Refuses to start on any configuration error. SIGHUP reloads the configuration: a valid
    one is adopted without losing state, an invalid one is logged and ignored. With systemd
    (Type=notify) it reports readiness and answers the watchdog.
    """
    from agent import yamlfile
    from agent.daemon import serve

    level = log_level
    if level is None:
        try:
            level = (yamlfile.load(config_path).data or {}).get("log_level", "info")
        except ConfigError:
            level = "info"
    _setup_logging(str(level))
    sys.exit(asyncio.run(serve(config_path)))


@main.command()
@CONFIG_OPTION
def check(config_path: Path) -> None:
    """Validate agent.yaml, the inventory, the credentials, every profile and rule file.

    Prints every problem as FILE:LINE KEY: what is wrong, and exits 1 if there is any.
    Run it before reloading the daemon.
    """
    config = _load(config_path)
    inventory = config.inventory
    kinds: dict[str, int] = {}
    for device in inventory.devices.values():
        kinds[device.kind] = kinds.get(device.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    click.echo(f"{config_path}: OK")
    click.echo(f"  {len(inventory.devices)} devices in {len(inventory.sites)} sites ({summary})"
               + (f", {len(inventory.earthing_points)} earthing points"
                  if inventory.earthing_points else ""))
    click.echo(f"  {len(config.credentials)} credentials, {len(config.profiles.profiles)} "
               f"profiles, {len(config.profiles.catalogue)} metrics, SNMP engine "
               f"{config.settings.snmp.engine}")
    for weak in weak_credentials(config_path.parent / config.settings.credentials):
        click.echo(f"  warning: {weak}")  # warned, not refused (agent/credential_audit.py)
    rules = config.rules
    click.echo(f"  {len(rules.rules)} rules in {len(rules.files)} rule files, "
               f"{len(rules.inhibitions)} inhibition rules")
    overload = rtsp_overload(config)
    if overload:
        click.echo(f"  warning: {overload}")


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"


@main.command()
@CONFIG_OPTION
@click.argument("device_id")
@click.option("--collector", "only", type=click.Choice(["snmp", "onvif", "rtsp", "reach"]),
              help="Poll with this collector only (default: every one that watches it).")
@click.option("--profile", help="SNMP: use this profile instead of the inventory's or detection.")
@click.option("--evidence-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write evidence frames of picture faults here.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def poll(config_path: Path, device_id: str, only: str | None, profile: str | None,
         evidence_dir: Path | None, as_json: bool) -> None:
    """Poll DEVICE_ID once now and print its readings as a table.

    Uses the device's inventory entry exactly as the daemon would, with every collector that
    watches it (SNMP, ONVIF, RTSP stream and picture checks, reachability; ONVIF first, so
    the stream URI it gives is probed). Exits 1 if a collector found it down (the reason is
    printed).
    """
    from agent.daemon import Agent
    from agent.evidence import EvidenceStore
    from agent.plans import plans_for
    from collectors.snmp.collector import SnmpCollector

    config = _load(config_path)
    device = config.inventory.devices.get(device_id)
    if device is None:
        known = ", ".join(sorted(config.inventory.devices)[:20])
        raise click.UsageError(f"no device '{device_id}' in the inventory (e.g. {known})")
    if profile is not None and profile not in config.profiles.profiles:
        raise click.UsageError(f"unknown profile '{profile}'")
    agent = Agent(config)
    agent.state.sync(config.inventory)
    order = ["snmp", "onvif", "rtsp", "reach"]
    plans = sorted((p for p in plans_for(config, device, agent.state)
                    if only is None or p.collector == only), key=lambda p: order.index(p.collector))
    if not plans:
        what = f"{only} collector" if only else "collector"
        raise click.UsageError(f"no {what} watches '{device_id}'")
    store = EvidenceStore(evidence_dir, 1000) if evidence_dir else None

    async def run() -> list:
        snmp = SnmpCollector(agent.engine, config.profiles)
        collectors = agent._collectors(config, snmp)
        results = []
        try:
            for plan in plans:
                job = plan.make_job()
                if job is None:
                    continue
                if plan.collector == "snmp" and profile is not None:
                    job = dataclasses.replace(job, profile=profile)
                result = await collectors[plan.collector].poll(job)
                agent.state.update(result)
                results.append((result, store.keep(result) if store else []))
        finally:
            for name, collector in collectors.items():
                if name != "snmp":
                    await collector.close()
            await agent.engine.close()
        return results

    results = asyncio.run(run())
    if as_json:
        click.echo(json.dumps([{
            "device": device_id, "collector": r.collector, "up": r.up, "reason": r.reason,
            "detail": r.detail, "profile": r.profile, "problems": r.problems,
            "evidence": [str(p) for p in kept],
            "readings": [{"metric": x.metric, "labels": x.labels, "value": x.value,
                          "text": x.text} for x in r.readings]} for r, kept in results],
            ensure_ascii=False, indent=2))
        sys.exit(0 if all(r.up for r, _ in results) else 1)
    click.echo(f"{device.id}  {device.kind}  site {device.site}  {device.address}")
    for result, kept in results:
        _print_result(result, kept)
    sys.exit(0 if all(r.up for r, _ in results) else 1)


def _print_result(result, kept: list[Path]) -> None:
    extra = f"  profile {result.profile}" if result.profile else ""
    traffic = f", {result.requests} requests, {result.varbinds} varbinds" \
        if result.collector == "snmp" else ""
    click.echo(f"\n[{result.collector}] up: {'yes' if result.up else 'NO'}  "
               f"{result.duration * 1000:.0f} ms{traffic}{extra}")
    if not result.up:
        click.echo(f"reason: {result.reason}: {result.detail}")
    rows = [("METRIC", "LABELS", "VALUE")]
    for r in result.readings:
        if r.metric == "up":
            continue
        labels = ",".join(f"{k}={v}" for k, v in r.labels.items() if v) or "-"
        value = _number(r.value) + (f" ({r.text})" if r.text else "")
        rows.append((r.metric, labels, value))
    if len(rows) > 1:
        click.echo(_table(rows))
    if result.problems:
        click.echo(f"{len(result.problems)} value(s) could not be read:")
        for problem in result.problems:
            click.echo(f"  - {problem}")
    for path in kept:
        click.echo(f"evidence: {path}")
    if result.evidence and not kept:
        names = ", ".join(e.name for e in result.evidence)
        click.echo(f"evidence frames ({names}) not kept: use --evidence-dir")


@main.command()
@CONFIG_OPTION
@click.argument("name", required=False)
def profiles(config_path: Path, name: str | None) -> None:
    """List the device profiles, or show one profile's metrics and OIDs.

    Profiles are YAML files: the built-in ones plus those in the directories that agent.yaml
    lists under `profiles:`. See docs/profiles.md to write one for a new device model.
    """
    from collectors.snmp.profile import load_profiles

    if config_path.exists():
        profile_set = _load(config_path).profiles
    else:  # no agent.yaml here: the built-in profiles
        try:
            profile_set = load_profiles()
        except ConfigErrors as exc:
            for error in exc.errors:
                click.echo(str(error), err=True)
            sys.exit(1)
    if name is None:
        rows = [("PROFILE", "KINDS", "MATCHES", "DESCRIPTION")]
        for p in sorted(profile_set.profiles.values(), key=lambda p: p.name):
            m = p.model.match
            matches = ",".join(m.sys_object_id[:2] + [f"/{x}/" for x in m.sys_descr[:1]]
                               + [f"has {x}" for x in m.oid_present[:1]]) or "-"
            rows.append((p.name, ",".join(p.model.kinds) or "-", matches, p.model.description))
        click.echo(_table(rows))
        return
    profile = profile_set.profiles.get(name)
    if profile is None:
        raise click.UsageError(f"unknown profile '{name}'")
    plan = profile_set.plan(name)
    click.echo(f"{name}: {profile.model.description}\nfile: {profile.file}")
    rows = [("METRIC", "TYPE", "FROM", "OID")]
    for metric in plan.metrics:
        d = metric.definition
        oids = ",".join(s.oid for s in metric.sources) or ",".join(
            str(getattr(v, "oid", None) and v.oid[0].oid) for v in d.labels.values())
        rows.append((d.name, d.type, metric.profile, oids))
    click.echo(_table(rows))


@main.command()
@click.argument("what", type=click.Choice(["config", "metrics"]))
def docs(what: str) -> None:
    """Print a reference page generated from the code (config keys, or the metric vocabulary).

    docs/configuration.md and docs/metrics.md are these pages; a test keeps them current.
    """
    from agent.reference import config_reference, metrics_reference

    click.echo(config_reference() if what == "config" else metrics_reference(), nl=False)


@main.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              default=Path(".demo"), show_default=True,
              help="Where the generated devices, logs and Prometheus' data go (regenerated "
                   "at each start).")
@click.option("--listen", metavar="HOST:PORT",
              help="The agent's HTTP address. Default: config/demo/agent.yaml's "
                   "(127.0.0.1:9830).")
@click.option("--prometheus-port", type=click.IntRange(1, 65535), default=9090,
              show_default=True, help="Prometheus listens on 127.0.0.1:PORT.")
@click.option("--no-prometheus", is_flag=True, help="Run only the devices and the agent.")
@click.option("--trap-port", type=click.IntRange(1, 65535), metavar="PORT",
              help="UDP port of the agent's trap receiver (on the --listen host). Default: "
                   "config/demo/agent.yaml's (1162).")
@click.option("--timeline-scale", type=click.FloatRange(0.05, 100), default=1.0,
              show_default=True,
              help="Multiply the times of the scripted events: 0.25 plays the 8-minute "
                   "timeline in 2 minutes.")
@click.option("--duration", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Stop by itself after SECONDS (counted from the start).")
@click.option("--config-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The demo configuration (agent.yaml, inventory.yaml, credentials.yaml). "
                   "Default: the repository's config/demo.")
@click.option("--centre", is_flag=True,
              help="A monitoring centre: three branch agents (127.0.0.2-4, the --listen port), "
                   "one PostgreSQL ticket store, the centre's Prometheus and Alertmanager "
                   "(config/centre). See docs/demo.md.")
@click.option("--extra-inventory", "extra_inventory", multiple=True, metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An inventory file of devices that answer elsewhere (not simulated by the "
                   "demo), added to the agent's inventory; repeatable. bench/soak.py adds "
                   "its 5,000 snmpd devices this way.")
@click.option("--alertmanager-port", type=click.IntRange(1, 65535), default=9093,
              show_default=True, help="With --centre: Alertmanager listens on 127.0.0.1:PORT.")
def demo(workdir: Path, listen: str | None, prometheus_port: int, no_prometheus: bool,
         trap_port: int | None, timeline_scale: float, duration: float | None,
         config_dir: Path | None, centre: bool, extra_inventory: tuple[Path, ...],
         alertmanager_port: int) -> None:
    """Run the demo district: ~220 simulated devices, the agent, and Prometheus.

    Generates the district of config/demo (8 community sites and the branch machine room:
    152 PTZ and 20 fixed cameras, NVRs, PoE switches, a core switch, UPS units, SPD and
    environment monitors), serves every device from snmpsim on its own loopback address,
    every camera's ONVIF service from the ONVIF simulator and its stream from a GStreamer
    RTSP server (a few cameras faulty: wrong clock, frozen, black, blurred, covered, PTZ
    error, no picture, wrong stream password, ONVIF hung), runs the agent (`vigil run`)
    polling them and Prometheus (Debian package `prometheus`) scraping the agent, and prints
    the URLs to open. Scripted events make it change: a UPS goes on battery (and traps) and
    back, a camera and a street cabinet drop off the network, lightning trips an SPD, a
    camera is covered. Ctrl-C stops everything and leaves no process behind.
    """
    from agent.demo.run import DEFAULT_CONFIG_DIR, DemoOptions
    from agent.demo.run import run as run_demo

    sys.exit(run_demo(DemoOptions(
        workdir=workdir, config_dir=config_dir or DEFAULT_CONFIG_DIR, listen=listen,
        prometheus=not no_prometheus, prometheus_port=prometheus_port, trap_port=trap_port,
        duration=duration, scale=timeline_scale, centre=centre,
        extra_inventory=[p.resolve() for p in extra_inventory],
        alertmanager_port=alertmanager_port)))


for command in (RULE_COMMANDS + TICKET_COMMANDS + REPORT_COMMANDS + GROUNDING_COMMANDS
                + UPS_COMMANDS + INSPECTION_COMMANDS + [stats]):
    main.add_command(command)


if __name__ == "__main__":
    main()
