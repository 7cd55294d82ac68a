"""Turning SNMP values into numbers and text, tolerant of what real devices send.

Real walks hold NUL-padded strings, numbers written as strings ('6.400', '30.3 %RH', 'N/A'),
MAC addresses as hex or as plain text, GBK text from Chinese firmware, NULLs where a number
belongs. Each function here returns a value or a short problem text naming what was wrong;
none raises on device data.
"""

from __future__ import annotations

import re
from typing import Any

from collectors.snmp.engine import IPADDRESS, NUMERIC, OCTETS, OID, OPAQUE

_NUMBER = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)")
_NO_READING = {"", "n/a", "na", "-", "--", "null", "none", "unknown"}
_PRINTABLE = re.compile(r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")


def text(code: str, raw: Any, fmt: str = "text") -> str | None:
    """Human text of a value: octets decoded (UTF-8, then GBK), NULs stripped, else hex."""
    if raw is None:
        return None
    if code in (OCTETS, OPAQUE):
        data: bytes = raw
        if fmt == "mac" and len(data) == 6:
            return ":".join(f"{b:02x}" for b in data)
        if fmt == "hex":
            return data.hex(" ")
        stripped = data.rstrip(b"\x00")
        for encoding in ("utf-8", "gbk"):
            try:
                decoded = stripped.decode(encoding)
            except UnicodeDecodeError:
                continue
            if _PRINTABLE.match(decoded):
                return decoded.strip()
        return data.hex(" ")
    if code in NUMERIC or code in (OID, IPADDRESS):
        return str(raw)
    return None


def number(code: str, raw: Any, regex: re.Pattern[str] | None) -> tuple[float | None, str | None]:
    """(value, problem): numbers as they are; strings parsed (via regex if given)."""
    if code in NUMERIC:
        return float(raw), None
    if code in (OCTETS, OPAQUE):
        content = text(code, raw) or ""
        if content.strip().lower() in _NO_READING:
            return None, None  # the device says "no reading": not an error
        if regex is not None:
            match = regex.search(content)
            if not match:
                return None, f"value '{content[:40]}' does not match /{regex.pattern}/"
            content = match.group(1) if match.groups() else match.group(0)
        match = _NUMBER.match(content)
        if not match:
            return None, f"value '{content[:40]}' is not a number"
        return float(match.group(1)), None
    if raw is None:
        return None, None  # NULL: no reading, not an error
    return None, f"a {code} value where a number was expected"
