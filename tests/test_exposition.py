"""The devices' part of /metrics (agent.exporter.StatePage): rendered per device as results
come in, spliced per family at scrape time. What a scrape must show, whatever was cached:
the latest result of every device and nothing of a removed one, one block per family, events
with their counts, a reload's help texts; and a page rendered on another thread while polls
come in always parses."""

from __future__ import annotations

import threading
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from agent.exporter import StatePage, _Families, _header, _Once
from agent.inventory import load_inventory
from agent.state import State
from agent.yamlfile import Document
from collectors.reading import PollResult, Reading, event
from collectors.snmp.profile import load_profiles
from collectors.vocabulary import MetricSpec

CATALOGUE = load_profiles().catalogue


def inventory(devices: list[str]):
    raw = {"sites": [{"id": "dh", "name": "东湖社区"}],
           "devices": [{"id": d, "kind": "ups", "site": "dh", "address": "127.0.0.1",
                        "credentials": "c", "labels": {"room": 'a "quoted"\nname'}}
                       for d in devices]}
    return load_inventory([Document(Path("inventory.yaml"), raw, {})], None, None)


def ups_poll(device: str, charge: float, ts: float = 100.0, up: bool = True) -> PollResult:
    if not up:
        return PollResult(device, ts, 1.5, False, "timeout", "no answer")
    return PollResult(device, ts, 0.2, True, readings=[
        Reading(device, "ups_on_battery", {}, 0.0, ts),
        Reading(device, "ups_battery_charge_ratio", {}, charge, ts),
        Reading(device, "interface_received_bytes_total", {"ifindex": "1", "interface": "eth0"},
                1e6 * charge, ts)])


def families(page: bytes) -> dict[str, dict]:
    """name -> {frozen labels: value}; fails if a family's lines are split (the text format
    allows each family once)."""
    text = page.decode()
    helps = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")]
    assert len(helps) == len(set(helps)), "a family appears twice"
    out: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = {(s.name, frozenset(s.labels.items())): s.value
                            for s in family.samples}
    return out


def value(page: bytes, family: str, **labels: str) -> float | None:
    for (_, found), v in families(page).get(family, {}).items():
        if all(dict(found).get(k) == want for k, want in labels.items()):
            return v
    return None


def make(devices: list[str], observe: bool = True) -> tuple[State, StatePage, list]:
    state = State()
    state.sync(inventory(devices))
    catalogue = [CATALOGUE]
    page = StatePage(state, lambda: catalogue[0])
    if observe:
        state.observers.append(page.observe)
    return state, page, catalogue


def test_each_scrape_shows_the_latest_results_rendered_as_they_came() -> None:
    state, page, _ = make(["ups-1", "ups-2"])
    state.update(ups_poll("ups-1", 0.9))
    state.update(ups_poll("ups-2", 0.5))
    first = page.render()
    assert value(first, "vigil_ups_battery_charge_ratio", device="ups-1") == 0.9
    assert value(first, "vigil_ups_battery_charge_ratio", device="ups-2") == 0.5
    assert value(first, "vigil_interface_received_bytes", device="ups-2", ifindex="1") == 5e5
    assert value(first, "vigil_device_up", device="ups-1", site="dh", kind="ups") == 1
    info = value(first, "vigil_device_inventory_info", device="ups-1", site_name="东湖社区",
                 room='a "quoted"\nname')
    assert info == 1                                  # escaping done by prometheus_client
    assert page.render() == first                     # nothing new: the same page
    state.update(ups_poll("ups-1", 0.42, ts=160.0))
    again = page.render()
    assert value(again, "vigil_ups_battery_charge_ratio", device="ups-1") == 0.42
    assert value(again, "vigil_ups_battery_charge_ratio", device="ups-2") == 0.5
    state.update(ups_poll("ups-2", 0.0, ts=170.0, up=False))
    down = page.render()
    assert value(down, "vigil_device_up", device="ups-2") == 0
    assert value(down, "vigil_device_down_reason", device="ups-2", reason="timeout") == 1
    assert value(down, "vigil_ups_battery_charge_ratio", device="ups-2") is None  # not stale
    assert value(down, "vigil_device_last_success_timestamp_seconds", device="ups-2") == 100


def test_changes_the_observer_did_not_see_are_rendered_by_the_scrape() -> None:
    """Events (traps) and results written without the observer: the scrape notices that the
    device no longer holds what its block was made from."""
    state, page, _ = make(["ups-1"], observe=False)
    state.update(ups_poll("ups-1", 0.9))
    assert value(page.render(), "vigil_ups_battery_charge_ratio", device="ups-1") == 0.9
    state.update(ups_poll("ups-1", 0.3, ts=200.0))
    assert value(page.render(), "vigil_ups_battery_charge_ratio", device="ups-1") == 0.3
    for _ in range(3):
        state.record_event(event("ups-1", "ups_on_battery", "trap", 1.0, 210.0))
    shown = page.render()
    assert value(shown, "vigil_events", device="ups-1", event="ups_on_battery") == 3
    assert value(shown, "vigil_event", device="ups-1", event="ups_on_battery") == 1


def test_a_removed_device_and_a_reload() -> None:
    state, page, catalogue = make(["ups-1", "ups-2"])
    state.update(ups_poll("ups-1", 0.9))
    state.update(ups_poll("ups-2", 0.5))
    page.render()
    state.sync(inventory(["ups-1"]))
    gone = page.render()
    assert value(gone, "vigil_device_up", device="ups-2") is None
    assert value(gone, "vigil_device_inventory_info", device="ups-2") is None
    kept = dict(page._blocks)
    catalogue[0] = dict(CATALOGUE)              # a reload that changed nothing: blocks kept
    assert page.render() == gone and page._blocks == kept
    spec = CATALOGUE["ups_battery_charge_ratio"]
    catalogue[0] = {**CATALOGUE, spec.name: MetricSpec(spec.name, spec.type, "Reloaded help.")}
    reloaded = page.render().decode()
    assert "# HELP vigil_ups_battery_charge_ratio Reloaded help.\n" in reloaded
    assert value(reloaded.encode(), "vigil_ups_battery_charge_ratio", device="ups-1") == 0.9


def test_scrapes_on_a_thread_while_polls_come_in_always_parse() -> None:
    devices = [f"ups-{i}" for i in range(50)]
    state, page, _ = make(devices)
    stop = threading.Event()
    pages: list[bytes] = []

    def scrape() -> None:
        while not stop.is_set():
            pages.append(page.render())

    thread = threading.Thread(target=scrape)
    thread.start()
    try:
        for step in range(40):
            for d in devices:
                state.update(ups_poll(d, step / 40, ts=100.0 + step))
    finally:
        stop.set()
        thread.join(10)
    pages.append(page.render())
    assert len(pages) > 2
    for shown in pages[::max(1, len(pages) // 20)]:
        families(shown)                                   # parses, each family once
    last = pages[-1]
    assert all(value(last, "vigil_ups_battery_charge_ratio", device=d) == 39 / 40
               for d in devices)


# --- the page's lines are the ones prometheus_client writes ----------------------------

label_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


@settings(max_examples=300, deadline=None)
@given(labels=st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True),
                              label_text, max_size=4),
       value=st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                       st.integers(-2**53, 2**53)),
       kind=st.sampled_from(["gauge", "counter", "info"]),
       documentation=label_text)
def test_lines_and_headers_are_generate_latest_s(labels, value, kind, documentation) -> None:
    """StatePage writes sample lines itself (for speed): byte for byte what generate_latest
    writes for the same family, escaping, label order and number format included."""
    name = {"gauge": "vigil_x", "counter": "vigil_x_total", "info": "vigil_x_info"}[kind]
    families = _Families()
    families.add(MetricSpec(name.removeprefix("vigil_"), kind, documentation), labels, value)
    family = Metric(name.removesuffix({"counter": "_total", "info": "_info"}.get(kind, "")),
                    documentation, kind)
    family.add_sample(name, labels, value)
    expected = generate_latest(_Once(iter([family])))
    ours = _header(name, *families.kinds[name]) + "".join(families.lines[name]).encode()
    assert ours == expected
