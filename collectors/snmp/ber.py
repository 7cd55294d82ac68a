"""Vigil's own BER codec for SNMP v1/v2c messages (the `builtin` engine).

Why it exists: in a pysnmp poll about 80 % of the CPU goes into pyasn1's generic BER decoder,
and neither pysnmp nor ezsnmp (net-snmp) reaches the poll-cost target (CPU per device poll
within 5x of Prometheus' snmp_exporter; 5,000 devices a minute on under one core): see
docs/snmp-engines.md for the measurements. An SNMP v1/v2c message needs none of pyasn1's
generality — a few fixed SEQUENCEs, INTEGER, OCTET STRING, OBJECT IDENTIFIER, NULL, the
SMI application types and the three v2 exceptions — so this module decodes a response
straight into VarBinds (the same type codes and plain values as the pysnmp engine) and
encodes requests straight from dotted OIDs, at about a tenth of the cost. v3 (USM) stays
with pysnmp, which implements it fully.

Its correctness is tested against pyasn1 (tests/test_ber.py): the same requests byte for
byte, the same values for every value type, and no exception other than a `protocol` error
for any malformed input. Where it is more lenient than pyasn1 it reads more, never less:
unsigned types (Counter32, Gauge32, TimeTicks, Counter64) are read unsigned even when an
agent forgets the leading zero octet, and an unknown value tag becomes an `opaque` value.
"""

from __future__ import annotations

from collectors.snmp import engine as E
from collectors.snmp.community import Kind
from collectors.snmp.engine import SnmpError, VarBind

SEQUENCE, INTEGER_TAG, OCTETS_TAG, NULL_TAG, OID_TAG = 0x30, 0x02, 0x04, 0x05, 0x06
PDU_TAGS: dict[str, int] = {"get": 0xA0, "get_next": 0xA1, "get_bulk": 0xA5}
RESPONSE = 0xA2
_UNSIGNED = {0x41: E.COUNTER32, 0x42: E.GAUGE, 0x43: E.TIMETICKS, 0x46: E.COUNTER64,
             0x47: E.GAUGE}  # 0x47: Unsigned32 as some v1 agents send it
_EXCEPTIONS = {0x80: E.NO_SUCH_OBJECT, 0x81: E.NO_SUCH_INSTANCE, 0x82: E.END_OF_MIB}


class Malformed(ValueError):
    """The bytes are not a well-formed SNMP v1/v2c Response."""


def _header(data: bytes, i: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at i; definite lengths only, as BER
    for SNMP requires."""
    if i + 2 > end:
        raise Malformed("truncated TLV")
    tag = data[i]
    length = data[i + 1]
    i += 2
    if length & 0x80:
        octets = length & 0x7F
        if octets == 0 or octets > 4 or i + octets > end:
            raise Malformed("bad length")
        length = int.from_bytes(data[i:i + octets], "big")
        i += octets
    if i + length > end:
        raise Malformed("truncated value")
    return tag, i, i + length


def _expect(data: bytes, i: int, end: int, tag: int) -> tuple[int, int]:
    got, start, stop = _header(data, i, end)
    if got != tag:
        raise Malformed(f"expected tag 0x{tag:02x}, got 0x{got:02x}")
    return start, stop


def _integer(data: bytes, start: int, stop: int) -> int:
    if start == stop:
        raise Malformed("empty INTEGER")
    return int.from_bytes(data[start:stop], "big", signed=True)


def decode_oid(content: bytes) -> str:
    if not content:
        raise Malformed("empty OID")
    if content[-1] & 0x80:
        raise Malformed("OID ends inside a sub-identifier")
    if content.isascii():  # every sub-identifier below 128: one octet each (the usual case)
        first = content[0]
        head = f"{first // 40}.{first % 40}" if first < 80 else f"2.{first - 80}"
        return head + "".join(f".{b}" for b in content[1:])
    arcs = []
    value = 0
    for octet in content:
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = (first // 40, first % 40) if first < 80 else (2, first - 80)
    return ".".join(map(str, (*head, *arcs[1:])))


def _value(tag: int, content: bytes) -> tuple[str, object]:
    if tag == INTEGER_TAG:
        if not content:
            raise Malformed("empty INTEGER")
        return E.INTEGER, int.from_bytes(content, "big", signed=True)
    if tag == OCTETS_TAG:
        return E.OCTETS, content
    code = _UNSIGNED.get(tag)
    if code is not None:
        if not content:
            raise Malformed("empty number")
        return code, int.from_bytes(content, "big")
    if tag == OID_TAG:
        return E.OID, decode_oid(content)
    if tag == NULL_TAG:
        return E.NULL, None
    code = _EXCEPTIONS.get(tag)
    if code is not None:
        return code, None
    if tag == 0x40 and len(content) == 4:
        return E.IPADDRESS, ".".join(str(b) for b in content)
    return E.OPAQUE, content  # Opaque (0x44) and any tag not known here


def decode_response(data: bytes) -> tuple[int, int, int, list[VarBind]]:
    """(request-id, error-status, error-index, varbinds) of a v1/v2c Response-PDU."""
    end = len(data)
    start, stop = _expect(data, 0, end, SEQUENCE)
    if stop != end:
        raise Malformed(f"{end - stop} trailing bytes")
    _, i = _expect(data, start, stop, INTEGER_TAG)  # version
    _, i = _expect(data, i, stop, OCTETS_TAG)  # community
    tag, pdu, pdu_end = _header(data, i, stop)
    if tag != RESPONSE:
        raise Malformed(f"answer is not a Response-PDU (tag 0x{tag:02x})")
    s, i = _expect(data, pdu, pdu_end, INTEGER_TAG)
    request_id = _integer(data, s, i)
    s, j = _expect(data, i, pdu_end, INTEGER_TAG)
    status = _integer(data, s, j)
    s, k = _expect(data, j, pdu_end, INTEGER_TAG)
    index = _integer(data, s, k)
    s, list_end = _expect(data, k, pdu_end, SEQUENCE)
    varbinds: list[VarBind] = []
    append = varbinds.append
    i = s
    while i < list_end:
        vs, ve = _expect(data, i, list_end, SEQUENCE)
        os_, oe = _expect(data, vs, ve, OID_TAG)
        tag, cs, ce = _header(data, oe, ve)
        if ce != ve:
            raise Malformed("extra data in a varbind")
        code, value = _value(tag, data[cs:ce])
        append((decode_oid(data[os_:oe]), code, value))
        i = ve
    # an error-index past the varbinds (seen on buggy agents) points at the last one
    return request_id, status, min(index, len(varbinds)), varbinds


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _length(len(content)) + content


def _int(n: int) -> bytes:
    return _tlv(INTEGER_TAG, n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))


_OID_CACHE: dict[str, bytes] = {}
_OID_CACHE_SIZE = 50000


def encode_oid(oid: str) -> bytes:
    """The OID's TLV; cached, since a poll asks for the same columns again and again."""
    cached = _OID_CACHE.get(oid)
    if cached is not None:
        return cached
    arcs = [int(x) for x in oid.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40) or min(arcs) < 0:
        raise ValueError(f"not an OID: {oid}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        if arc < 0x80:
            out.append(arc)
            continue
        chunk = []
        while arc:
            chunk.append(arc & 0x7F)
            arc >>= 7
        out.extend(b | 0x80 for b in reversed(chunk[1:]))
        out.append(chunk[0])
    encoded = _tlv(OID_TAG, bytes(out))
    if len(_OID_CACHE) >= _OID_CACHE_SIZE:
        _OID_CACHE.clear()
    _OID_CACHE[oid] = encoded
    return encoded


_NULL = b"\x05\x00"


class BerCodec:
    """The Codec of collectors.snmp.community, on the functions above."""

    def request(self, version: str, community: str, kind: Kind, request_id: int,
                oids: list[str], max_repetitions: int) -> bytes:
        varbinds = b"".join(_tlv(SEQUENCE, encode_oid(o) + _NULL) for o in oids)
        # GetBulk carries non-repeaters (0) and max-repetitions where others carry
        # error-status and error-index (both 0)
        second = max_repetitions if kind == "get_bulk" else 0
        pdu = _tlv(PDU_TAGS[kind],
                   _int(request_id) + _int(0) + _int(second) + _tlv(SEQUENCE, varbinds))
        number = 0 if version == "1" else 1
        return _tlv(SEQUENCE, _int(number) + _tlv(OCTETS_TAG, community.encode()) + pdu)

    def response(self, version: str, data: bytes) -> tuple[int, int, int, list[VarBind]]:
        try:
            return decode_response(data)
        except (Malformed, IndexError, ValueError) as exc:
            raise SnmpError("protocol", f"malformed response ({len(data)} bytes: {exc})") \
                from None
