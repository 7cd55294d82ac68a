"""snmpsim's command responder, with one data file per listening address.

`vigil demo` serves every simulated device from one snmpsim process, each on its own
loopback address. snmpsim picks a data file per endpoint from the request's transport domain
(`<community>/<transport-domain-oid>.snmprec`, the domain of endpoint i being
1.3.6.1.6.1.1.<offset + i>), but in snmpsim 1.2.2 that selection is dead code with pysnmp 7:
its responder classes override `handleMgmtOperation`, which pysnmp 7 renamed to
`handle_management_operation` and never calls. Every request then falls back to
`<community>.snmprec`, and a response that a variation module drops (the `delay` module's
NoDataNotification) escapes into the event loop as an unhandled exception.

This module puts back, for pysnmp 7, what those overrides meant to do, then runs snmpsim's
own `main()` unchanged: run it as `python -m agent.demo.responder` with snmpsim's options.
  - the data file is `<community>/<transport domain>.snmprec` when it exists, else
    `<community>.snmprec` (snmpsim's plain community selection);
  - a NoDataNotification from a variation module drops the response (the manager sees a
    timeout), with the request's state released.
"""

from __future__ import annotations

import hashlib
import signal
import sys
from pathlib import Path

from pysnmp.entity.rfc3413 import cmdrsp
from snmpsim.commands import responder as snmpsim_responder
from snmpsim.error import NoDataNotification

EXECUTION_POINT = "rfc3412.receiveMessage:request"

_communities: dict[bytes, str] = {}
"""md5 hex of a community (the context name snmpsim gives its `<community>.snmprec`) ->
the community: snmpsim names v1/v2c contexts by that hash, the data layout by the name."""


def _data_dirs(argv: list[str]) -> list[Path]:
    dirs = []
    for i, arg in enumerate(argv):
        if arg.startswith("--data-dir="):
            dirs.append(Path(arg.split("=", 1)[1]))
        elif arg == "--data-dir" and i + 1 < len(argv):
            dirs.append(Path(argv[i + 1]))
    return dirs


def _learn_communities(dirs: list[Path]) -> None:
    for directory in dirs:
        for file in directory.glob("*.snmprec"):
            _communities[hashlib.md5(file.stem.encode()).hexdigest().encode()] = file.stem


def _select(responder: cmdrsp.CommandResponderBase, engine, context_name) -> bytes:
    """The context (data file) for this request: per endpoint if there is one."""
    given = bytes(context_name) if context_name is not None else b""
    ctx = engine.observer.get_execution_context(EXECUTION_POINT)
    community = _communities.get(given)
    if community is None:
        return given
    domain = ".".join(str(x) for x in ctx["transportDomain"])
    ident = f"{community}/{domain}"
    names = responder.snmpContext.context_names
    for candidate in (hashlib.md5(ident.encode()).hexdigest().encode(), ident.encode()):
        if candidate in names:
            return candidate
    return given


def _selecting(base: type) -> type:
    class Selecting(base):  # type: ignore[misc, valid-type]
        def handle_management_operation(self, snmpEngine, stateReference, contextName, PDU):
            try:
                base.handle_management_operation(
                    self, snmpEngine, stateReference, _select(self, snmpEngine, contextName), PDU)
            except NoDataNotification:  # a variation module dropped the response
                self.release_state_information(stateReference)

    Selecting.__name__ = Selecting.__qualname__ = base.__name__
    return Selecting


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _learn_communities(_data_dirs(argv))
    for name in ("GetCommandResponder", "NextCommandResponder", "BulkCommandResponder",
                 "SetCommandResponder"):
        setattr(snmpsim_responder, name, _selecting(getattr(cmdrsp, name)))
    # SIGTERM ends the dispatcher like Ctrl-C does (snmpsim closes its files and sockets)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sys.argv = [sys.argv[0], *argv]
    try:
        return snmpsim_responder.main() or 0
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
