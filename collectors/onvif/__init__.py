"""ONVIF: camera identity, clock, services, stream URIs and PTZ health (collector.py), and
events pushed by cameras through PullPoint subscriptions (events.py).

Client: onvif-zeep-async (zeep over aiohttp) with WS-UsernameToken PasswordDigest. Every
failure is mapped once onto the documented reasons in errors.py. See docs/cameras-onvif.md.
"""

import logging as _logging


def _import_onvif_quietly() -> None:
    """Import onvif-zeep-async without its import-time `logging.basicConfig(level=INFO)`, which
    would otherwise configure the root logger before the agent does (making the agent's own
    basicConfig a no-op)."""
    root = _logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import onvif  # noqa: F401

    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


_import_onvif_quietly()
