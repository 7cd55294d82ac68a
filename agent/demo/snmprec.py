"""Writing snmpsim `.snmprec` data: typed records, and snmpsim's variation modules.

A line is `OID|TAG|VALUE`. Tags: 2 INTEGER, 4 OCTET STRING (4x: hex), 5 NULL, 6 OBJECT
IDENTIFIER, 64 IpAddress, 65 Counter32, 66 Gauge32, 67 TimeTicks, 70 Counter64. A tag
`T:module` hands the value to a snmpsim variation module. What each module does was read in
snmpsim 1.2.2's source and checked against it (tests/test_demo.py):

- numeric (`T:numeric|k=v,...`): v = f(t x rate) x scale + offset + initial, clamped to
  [min, max] (wrapped with `wrap`); f defaults to identity, `function=fmod%<time>%P` calls
  math.fmod(t x rate, P); t is seconds since snmpsim started, or the unix time with `atime`.
  The float is truncated to an integer of type T. Used here for growing counters, uptimes,
  readings that wobble (sin), steps at a given unix time, and pulses (see `pulse`).
- delay (`T:delay|value=...,wait=W,tlist=lt:T1:D1:gt:T2:D2`): answers after D1 ms before
  unix time T1, D2 ms after T2, W ms in between; a delay over 99999 ms drops the whole
  response. So `wait=100000` with D1 = D2 = 0 makes the device silent in [T1, T2] (the
  manager sees a timeout). `tlist=eq:...` never matches in 1.2.2 (it compares with a dict);
  without `tlist` the default wait is 500 ms, not 0.
- multiplex (`OID|:multiplex|dir=D,period=P`): serves the subtree under OID from snapshot
  files `D/<n>.snmprec`, file n during [n x P, (n+1) x P) seconds after snmpsim started, the
  last one from then on (no `wrap`). See `write_snapshots` for its file-order bug.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

INTEGER, OCTETS, NULL, OID, IPADDRESS = "2", "4", "5", "6", "64"
COUNTER32, GAUGE32, TIMETICKS, COUNTER64 = "65", "66", "67", "70"
NUMERIC_TAGS = {INTEGER, COUNTER32, GAUGE32, TIMETICKS, COUNTER64}

DROP_WAIT_MS = 100000
"""A delay above 99999 ms makes snmpsim's delay module drop the response."""


def oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(x) for x in oid.strip(".").split("."))


def _plain(text: str) -> bool:
    """Can this string be written as is? snmpsim strips the line and reads it as latin-1."""
    return text == text.strip() and all(" " <= ch <= "~" for ch in text)


class Records:
    """The records of one device (or one snapshot), kept by OID and written sorted."""

    def __init__(self) -> None:
        self.lines: dict[tuple[int, ...], tuple[str, str, str]] = {}

    def __len__(self) -> int:
        return len(self.lines)

    def add(self, oid: str, tag: str, value: str) -> None:
        oid = oid.strip(".")
        self.lines[oid_key(oid)] = (oid, tag, value)

    # -- typed values -------------------------------------------------------------------------
    def string(self, oid: str, text: str) -> None:
        if _plain(text):
            self.add(oid, OCTETS, text)
        else:
            self.add(oid, OCTETS + "x", text.encode("utf-8").hex())

    def octets(self, oid: str, raw: bytes) -> None:
        self.add(oid, OCTETS + "x", raw.hex())

    def integer(self, oid: str, value: int) -> None:
        self.add(oid, INTEGER, str(int(value)))

    def gauge(self, oid: str, value: int) -> None:
        self.add(oid, GAUGE32, str(int(value)))

    def counter32(self, oid: str, value: int) -> None:
        self.add(oid, COUNTER32, str(int(value) % 2**32))

    def counter64(self, oid: str, value: int) -> None:
        self.add(oid, COUNTER64, str(int(value)))

    def ticks(self, oid: str, value: int) -> None:
        self.add(oid, TIMETICKS, str(int(value)))

    def object_id(self, oid: str, value: str) -> None:
        self.add(oid, OID, value)

    def ip(self, oid: str, address: str) -> None:
        self.add(oid, IPADDRESS, address)

    def null(self, oid: str) -> None:
        self.add(oid, NULL, "")

    # -- variation ------------------------------------------------------------------------------
    def numeric(self, oid: str, tag: str, **settings: float | str) -> None:
        """A value computed by snmpsim's numeric module at each request (see module doc)."""
        assert tag in NUMERIC_TAGS, tag
        body = ",".join(f"{k}={_number(v)}" for k, v in settings.items())
        self.add(oid, f"{tag}:numeric", body)

    def growing(self, oid: str, tag: str, initial: int, rate: float) -> None:
        """A counter (or uptime) growing by `rate` per second since snmpsim started."""
        limit = 2**64 - 1 if tag == COUNTER64 else 2**32 - 1
        self.numeric(oid, tag, initial=int(initial) % limit, rate=rate, max=limit, wrap=1)

    def wobble(self, oid: str, tag: str, centre: float, amplitude: float, period: float,
               floor: float = 0) -> None:
        """centre + amplitude x sin(2 pi t / period), t the unix time: a reading that drifts
        (devices differ by their period; the function takes no phase)."""
        self.numeric(oid, tag, function="sin%<time>", atime=1, rate=2 * math.pi / period,
                     scale=amplitude, initial=centre, min=floor)

    def step(self, oid: str, tag: str, before: int, after: int, at: float) -> None:
        """`before` until unix time `at`, then `after` (within a second), for good."""
        low, high = min(before, after), max(before, after)
        # v = rate x t + offset, clamped: a ramp so steep (1 ms) that it is a step at `at`
        rate = 1000.0 * (high - low) * (1.0 if after > before else -1.0)
        self.numeric(oid, tag, atime=1, rate=rate, offset=after - rate * at, initial=0,
                     min=low, max=high)

    def pulse(self, oid: str, tag: str, normal: int, during: int, start: float, end: float
              ) -> None:
        """`normal`, except `during` in the unix-time window [start, end).

        One line, no state: s = fmod(t, P) with P chosen so that `end` is a multiple of P
        (P about a day); the window is where s >= P - (end - start). A steep ramp from there,
        clamped between the two values, gives the step up and, when s wraps to 0 at `end`,
        the step back. The next window would come a day later."""
        day = 86400.0
        period = end / max(1, round(end / day))
        threshold = period - (end - start)
        low, high = min(normal, during), max(normal, during)
        steep = 1000.0 * max(1, high - low)
        scale = steep if during > normal else -steep
        self.numeric(oid, tag, function=f"fmod%<time>%{period!r}", atime=1, rate=1,
                     scale=scale, offset=during - scale * threshold, initial=0,
                     min=low, max=high)

    def multiplex(self, oid: str, directory: Path, period: float) -> None:
        """Serve the subtree under `oid` from snapshot files (see `write_snapshots`)."""
        text = str(directory.resolve())
        if any(ch in text for ch in ",=|\n"):
            raise ValueError(f"snmpsim cannot take the path {text!r} in a multiplex record "
                             f"(it splits on ',' and '='): use a work directory without them")
        self.add(oid, ":multiplex", f"dir={text},period={period!r}")

    # -- output ---------------------------------------------------------------------------------
    def without(self, prefixes: list[str]) -> Records:
        keys = [oid_key(p) for p in prefixes]
        out = Records()
        out.lines = {k: v for k, v in self.lines.items()
                     if not any(k[:len(p)] == p for p in keys)}
        return out

    def only(self, prefixes: list[str]) -> Records:
        keys = [oid_key(p) for p in prefixes]
        out = Records()
        out.lines = {k: v for k, v in self.lines.items()
                     if any(k[:len(p)] == p for p in keys)}
        return out

    def render(self, silent: tuple[int, int] | None = None) -> str:
        """The file text; with `silent` = (t1, t2), every plain record answers through the
        delay module, which drops the response in [t1, t2] (unix seconds)."""
        out = []
        for key in sorted(self.lines):
            oid, tag, value = self.lines[key]
            if silent is not None and ":" not in tag:
                tag, value = _silenced(tag, value, *silent)
            out.append(f"{oid}|{tag}|{value}\n")
        return "".join(out)


def _number(value: float | str) -> str:
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else str(int(value))
    return str(value)


def _silenced(tag: str, value: str, start: int, end: int) -> tuple[str, str]:
    base = tag[:-1] if tag.endswith("x") else tag
    if base == OCTETS:
        payload = "hexvalue=" + (value if tag.endswith("x") else value.encode("latin-1").hex())
    else:
        payload = "value=" + value
    return (f"{base}:delay",
            f"{payload},wait={DROP_WAIT_MS},tlist=lt:{int(start)}:0:gt:{int(end)}:0")


def write_snapshots(directory: Path, snapshots: list[str], variants: int = 64) -> None:
    """Write multiplex snapshot files 0..n-1 so that snmpsim 1.2.2 serves them in order.

    snmpsim's multiplex module keeps the snapshot numbers in os.listdir() order and bisects
    that list as if it were sorted; on ext4 (hash-ordered directories) the files come back in
    a scrambled order and the wrong snapshot is served. The number is read with int(), so
    '7', '07' and '007' all mean 7: of several spellings per number, one is kept whose place
    in the listing follows the previous number's. The listing is checked before returning."""
    directory.mkdir(parents=True, exist_ok=True)
    n = len(snapshots)
    spellings = {k: ["0" * pad + str(k) for pad in range(variants)] for k in range(n)}
    for creation in (range(n), range(n - 1, -1, -1)):
        for k in creation:
            for name in spellings[k]:
                (directory / f"{name}.snmprec").touch()
        listing = [f[: -len(".snmprec")] for f in os.listdir(directory)]
        place = {name: i for i, name in enumerate(listing)}
        chosen: list[str] = []
        last = -1
        for k in range(n):
            after = [place[name] for name in spellings[k] if place[name] > last]
            if not after:
                break
            last = min(after)
            chosen.append(listing[last])
        keep = set(chosen) if len(chosen) == n else set()
        for name in listing:
            if name not in keep:
                (directory / f"{name}.snmprec").unlink()
        if keep:
            numbers = [int(f[: -len(".snmprec")]) for f in os.listdir(directory)]
            if numbers == list(range(n)):
                for k, name in enumerate(chosen):
                    (directory / f"{name}.snmprec").write_text(snapshots[k], encoding="latin-1")
                return
            for f in os.listdir(directory):
                (directory / f).unlink()
    raise RuntimeError(f"cannot lay out snmpsim multiplex snapshots in {directory} so that "
                       f"the directory lists them in order")
