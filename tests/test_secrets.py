"""Credentials never leave the agent: a real `vigil run` whose every secret is a distinctive
string (SNMP community, SNMPv3 auth/priv passphrases, a wrong v3 passphrase, an ONVIF
password, an SMTP password, an API token and its hash) polls net-snmp snmpd (one device good,
one with the wrong passphrase), opens tickets, fails to mail, and is read through every GET
of its API, a ticket report, the web UI pages, /metrics and its log; `vigil check` and
`vigil poll` run too. None of the secrets may appear in any of it.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from agent.auth import add_user, hash_token
from tests import peers
from tests.test_daemon import VIGIL, Daemon

SECRETS = {
    "VIGIL_T_COMMUNITY": "CommQx7Leak1",
    "VIGIL_T_AUTH": "AuthQx7Leak2",
    "VIGIL_T_PRIV": "PrivQx7Leak3",
    "VIGIL_T_WRONG": "WrongQx7Leak4",
    "VIGIL_T_ONVIF": "OnvifQx7Leak5",
    "VIGIL_T_SMTP": "SmtpQx7Leak6",
    "VIGIL_T_ONVIF_WRONG": "OnvifWrongQx7Leak7",
}


def _closed_port() -> int:
    return peers.free_port(socket.SOCK_STREAM)


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    """(daemon, work dir, API token, every secret) for the module."""
    work = tmp_path_factory.mktemp("secrets")
    cams = {name: peers.free_port(socket.SOCK_STREAM) for name in ("cam-1", "cam-2")}
    control = peers.free_port(socket.SOCK_STREAM)
    rtsp = f"rtsp://127.0.0.1:{_closed_port()}/live"  # the probe fails: its error is logged
    (work / "cameras.json").write_text(json.dumps(
        {"defaults": {"username": "admin", "password": SECRETS["VIGIL_T_ONVIF"]},
         "cameras": [{"name": n, "port": p, "stream_uri": rtsp} for n, p in cams.items()]}))
    with peers.child([sys.executable, "-m", "agent.demo.onvif", "--config",
                      str(work / "cameras.json"), "--control", f"127.0.0.1:{control}"],
                     work / "onvif.log"):
        peers.wait_http(f"http://127.0.0.1:{control}/cameras")
        yield from _agent(work, cams)


def _agent(work: Path, cams: dict[str, int]):
    users = [("vigil", "SHA-256", SECRETS["VIGIL_T_AUTH"], "AES", SECRETS["VIGIL_T_PRIV"])]
    with peers.snmpd(work, users, community=SECRETS["VIGIL_T_COMMUNITY"]) as port:
        (work / "credentials.yaml").write_text(
            "credentials:\n"
            "  v2:\n    version: 2c\n    community_env: VIGIL_T_COMMUNITY\n"
            "  v3:\n    version: 3\n    username: vigil\n    auth_protocol: SHA256\n"
            "    auth_password_env: VIGIL_T_AUTH\n    priv_protocol: AES\n"
            "    priv_password_env: VIGIL_T_PRIV\n"
            "  v3-wrong:\n    version: 3\n    username: vigil\n    auth_protocol: SHA256\n"
            "    auth_password_env: VIGIL_T_WRONG\n    priv_protocol: AES\n"
            "    priv_password_env: VIGIL_T_WRONG\n"
            "  cam:\n    username: admin\n    password_env: VIGIL_T_ONVIF\n"
            "  cam-wrong:\n    username: admin\n    password_env: VIGIL_T_ONVIF_WRONG\n")
        (work / "inventory.yaml").write_text(
            "sites:\n  - {id: lab, name: 实验室}\ndevices:\n"
            f"  - {{id: sw-v2, kind: switch, site: lab, address: 127.0.0.1, port: {port}, "
            "credentials: v2}\n"
            f"  - {{id: sw-v3, kind: switch, site: lab, address: 127.0.0.1, port: {port}, "
            "credentials: v3}\n"
            f"  - {{id: sw-bad, kind: switch, site: lab, address: 127.0.0.1, port: {port}, "
            "credentials: v3-wrong}\n"
            f"  - {{id: cam-1, kind: fixed_camera, site: lab, address: 127.0.0.1, snmp: false, "
            f"onvif: {{port: {cams['cam-1']}, credentials: cam}}, rtsp: {{}}}}\n"
            f"  - {{id: cam-2, kind: fixed_camera, site: lab, address: 127.0.0.1, snmp: false, "
            f"onvif: {{port: {cams['cam-2']}, credentials: cam-wrong}}, rtsp: {{}}}}\n")
        token = add_user(work / "tokens.yaml", "wang.fang", "engineer")
        listen = peers.free_port(socket.SOCK_STREAM)
        (work / "agent.yaml").write_text(
            f"agent: {{id: test}}\nlisten: 127.0.0.1:{listen}\nstate_dir: state\n"
            "onvif: {interval: 2s, timeout: 3s}\n"
            "rtsp: {cameras_per_minute: 60, min_interval: 4s, timeout: 2s}\n"
            "schedule: {default_interval: 2s}\nsnmp: {timeout: 1s, retries: 0}\n"
            "reachability: {enabled: false}\nlog_level: debug\n"
            f"rules: {{files: ['{peers.fast_rules(work, '1s')}'], interval: 1s}}\n"
            "notifications:\n  channels:\n"
            f"    - {{name: mail, type: email, host: 127.0.0.1, port: {_closed_port()}, "
            "security: none, user: vigil, password_env: VIGIL_T_SMTP, from: vigil@lab, "
            "to: [ops@lab]}\n")
        daemon = Daemon(work / "agent.yaml", env=SECRETS)
        try:
            peers.wait_http(daemon.url + "/-/ready")
            daemon.wait_for(lambda: daemon.sample("vigil_device_up", device="sw-v3") == 1,
                            what="the v3 switch polled")
            daemon.wait_for(lambda: daemon.sample("vigil_collector_up", device="cam-1",
                                                  collector="onvif") == 1,
                            what="the camera's ONVIF login")
            daemon.wait_for(lambda: _get(daemon.url + "/api/v1/tickets", token),
                            what="a ticket opened", timeout=40)
            daemon.wait_for(lambda: "sw-bad" in _text(_get(daemon.url + "/api/v1/faults",
                                                           token)),
                            what="the wrong-passphrase switch's fault", timeout=40)
            secrets = [*SECRETS.values(), token, hash_token(token)]
            yield daemon, work, token, secrets
        finally:
            daemon.stop()


def _get(url: str, token: str = "", opener=None) -> list | dict | str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    with (opener or urllib.request.build_opener()).open(request, timeout=10) as response:
        body = response.read().decode()
    try:
        return json.loads(body)
    except ValueError:
        return body


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _no_secret(where: str, text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:4]}...) appears in {where}"


def test_api_metrics_and_reports_hold_no_secret(leaky):
    daemon, _work, token, secrets = leaky
    seen = {"/metrics": daemon.metrics()}
    for path in ("/api/v1/faults", "/api/v1/faults/history", "/api/v1/silences",
                 "/api/v1/rules", "/api/v1/tickets", "/api/v1/statistics",
                 "/api/v1/grounding", "/api/v1/inspections", "/api/v1/openapi.json",
                 "/evidence/cam-1", "/-/ready"):
        try:
            seen[path] = _text(_get(daemon.url + path, token))
        except urllib.error.HTTPError as exc:  # an endpoint this agent has off: its answer
            seen[path] = exc.read().decode()
    tickets = _get(daemon.url + "/api/v1/tickets", token)
    assert tickets, "no ticket to read"
    for ticket in tickets[:3]:
        seen[f"ticket {ticket['id']}"] = _text(_get(f"{daemon.url}/api/v1/tickets/"
                                                    f"{ticket['id']}", token))
        seen[f"report {ticket['id']}"] = _text(_get(f"{daemon.url}/api/v1/reports/tickets/"
                                                    f"{ticket['id']}?format=html", token))
    assert all("<html" in text for where, text in seen.items() if where.startswith("report"))
    faults = _text(seen["/api/v1/faults"])
    assert "sw-bad" in faults, "the wrong-passphrase switch should be a fault"
    for where, text in seen.items():
        _no_secret(where, text, secrets)


def test_web_ui_pages_hold_no_secret(leaky):
    daemon, _work, token, secrets = leaky
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = _get(daemon.url + "/ui/login", opener=opener)
    csrf = re.search(r'name="login_csrf" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"token": token, "login_csrf": csrf}).encode()
    with opener.open(daemon.url + "/ui/login", data=form, timeout=10) as response:
        assert "/ui/login" not in response.url
        _no_secret("the login answer", response.read().decode(), secrets)
    with opener.open(daemon.url + "/ui/tickets", timeout=10) as response:  # XSS defences
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert "script-src" not in response.headers["Content-Security-Policy"]  # self only
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    tickets = _get(daemon.url + "/api/v1/tickets", token)
    pages = ["/ui/", "/ui/tickets", "/ui/confirm", "/ui/inspections", "/ui/reports",
             "/ui/inventory", "/ui/rules", f"/ui/tickets/{tickets[0]['id']}"]
    for path in pages:
        text = _text(_get(daemon.url + path, opener=opener))
        assert "/ui/login" not in text or path == "/ui/", path
        _no_secret(path, text, secrets)


def test_log_holds_no_secret(leaky):
    daemon, _work, _token, secrets = leaky
    log = daemon.log.read_text()
    assert "sw-bad" in log or "sw-bad" in daemon.metrics()
    _no_secret("the log", log, secrets)


def test_check_and_poll_print_no_secret(leaky):
    _daemon, work, _token, secrets = leaky
    env = {**os.environ, **SECRETS}
    runs = [subprocess.run([*VIGIL, "check", "-c", str(work / "agent.yaml")], env=env,
                           capture_output=True, text=True, timeout=60)]
    for device in ("sw-bad", "cam-1", "cam-2"):
        runs.append(subprocess.run([*VIGIL, "poll", "-c", str(work / "agent.yaml"), device],
                                   env=env, capture_output=True, text=True, timeout=60))
    assert runs[0].returncode == 0, runs[0].stdout + runs[0].stderr
    for run in runs:
        _no_secret(" ".join(run.args[3:]), run.stdout + run.stderr, secrets)
