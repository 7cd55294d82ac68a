"""E-mail over a real SMTP server that demands encryption and a login: aiosmtpd on 127.0.0.1
with STARTTLS required and AUTH LOGIN/PLAIN required only over TLS, or with implicit TLS
(port-465 style). The certificates come from a throwaway CA made here with `cryptography`;
the sender trusts it through SSL_CERT_FILE (OpenSSL reads it whenever a default context is
made), so nothing on the machine is changed. Every server is stopped at the end of its test;
the notifier's clock is fake, so retries do not sleep."""

from __future__ import annotations

import base64
import email
import email.policy
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.notify import EmailChannel, JsonlDeadLetters, Message, Notifier, Renderer
from tests.peers import free_port

CST = timezone(timedelta(hours=8))
T0 = 1_740_000_000.0
USER = "vigil-mailer"
PASSWORD = "Zh3ng-que/s3cret+=%"  # base64 and URL specials: quoted nowhere
PASSWORD_ENV = "VIGIL_TEST_SMTP_PASSWORD"
# aiosmtpd warns when AUTH is required without STARTTLS: with implicit TLS it is encrypted.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
SUBJECT = "【二级】东湖社区（dh） 东门枪机7号（cam-007）：摄像机离线"


class FakeClock:
    def __init__(self) -> None:
        self.now = T0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def message() -> Message:
    return Message(kind="opened", key="dh/cam-007/camera_offline", ticket="T-7", site="dh",
                   site_name="东湖社区", device="cam-007", device_name="东门枪机7号",
                   level=2, what_zh="摄像机离线", what_en="camera offline",
                   since=datetime(2025, 3, 1, 8, 0, tzinfo=CST),
                   deadline=datetime(2025, 3, 1, 10, 0, tzinfo=CST),
                   link="http://127.0.0.1:8080/tickets/T-7")


# --- a throwaway PKI ---------------------------------------------------------------------

@dataclass
class Authority:
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    pem: Path


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_ca(directory: Path, name: str) -> Authority:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    pem = directory / f"{name}.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Authority(name, key, cert, pem)


def server_context(directory: Path, ca: Authority, names: tuple[str, ...] = (
        "127.0.0.1", "localhost")) -> ssl.SSLContext:
    """A server-side TLS context with a certificate for `names` from `ca`."""
    key = _key()
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca.key.public_key()), critical=False)
            .sign(ca.key, hashes.SHA256()))
    stem = f"server-{ca.name}-{names[0]}"
    cert_file, key_file = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


@dataclass
class Pki:
    trusted: Authority  # the CA the sender is told to trust (SSL_CERT_FILE)
    rogue: Authority  # a CA nobody trusts
    contexts: dict[str, ssl.SSLContext] = field(default_factory=dict)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    trusted, rogue = make_ca(directory, "vigil-test-ca"), make_ca(directory, "rogue-ca")
    return Pki(trusted, rogue, {
        "trusted": server_context(directory, trusted),
        "rogue": server_context(directory, rogue),
        "other-name": server_context(directory, trusted, ("mail.example.org",))})


@pytest.fixture
def trust_test_ca(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.trusted.pem))
    monkeypatch.setenv("SSL_CERT_DIR", str(pki.trusted.pem.parent / "no-such-dir"))


# --- the SMTP server ---------------------------------------------------------------------

@dataclass
class SmtpServer:
    port: int
    received: list = field(default_factory=list)  # (envelope, TLS version)
    logins: list[tuple[str, str, bool]] = field(default_factory=list)  # mechanism, user, ok


@pytest.fixture
def smtp_server(pki: Pki) -> Iterator[Callable[..., SmtpServer]]:
    """Starts aiosmtpd servers on 127.0.0.1: `tls="starttls"` (STARTTLS required, AUTH only
    after it) or `tls="ssl"` (TLS from the first byte); AUTH required either way. All are
    stopped at the end of the test."""
    controllers: list[Controller] = []

    def start(tls: str = "starttls", cert: str = "trusted",
              exclude: tuple[str, ...] = ()) -> SmtpServer:
        server = SmtpServer(free_port(socket.SOCK_STREAM))

        def authenticator(smtp, session, envelope, mechanism, auth_data) -> AuthResult:
            ok = (isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode()
                  and auth_data.password == PASSWORD.encode())
            login = auth_data.login.decode(errors="replace") \
                if isinstance(auth_data, LoginPassword) else ""
            server.logins.append((mechanism, login, ok))
            return AuthResult(success=ok, handled=False)  # aiosmtpd answers 535

        class Handler:
            async def handle_DATA(self, smtp, session, envelope) -> str:
                assert session.authenticated
                tls_object = smtp.transport.get_extra_info("ssl_object")
                server.received.append((envelope, tls_object.version() if tls_object else None))
                return "250 OK"

        context = pki.contexts[cert]
        kwargs = dict(authenticator=authenticator, auth_required=True,
                      auth_exclude_mechanism=list(exclude))
        if tls == "starttls":
            kwargs |= dict(tls_context=context, require_starttls=True, auth_require_tls=True)
        else:
            # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; with implicit TLS
            # every byte is encrypted anyway (checked in handle_DATA).
            kwargs |= dict(ssl_context=context, auth_require_tls=False)
        controller = Controller(Handler(), hostname="127.0.0.1", port=server.port,
                                ready_timeout=5.0, **kwargs)
        controller.start()
        controllers.append(controller)
        return server

    try:
        yield start
    finally:
        for controller in controllers:
            controller.stop()


def channel(server: SmtpServer, security: str = "starttls", **kw) -> EmailChannel:
    return EmailChannel(**{"type": "email", "name": "mail", "host": "127.0.0.1",
                           "port": server.port, "security": security, "user": USER,
                           "password_env": PASSWORD_ENV, "from": "vigil@example.org",
                           "to": ["tech@example.org", "lead@example.org"],
                           "storm_window": 0, "timeout": 5, **kw})


async def send(ch: EmailChannel, sink) -> Notifier:
    clock = FakeClock()
    notifier = Notifier([ch], clock=clock, sleep=clock.sleep, dead_letters=sink,
                        renderer=Renderer(tz=CST))
    try:
        await notifier.notify(message())
    finally:
        await notifier.close()
    return notifier


def assert_chinese_mail(server: SmtpServer) -> None:
    assert len(server.received) == 2  # apprise sends one message per recipient
    assert sorted(rcpt for envelope, _ in server.received for rcpt in envelope.rcpt_tos) == \
        ["lead@example.org", "tech@example.org"]
    for envelope, tls_version in server.received:
        assert tls_version in ("TLSv1.2", "TLSv1.3")
        assert envelope.mail_from == "vigil@example.org"
        raw = envelope.original_content
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        assert mail["Subject"] == SUBJECT  # RFC 2047 encoded-words, decoded
        assert "摄像机".encode() not in raw.split(b"\r\n\r\n", 1)[0]  # headers are 7-bit
        part = mail.get_body(("plain",)) if mail.is_multipart() else mail
        assert part.get_content_type() == "text/plain"
        assert part.get_content_charset() == "utf-8"
        body = part.get_content()
        for text in ("站点：东湖社区（dh）", "设备：东门枪机7号（cam-007）", "级别：2级",
                     "故障：摄像机离线", "发生时间：2025-03-01 08:00",
                     "处理时限：2025-03-01 10:00", "详情：http://127.0.0.1:8080/tickets/T-7"):
            assert text in body, body


def assert_no_password(*texts: str) -> None:
    b64 = base64.b64encode(PASSWORD.encode()).decode()
    plain = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    for text in texts:
        for secret in (PASSWORD, b64, plain):
            assert secret not in text


def own_log(caplog: pytest.LogCaptureFixture) -> str:
    """What Vigil and apprise logged (aiosmtpd's own `mail.log` is the test server's)."""
    return "\n".join(f"{r.name} {r.levelname} {r.getMessage()}" for r in caplog.records
                     if not r.name.startswith("mail."))


# --- the tests ---------------------------------------------------------------------------

@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_starttls_and_login_deliver_chinese_mail(
        smtp_server, trust_test_ca, mechanism: str, monkeypatch, tmp_path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1)  # everything, apprise's trace level included
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    server = smtp_server("starttls", exclude=(other,))
    sink = JsonlDeadLetters(tmp_path / "dead")
    await send(channel(server), sink)
    assert sink.read() == []
    assert server.logins and all(m == mechanism and user == USER and ok
                                 for m, user, ok in server.logins)
    assert_chinese_mail(server)
    assert_no_password(own_log(caplog))


async def test_implicit_tls_delivers(smtp_server, trust_test_ca, monkeypatch, tmp_path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    server = smtp_server("ssl")
    sink = JsonlDeadLetters(tmp_path / "dead")
    await send(channel(server, "ssl"), sink)
    assert sink.read() == []
    assert server.logins and all(ok for _, _, ok in server.logins)
    assert_chinese_mail(server)
    assert_no_password(own_log(caplog))


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
async def test_wrong_password_is_a_dead_letter_with_the_reason(
        smtp_server, trust_test_ca, tls: str, monkeypatch, tmp_path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD + "-wrong")
    server = smtp_server(tls)
    sink = JsonlDeadLetters(tmp_path / "dead")
    notifier = await send(channel(server, tls, attempts=4), sink)  # no exception
    [letter] = sink.read()
    assert letter.channel == "mail" and letter.type == "email" and letter.kind == "opened"
    assert letter.attempts == 1  # a 535 is permanent: not retried, no lockout by retries
    assert letter.error.startswith(f"SMTP delivery to 127.0.0.1:{server.port} failed: "
                                   "login refused: 535 "), letter.error
    assert letter.subject == SUBJECT and letter.messages[0]["key"] == "dh/cam-007/camera_offline"
    # smtplib tries each mechanism the server offers (PLAIN, then LOGIN) in one connection
    assert server.received == [] and {ok for _, _, ok in server.logins} == {False}
    assert notifier.pending() == 0
    assert_no_password(sink.path.read_text(encoding="utf-8"), own_log(caplog))
    assert "login refused: 535" in own_log(caplog)  # the notifier's warning says why


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
async def test_untrusted_certificate_is_refused(smtp_server, trust_test_ca, tls: str,
                                                monkeypatch, tmp_path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    server = smtp_server(tls, cert="rogue")
    sink = JsonlDeadLetters(tmp_path / "dead")
    await send(channel(server, tls), sink)
    [letter] = sink.read()
    assert letter.attempts == 1
    assert "certificate is not trusted" in letter.error, letter.error
    assert "verify_tls" in letter.error
    assert server.logins == [] and server.received == []  # the password never left
    assert_no_password(sink.path.read_text(encoding="utf-8"), own_log(caplog))


async def test_certificate_for_another_name_is_refused(smtp_server, trust_test_ca,
                                                      monkeypatch, tmp_path) -> None:
    """Signed by the trusted CA but for mail.example.org, not 127.0.0.1: refused."""
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    server = smtp_server("starttls", cert="other-name")
    sink = JsonlDeadLetters(tmp_path / "dead")
    await send(channel(server), sink)
    [letter] = sink.read()
    assert "certificate is not for this host" in letter.error, letter.error
    assert "127.0.0.1" in letter.error and letter.attempts == 1
    assert server.logins == [] and server.received == []


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
async def test_verify_tls_false_accepts_any_certificate(smtp_server, trust_test_ca, tls: str,
                                                        monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    server = smtp_server(tls, cert="rogue")
    sink = JsonlDeadLetters(tmp_path / "dead")
    await send(channel(server, tls, verify_tls=False), sink)
    assert sink.read() == []
    assert_chinese_mail(server)


async def test_starttls_refused_by_a_server_without_it(monkeypatch, tmp_path) -> None:
    """security: starttls never falls back to plain text (where the password would travel
    in the clear)."""
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    received: list = []

    class Handler:
        async def handle_DATA(self, smtp, session, envelope) -> str:
            received.append(envelope)
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=free_port(socket.SOCK_STREAM))
    controller.start()
    try:
        server = SmtpServer(controller.port)
        sink = JsonlDeadLetters(tmp_path / "dead")
        await send(channel(server), sink)
    finally:
        controller.stop()
    [letter] = sink.read()
    assert "STARTTLS" in letter.error and letter.attempts == 1, letter.error
    assert received == []


@pytest.mark.faults
async def test_no_server_is_retried_then_dead_lettered(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    server = SmtpServer(free_port(socket.SOCK_STREAM))  # nobody listens
    sink = JsonlDeadLetters(tmp_path / "dead")
    clock = FakeClock()
    notifier = Notifier([channel(server, attempts=3, backoff=2)], clock=clock,
                        sleep=clock.sleep, dead_letters=sink)
    await notifier.notify(message())
    await notifier.close()
    [letter] = sink.read()
    assert letter.attempts == 3 and clock.sleeps == [2.0, 4.0]
    assert "ConnectionRefusedError" in letter.error, letter.error


async def test_password_env_unset_is_a_dead_letter(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    sink = JsonlDeadLetters(tmp_path / "dead")
    await send(channel(SmtpServer(free_port(socket.SOCK_STREAM))), sink)
    [letter] = sink.read()
    assert letter.attempts == 1 and PASSWORD_ENV in letter.error


async def test_non_ascii_password_is_a_clear_dead_letter(monkeypatch, tmp_path) -> None:
    """smtplib sends AUTH as ASCII; a password like 密码 must say so, not crash a thread."""
    monkeypatch.setenv(PASSWORD_ENV, "密码123")
    sink = JsonlDeadLetters(tmp_path / "dead")
    await send(channel(SmtpServer(free_port(socket.SOCK_STREAM))), sink)
    [letter] = sink.read()
    assert letter.attempts == 1 and "non-ASCII" in letter.error and "密码" not in letter.error


def test_verify_tls_defaults_to_true() -> None:
    ch = EmailChannel.model_validate({"type": "email", "name": "m", "host": "h",
                                      "from": "a@b", "to": ["c@d"]})
    assert ch.verify_tls is True and ch.security == "starttls"

