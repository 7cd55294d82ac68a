"""The agent's JSON API for faults, silences and rules (read by `vigil faults` and
`vigil silence`, and by whatever a centre builds on it).

GET    /api/v1/faults             active faults; filters: state, level, site, device, rule,
                                  suppressed=include|exclude|only (default include)
GET    /api/v1/faults/history     resolved faults, newest first (limit, default 100)
GET    /api/v1/faults/{key}       one fault, active or resolved, with its scene record
GET    /api/v1/silences           silences (maintenance windows), expired ones of the last day
POST   /api/v1/silences           {"matchers": [...], "ends_at": unix | "starts_at": ...,
                                   "duration": "2h", "owner": ..., "reason": ...}
DELETE /api/v1/silences/{id}      end a silence now
GET    /api/v1/rules              loaded rules with how many faults each has
Reading needs no token (it is what /metrics exports anyway); making or ending a silence needs
`Authorization: Bearer TOKEN` of an engineer or technician (agent/auth.py), since a silence
stops tickets from opening. Errors are JSON `{"error": "..."}` with status 400 (bad request),
401 (no or unknown token), 403 (wrong role), 404 (unknown) or 429 (too many failed tokens).
"""

from __future__ import annotations

import itertools
import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agent.auth import Authenticator
from agent.validation import parse_duration
from rules.faults import Fault
from rules.silences import new_silence

if TYPE_CHECKING:
    from agent.daemon import Agent

MAX_BODY = 64 * 1024
MAX_HISTORY = 100_000
FILTERS = {"state", "level", "site", "device", "rule"}
FAULT_STATES = ("pending", "firing", "resolved")


SILENCE_ROLES = frozenset({"engineer", "technician"})


def add_routes(app: web.Application, agent_key: web.AppKey, auth: Authenticator) -> None:
    def agent(request: web.Request) -> Agent:
        return request.app[agent_key]  # type: ignore[return-value]

    async def faults(request: web.Request) -> web.Response:
        engine = agent(request).rules.engine
        q = request.query
        bad = _bad_filters(q, {"suppressed"})
        if bad:
            return _error(400, bad)
        suppressed = q.get("suppressed", "include")
        if suppressed not in ("include", "exclude", "only"):
            return _error(400, "suppressed: use include, exclude or only")
        out = []
        for fault in engine.active.values():
            if not _wanted(fault, q):
                continue
            if (suppressed == "exclude" and fault.suppressed) or \
                    (suppressed == "only" and not fault.suppressed):
                continue
            out.append(_summary(fault))
        out.sort(key=lambda f: (f["level"], f["since"]))
        return web.json_response(out, dumps=_dumps)

    async def history(request: web.Request) -> web.Response:
        engine = agent(request).rules.engine
        bad = _bad_filters(request.query, {"limit"})
        if bad:
            return _error(400, bad)
        raw = request.query.get("limit", "100")
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_HISTORY:
            return _error(400, f"limit: an integer 1-{MAX_HISTORY}")
        q = request.query
        found = engine.history.matching(q.get("rule") or None, q.get("level") or None,
                                        q.get("site") or None, q.get("device") or None)
        out = [_summary(f) for f in itertools.islice(
            (f for f in found if _wanted(f, q)), int(raw))]
        return web.json_response(out, dumps=_dumps)

    async def one(request: web.Request) -> web.Response:
        engine = agent(request).rules.engine
        key = request.match_info["key"]
        fault = engine.active.get(key) or engine.history.find(key)
        if fault is None:
            return _error(404, f"no fault '{key}'")
        return web.json_response(fault.to_dict(), dumps=_dumps)

    async def silences(request: web.Request) -> web.Response:
        engine = agent(request).rules.engine
        now = time.time()
        out = [{**s.to_dict(), "active": s.active(now)} for s in engine.silences.values()]
        out.sort(key=lambda s: s["ends_at"])
        return web.json_response(out, dumps=_dumps)

    async def add_silence(request: web.Request) -> web.Response:
        if (request.content_length or 0) > MAX_BODY:
            return _error(413, "request body too large")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body must be JSON")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        try:
            silence = _silence(body)
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc))
        runner = agent(request).rules
        runner.engine.add_silence(silence)
        runner.save()
        return web.json_response(silence.to_dict(), status=201, dumps=_dumps)

    async def end_silence(request: web.Request) -> web.Response:
        runner = agent(request).rules
        sid = request.match_info["id"]
        if not runner.engine.expire_silence(sid, time.time()):
            return _error(404, f"no silence '{sid}'")
        runner.save()
        return web.json_response({"id": sid, "expired": True})

    async def rules(request: web.Request) -> web.Response:
        return web.json_response(rule_status(agent(request)), dumps=_dumps)

    app.router.add_get("/api/v1/faults", faults)
    app.router.add_get("/api/v1/faults/history", history)
    app.router.add_get("/api/v1/faults/{key:.+}", one)
    app.router.add_get("/api/v1/silences", silences)
    app.router.add_post("/api/v1/silences", auth.require(SILENCE_ROLES)(add_silence))
    app.router.add_delete("/api/v1/silences/{id}", auth.require(SILENCE_ROLES)(end_silence))
    app.router.add_get("/api/v1/rules", rules)


def rule_status(agent: Agent) -> list[dict[str, Any]]:
    """The loaded rules with how many devices each selects and how many active faults it
    has (GET /api/v1/rules and the web UI's rule page)."""
    counts: dict[str, int] = {}
    for fault in agent.rules.engine.active.values():
        counts[fault.rule] = counts.get(fault.rule, 0) + 1
    return [{"name": r.name, "group": r.group, "file": str(r.file), "line": r.line,
             "expr": r.rule.expr, "level": r.rule.level, "for": r.rule.for_,
             "faults": counts.get(r.name, 0),
             "devices": len(agent.rules.engine.selected.get(r.name, ()))}
            for r in agent.config.rules.rules]


SILENCE_FIELDS = {"matchers", "starts_at", "ends_at", "duration", "owner", "reason"}


def _silence(body: dict[str, Any]):
    unknown = set(body) - SILENCE_FIELDS
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; known: "
                         f"{', '.join(sorted(SILENCE_FIELDS))}")
    matchers = body.get("matchers")
    if not isinstance(matchers, list) or not all(isinstance(m, str) for m in matchers):
        raise ValueError("matchers: a list of strings like 'device=\"cam-01\"'")
    for name in ("owner", "reason"):
        if not isinstance(body.get(name, ""), str):
            raise ValueError(f"{name}: a string")
    now = time.time()
    starts = body.get("starts_at")
    if starts is not None and not _number(starts):
        raise ValueError("starts_at: unix time in seconds")
    ends = body.get("ends_at")
    if ends is None and "duration" in body:
        ends = (starts or now) + parse_duration(body["duration"])
    if not _number(ends):
        raise ValueError("ends_at (unix time) or duration ('2h') is required: a window has "
                         "an end")
    return new_silence(matchers, float(ends), body.get("owner", ""), body.get("reason", ""),
                       starts_at=starts, now=now)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and value == value and abs(value) < 1e12  # unix seconds, not NaN, not year 33658


def _bad_filters(q: Any, extra: set[str]) -> str | None:
    """What is wrong with a faults query (None: nothing): unknown or repeated parameters,
    a state or level that no fault can have."""
    known = FILTERS | extra
    unknown = set(q) - known
    if unknown:
        return f"unknown parameter(s) {sorted(unknown)}; known: {', '.join(sorted(known))}"
    repeated = sorted(name for name in q if len(q.getall(name)) > 1)
    if repeated:
        return f"{', '.join(repeated)}: give it once"
    if "state" in q and q["state"] not in FAULT_STATES:
        return f"state: one of {', '.join(FAULT_STATES)}"
    if "level" in q and q["level"] not in ("1", "2", "3", "4"):
        return "level: 1-4"
    return None


def _wanted(fault: Fault, q: Any) -> bool:
    return ((not q.get("state") or fault.state == q["state"])
            and (not q.get("level") or str(fault.level) == q["level"])
            and (not q.get("site") or fault.site == q["site"])
            and (not q.get("device") or fault.device == q["device"])
            and (not q.get("rule") or fault.rule == q["rule"]))


def _summary(fault: Fault) -> dict[str, Any]:
    """A fault without its scene record (that is in GET /api/v1/faults/{key})."""
    return {"key": fault.key, "rule": fault.rule, "level": fault.level, "state": fault.state,
            "device": fault.device, "subject": fault.subject, "site": fault.site,
            "kind": fault.kind, "series": fault.series, "labels": fault.labels,
            "since": fault.fired_at or fault.pending_since, "pending_since": fault.pending_since,
            "fired_at": fault.fired_at, "resolved_at": fault.resolved_at,
            "last_seen": fault.last_seen, "value": fault.value, "texts": fault.texts,
            "suppressed": fault.suppressed, "caused_by": fault.caused_by,
            "silenced_by": fault.silenced_by, "inhibited_by": fault.inhibited_by,
            "caused": len(fault.caused), "flapping": fault.flapping,
            "no_data_since": fault.no_data_since}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)
