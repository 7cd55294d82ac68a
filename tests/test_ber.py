"""Vigil's BER codec (the `builtin` engine) against pysnmp/pyasn1, the reference.

Requests must be byte-identical; responses of every value type must decode to the same
VarBinds; and no input whatever — random bytes, truncated or flipped messages — may raise
anything but the `protocol` SnmpError that makes the poll `up=0, reason=protocol`.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import encoder
from pysnmp.proto import api, rfc1902

from collectors.snmp import ber
from collectors.snmp.ber import BerCodec, decode_oid, encode_oid
from collectors.snmp.engine import SnmpError
from collectors.snmp.pysnmp_engine import PyasnCodec

BER = BerCodec()
PYASN = PyasnCodec()

arcs = st.integers(min_value=0, max_value=2**32 - 1)
oids = st.builds(lambda first, second, rest: ".".join(map(str, [first, second, *rest])),
                 st.integers(0, 2), st.integers(0, 39), st.lists(arcs, min_size=0, max_size=14))
versions = st.sampled_from(["1", "2c"])
kinds = st.sampled_from(["get", "get_next", "get_bulk"])
communities = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=32)

# every SMI value type a response can carry, as (pyasn1 object, expected plain value)
values = st.one_of(
    st.integers(-2**31, 2**31 - 1).map(lambda n: rfc1902.Integer32(n)),
    st.binary(max_size=300).map(lambda b: rfc1902.OctetString(b)),
    oids.map(lambda o: rfc1902.ObjectIdentifier(o)),
    st.binary(min_size=4, max_size=4).map(lambda b: rfc1902.IpAddress(b)),
    st.integers(0, 2**32 - 1).map(lambda n: rfc1902.Counter32(n)),
    st.integers(0, 2**32 - 1).map(lambda n: rfc1902.Gauge32(n)),
    st.integers(0, 2**32 - 1).map(lambda n: rfc1902.TimeTicks(n)),
    st.integers(0, 2**64 - 1).map(lambda n: rfc1902.Counter64(n)),
    st.binary(max_size=40).map(lambda b: rfc1902.Opaque(b)),
    st.just(None),  # NULL
    st.sampled_from(["noSuchObject", "noSuchInstance", "endOfMibView"]),
)


def response(version: str, community: str, request_id: int, status: int, index: int,
             varbinds: list[tuple[str, object]]) -> bytes:
    p = api.PROTOCOL_MODULES[api.SNMP_VERSION_1 if version == "1" else api.SNMP_VERSION_2C]
    pdu = p.GetResponsePDU() if version == "1" else p.ResponsePDU()
    p.apiPDU.set_defaults(pdu)
    p.apiPDU.set_request_id(pdu, request_id)
    p.apiPDU.set_error_status(pdu, status)
    p.apiPDU.set_error_index(pdu, index)
    encoded = []
    for oid, value in varbinds:
        if value is None:
            value = p.null
        elif isinstance(value, str):
            value = getattr(api.v2c, {"noSuchObject": "NoSuchObject",
                                      "noSuchInstance": "NoSuchInstance",
                                      "endOfMibView": "EndOfMibView"}[value])()
        encoded.append((rfc1902.ObjectName(oid), value))
    p.apiPDU.set_varbinds(pdu, encoded)
    message = p.Message()
    p.apiMessage.set_defaults(message)
    p.apiMessage.set_community(message, community)
    p.apiMessage.set_pdu(message, pdu)
    return encoder.encode(message)


@settings(max_examples=1000, deadline=None)
@given(versions, communities, kinds, st.integers(1, 2**31 - 1), st.lists(oids, max_size=40),
       st.integers(1, 200))
def test_requests_are_byte_identical(version, community, kind, request_id, asked, repetitions):
    if version == "1" and kind == "get_bulk":
        return  # v1 has no GetBulk
    assert BER.request(version, community, kind, request_id, asked, repetitions) == \
        PYASN.request(version, community, kind, request_id, asked, repetitions)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(versions, communities, st.integers(0, 2**31 - 1), st.integers(0, 18),
       st.integers(0, 100), st.lists(st.tuples(oids, values), max_size=30))
def test_responses_decode_as_pyasn1_does(version, community, request_id, status, index,
                                         varbinds):
    if version == "1":  # v1 has no Counter64 and no exception values
        varbinds = [(o, v) for o, v in varbinds
                    if not isinstance(v, (str, rfc1902.Counter64))]
    data = response(version, community, request_id, status, index, varbinds)
    assert BER.response(version, data) == PYASN.response(version, data)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(data):
    try:
        BER.response("2c", data)
    except SnmpError as exc:
        assert exc.reason == "protocol"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(oids, values), min_size=1, max_size=10), st.data())
def test_damaged_responses_never_crash(varbinds, data):
    valid = bytearray(response("2c", "public", 7, 0, 0, varbinds))
    cut = data.draw(st.integers(0, len(valid)))
    damaged = bytearray(valid[:cut])
    for _ in range(data.draw(st.integers(0, 4))):
        if damaged:
            position = data.draw(st.integers(0, len(damaged) - 1))
            damaged[position] = data.draw(st.integers(0, 255))
    try:
        BER.response("2c", bytes(damaged))
    except SnmpError as exc:
        assert exc.reason == "protocol" and "malformed response" in exc.detail


@given(oids)
def test_oid_round_trip(oid):
    tlv = encode_oid(oid)
    _tag, start, stop = ber._header(tlv, 0, len(tlv))
    assert decode_oid(tlv[start:stop]) == oid


def test_unsigned_value_without_its_leading_zero_is_read_unsigned():
    # Counter32 4294967295 as a careless agent writes it: ff ff ff ff, no leading 00 octet
    t = ber._tlv
    varbind = t(0x30, encode_oid("1.3.6.1.2.1.2.2.1.10.1") + b"\x41\x04\xff\xff\xff\xff")
    pdu = t(0xA2, ber._int(1) + ber._int(0) + ber._int(0) + t(0x30, varbind))
    message = t(0x30, ber._int(1) + t(0x04, b"public") + pdu)
    assert BER.response("2c", message)[3] == [("1.3.6.1.2.1.2.2.1.10.1", "counter32", 4294967295)]
