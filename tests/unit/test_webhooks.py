"""Webhook delivery against a real HTTP server on 127.0.0.1, verified with the standardwebhooks library.

Nothing in httpx is mocked: requests really go over a socket to a scripted `ThreadingHTTPServer`.
Only DNS (for the SSRF guard) and sleeping (for backoff) are injected, so the tests are fast and
need no network.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import httpx
import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from talkstack.pipeline.webhooks import (
    DeliveryReport,
    WebhookPolicy,
    WebhookRefused,
    WebhookTarget,
    check_webhook_target,
    deliver_async,
    deliver_webhook,
    deliver_webhooks,
    generate_secret,
    pinned_request,
    redact_url,
    sign_headers,
)

BODY = json.dumps({"type": "job.completed", "job_id": "job_123", "result": {"video": "s3://b/k.mp4"}})
MSG_ID = "evt_0f6a1c2e"
PUBLIC = "93.184.216.34"


# ---------------------------------------------------------------------------------------------
# A scripted receiver
# ---------------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class Receiver:
    url: str = ""
    statuses: list[int] = field(default_factory=list)
    """Replies in order; 200 once the list runs out."""
    delay_s: float = 0.0
    """Stall this long before replying (to provoke client timeouts)."""
    location: str = "/elsewhere"
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client that timed out and hung up is expected here, not an error worth printing


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8")
            with rec.lock:
                rec.requests.append(
                    Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                status = rec.statuses.pop(0) if rec.statuses else 200
            if rec.delay_s:
                threading.Event().wait(rec.delay_s)
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", rec.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET = do_PUT = _handle

        def log_message(self, format, *args) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def local_policy(**overrides: object) -> WebhookPolicy:
    return WebhookPolicy.model_validate({"allow_loopback": True, "timeout_s": 2.0, **overrides})


def deliver(url: str, secret: str, policy: WebhookPolicy, **kwargs) -> tuple[DeliveryReport, list[float]]:
    sleeps: list[float] = []
    report = deliver_webhook(
        url, BODY, msg_id=MSG_ID, secret=secret, policy=policy, sleep=sleeps.append, **kwargs
    )
    return report, sleeps


def resolver(*ips: str, calls: list[tuple[str, int]] | None = None) -> Callable[..., list[tuple]]:
    """A stand-in for socket.getaddrinfo that answers with `ips`."""

    def resolve(host: str, port: int, *args: object, **kwargs: object) -> list[tuple]:
        if calls is not None:
            calls.append((host, port))
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (ip, port, 0, 0) if ":" in ip else (ip, port),
            )
            for ip in ips
        ]

    return resolve


class Clock:
    """Starts just before real time (receivers reject stale timestamps) and advances 7 s per call."""

    def __init__(self) -> None:
        self.t = datetime.now(UTC) - timedelta(seconds=60)

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=7)
        return self.t


@pytest.fixture
def secret() -> str:
    return generate_secret()


# ---------------------------------------------------------------------------------------------
# Secrets and signing
# ---------------------------------------------------------------------------------------------


def test_generate_secret_is_standard_webhooks_format(secret):
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert generate_secret() != secret
    headers = sign_headers(secret, MSG_ID, datetime.now(UTC), BODY)
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_sign_headers_matches_the_spec_example():
    # The example from the Standard Webhooks specification.
    headers = sign_headers(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        datetime.fromtimestamp(1614265330, UTC),
        '{"test": 2432232314}',
    )
    assert headers == {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        "content-type": "application/json",
        "user-agent": "talkstack-webhooks/1",
    }


def test_sign_headers_converts_other_timezones_and_refuses_naive(secret):
    utc = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
    plus_two = utc.astimezone(timezone(timedelta(hours=2)))
    assert sign_headers(secret, MSG_ID, plus_two, BODY) == sign_headers(secret, MSG_ID, utc, BODY)
    with pytest.raises(ValueError, match="timezone-aware"):
        sign_headers(secret, MSG_ID, datetime(2025, 3, 1, 12, 0, 0), BODY)


# ---------------------------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------------------------


def test_delivered_request_is_signed_and_verifies(receiver, secret):
    report, sleeps = deliver(receiver.url, secret, local_policy(), event_type="job.completed")

    assert report.delivered and report.refused is None and sleeps == []
    assert (report.url, report.event_id, report.event_type) == (receiver.url, MSG_ID, "job.completed")
    [attempt] = report.attempts
    assert (attempt.attempt, attempt.status_code, attempt.error, attempt.ok) == (1, 200, None, True)
    assert attempt.duration_ms > 0 and attempt.started_at.tzinfo is not None

    [req] = receiver.requests
    assert (req.method, req.path, req.body) == ("POST", "/hook", BODY)
    assert req.headers["webhook-id"] == MSG_ID
    assert req.headers["content-type"] == "application/json"
    assert req.headers["user-agent"] == "talkstack-webhooks/1"
    assert Webhook(secret).verify(req.body, req.headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(req.body.replace("job_123", "job_124"), req.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(req.body, req.headers)


def test_5xx_is_retried_with_a_stable_id_and_fresh_signatures(receiver, secret):
    receiver.statuses = [503, 503, 200]
    policy = local_policy(initial_backoff_s=0.5, max_backoff_s=0.75)
    report, sleeps = deliver(receiver.url, secret, policy, now=Clock())

    assert report.delivered
    assert [a.status_code for a in report.attempts] == [503, 503, 200]
    assert [a.error for a in report.attempts] == ["HTTP 503", "HTTP 503", None]
    assert [a.ok for a in report.attempts] == [False, False, True]
    assert [a.attempt for a in report.attempts] == [1, 2, 3]
    # Full jitter: each wait is in (0, bound], the bound doubling from 0.5 and capped at 0.75.
    assert len(sleeps) == 2
    assert 0 < sleeps[0] <= 0.5 and 0 < sleeps[1] <= 0.75

    reqs = receiver.requests
    assert len(reqs) == 3
    assert {r.headers["webhook-id"] for r in reqs} == {MSG_ID}
    assert len({r.headers["webhook-timestamp"] for r in reqs}) == 3
    assert len({r.headers["webhook-signature"] for r in reqs}) == 3
    for r in reqs:
        Webhook(secret).verify(r.body, r.headers)
    # Each signature is bound to its own timestamp: one attempt's signature fails with another's.
    mixed = {**reqs[0].headers, "webhook-signature": reqs[1].headers["webhook-signature"]}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(reqs[0].body, mixed)


def test_backoff_bound_doubles_up_to_the_cap(receiver, secret):
    receiver.statuses = [500] * 10
    report, sleeps = deliver(
        receiver.url, secret, local_policy(max_attempts=6, initial_backoff_s=1.0, max_backoff_s=4.0)
    )
    assert not report.delivered and len(report.attempts) == 6 and len(receiver.requests) == 6
    bounds = [1.0, 2.0, 4.0, 4.0, 4.0]
    assert len(sleeps) == 5
    assert all(0 < s <= b for s, b in zip(sleeps, bounds, strict=True))
    assert any(s < b for s, b in zip(sleeps, bounds, strict=True))  # jittered, not the bound itself


def test_endpoint_down_records_every_attempt_and_does_not_raise(secret):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now

    report, sleeps = deliver(f"http://127.0.0.1:{port}/hook", secret, local_policy(max_attempts=3))

    assert not report.delivered and report.refused is None
    assert len(report.attempts) == 3 and len(sleeps) == 2
    for a in report.attempts:
        assert a.status_code is None and not a.ok
        assert a.error is not None and a.error.startswith("ConnectError") and "\n" not in a.error


def test_timeouts_are_retried(receiver, secret):
    receiver.delay_s = 1.0
    report, sleeps = deliver(receiver.url, secret, local_policy(max_attempts=2, timeout_s=0.2))
    assert not report.delivered and len(report.attempts) == 2 and len(sleeps) == 1
    # The attempt's deadline and httpx's read timeout are the same 0.2 s: either may fire first.
    assert all((a.error or "").startswith(("ReadTimeout", "DeadlineExceeded")) for a in report.attempts)
    assert len(receiver.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_other_4xx_is_not_retried(receiver, secret, status):
    receiver.statuses = [status, 200]
    report, sleeps = deliver(receiver.url, secret, local_policy())
    assert not report.delivered and sleeps == []
    [attempt] = report.attempts
    assert (attempt.status_code, attempt.error, attempt.ok) == (status, f"HTTP {status}", False)
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried(receiver, secret, status):
    receiver.statuses = [status, 200]
    report, sleeps = deliver(receiver.url, secret, local_policy())
    assert report.delivered and len(sleeps) == 1
    assert [a.status_code for a in report.attempts] == [status, 200]


@pytest.mark.parametrize("follow_in_client", [False, True])
def test_redirects_are_not_followed(receiver, secret, follow_in_client):
    receiver.statuses = [302]
    receiver.location = receiver.url.replace("/hook", "/elsewhere")
    client = httpx.AsyncClient(follow_redirects=follow_in_client)
    report, sleeps = deliver(receiver.url, secret, local_policy(), client=client)
    assert not client.is_closed  # the caller's client is left for the caller to close
    anyio.run(client.aclose)
    assert not report.delivered and sleeps == []
    [attempt] = report.attempts
    assert attempt.status_code == 302 and "redirect not followed" in (attempt.error or "")
    assert [r.path for r in receiver.requests] == ["/hook"]


def test_report_serialises_to_json(receiver, secret):
    report, _ = deliver(receiver.url, secret, local_policy())
    data = json.loads(report.model_dump_json())
    assert data["delivered"] is True and data["attempts"][0]["started_at"].endswith("Z")
    assert DeliveryReport.model_validate_json(report.model_dump_json()) == report


def test_invalid_secret_is_a_configuration_error_raised_before_sending(receiver):
    with pytest.raises(ValueError, match="invalid webhook secret"):
        deliver(receiver.url, "whsec_", local_policy())
    assert receiver.requests == []


def test_policy_validation():
    assert WebhookPolicy() == WebhookPolicy(
        max_attempts=5,
        initial_backoff_s=1.0,
        max_backoff_s=30.0,
        timeout_s=10.0,
        delivery_deadline_s=120.0,
        allow_loopback=False,
    )
    for bad in (
        {"max_attempts": 0},
        {"timeout_s": 0},
        {"initial_backoff_s": -1},
        {"retries": 3},
        {"timeout_s": 10, "delivery_deadline_s": 5},  # not even one attempt would fit
    ):
        with pytest.raises(ValidationError):
            WebhookPolicy.model_validate(bad)
    with pytest.raises(ValidationError):
        WebhookPolicy().max_attempts = 2  # type: ignore[misc]  # frozen: the default is shared


# ---------------------------------------------------------------------------------------------
# SSRF guard
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("10.0.0.5", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "metadata"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "metadata"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "metadata"),
        ("100.64.0.1", "shared address space"),
        ("100.100.100.200", "metadata"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("fd12:3456::1", "private"),  # IPv6 unique-local
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("169.254.1.1", "link-local"),
        ("2002:a00:1::1", "private"),  # 6to4 wrapping 10.0.0.1
        ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 wrapping 169.254.169.254
    ],
)
def test_guard_refuses_non_public_addresses(address, why):
    with pytest.raises(WebhookRefused) as info:
        check_webhook_target("https://hooks.example.com/x", resolve=resolver(address))
    assert address in info.value.reason and why in info.value.reason
    assert str(info.value) == info.value.reason


@pytest.mark.parametrize(
    "address", [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34", "64:ff9b::5db8:d822"]
)
def test_guard_accepts_public_addresses(address):
    calls: list[tuple[str, int]] = []
    addresses = check_webhook_target("https://hooks.example.com/x", resolve=resolver(address, calls=calls))
    assert addresses == [address]
    assert calls == [("hooks.example.com", 443)]


def test_guard_returns_every_address_once_and_uses_the_url_port():
    calls: list[tuple[str, int]] = []
    resolve = resolver(PUBLIC, PUBLIC, "2606:2800:220:1:248:1893:25c8:1946", calls=calls)
    addresses = check_webhook_target("https://hooks.example.com:8443/x", resolve=resolve)
    assert addresses == [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946"]
    assert calls == [("hooks.example.com", 8443)]


@pytest.mark.parametrize("address", ["127.0.0.1", "127.1.2.3", "::1"])
def test_loopback_only_in_local_mode(address):
    url = "https://localhost/x"
    with pytest.raises(WebhookRefused, match="loopback"):
        check_webhook_target(url, resolve=resolver(address))
    assert check_webhook_target(url, allow_loopback=True, resolve=resolver(address)) == [address]


@pytest.mark.parametrize("address", ["169.254.169.254", "fd00:ec2::254", "10.0.0.5", "::ffff:192.168.0.1"])
def test_local_mode_still_refuses_metadata_and_private(address):
    with pytest.raises(WebhookRefused) as info:
        check_webhook_target("https://hooks.example.com/x", allow_loopback=True, resolve=resolver(address))
    assert address in info.value.reason


def test_one_private_address_among_public_ones_is_refused():
    with pytest.raises(WebhookRefused, match=r"10\.1\.2\.3"):
        check_webhook_target("https://hooks.example.com/x", resolve=resolver(PUBLIC, "10.1.2.3"))


def test_plain_http_only_for_loopback_in_local_mode():
    with pytest.raises(WebhookRefused, match="https"):
        check_webhook_target("http://hooks.example.com/x", resolve=resolver(PUBLIC))
    with pytest.raises(WebhookRefused, match=re.escape(PUBLIC)):
        check_webhook_target("http://hooks.example.com/x", allow_loopback=True, resolve=resolver(PUBLIC))
    with pytest.raises(WebhookRefused, match="https"):
        check_webhook_target("http://127.0.0.1:8080/x", resolve=resolver("127.0.0.1"))
    assert check_webhook_target(
        "http://localhost:8080/x", allow_loopback=True, resolve=resolver("127.0.0.1", "::1")
    ) == ["127.0.0.1", "::1"]


def test_unresolvable_host_is_refused():
    def no_such_host(*args: object, **kwargs: object) -> list[tuple]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(WebhookRefused, match=r"could not resolve webhook host 'nope\.invalid'"):
        check_webhook_target("https://nope.invalid/x", resolve=no_such_host)
    with pytest.raises(WebhookRefused, match="could not resolve"):
        check_webhook_target("https://empty.example.com/x", resolve=resolver())


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/x",
        "https:///x",
        "not a url",
        "https://user:pw@hooks.example.com/x",
        "https://hooks.example.com:99999/x",
    ],
)
def test_malformed_urls_are_refused(url):
    with pytest.raises(WebhookRefused):
        check_webhook_target(url, resolve=resolver(PUBLIC))


def test_refused_delivery_sends_nothing(receiver, secret):
    # The receiver is real and reachable, but the (injected) DNS answer is a private address.
    report, sleeps = deliver(receiver.url, secret, local_policy(), resolve=resolver("10.0.0.5"))
    assert not report.delivered and report.attempts == [] and sleeps == []
    assert report.refused is not None and "10.0.0.5" in report.refused

    # Real resolution of 127.0.0.1, but not in local mode: loopback (and plain http) are refused.
    report, _ = deliver(receiver.url, secret, local_policy(allow_loopback=False))
    assert not report.delivered and report.attempts == [] and report.refused
    assert receiver.requests == []


# ---------------------------------------------------------------------------------------------
# Bounded delivery
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def dripping_server(byte_every_s: float = 1.0, max_bytes: int = 12) -> Iterator[tuple[str, list[float]]]:
    """A raw socket server that reads the request, then answers one byte a second: every socket read
    of the client gets data well within a 2 s read timeout, so only a total deadline ends it. It
    stops after `max_bytes` (so code without a total deadline fails the test in seconds, not hangs)
    and records when each connection ended."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    closed: list[float] = []
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[:max_bytes]:
                    if stop.wait(byte_every_s):
                        break
                    conn.sendall(bytes([byte]))
            closed.append(time.monotonic())

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook", closed
    finally:
        stop.set()
        listener.close()


def test_a_receiver_dripping_one_byte_a_second_is_cut_off_at_the_attempt_deadline(secret):
    with dripping_server() as (url, _):
        t0 = time.monotonic()
        report, _ = deliver(url, secret, local_policy(timeout_s=2, max_attempts=1))
        elapsed = time.monotonic() - t0

    assert abs(elapsed - 2.0) <= 1.0, f"the attempt lasted {elapsed:.1f} s"
    [attempt] = report.attempts
    assert not report.delivered and attempt.status_code is None
    assert (attempt.error or "").startswith("DeadlineExceeded")
    assert abs(attempt.duration_ms / 1000 - 2.0) <= 1.0


def test_the_delivery_deadline_bounds_every_attempt_and_wait_together(secret):
    # Five attempts of 1 s each would take 5 s; the delivery has 2.5 s: two attempts fit, a third
    # could not end in time and is not started.
    policy = local_policy(timeout_s=1, max_attempts=5, initial_backoff_s=0.01, delivery_deadline_s=2.5)
    with dripping_server(byte_every_s=0.6) as (url, _):
        t0 = time.monotonic()
        report = deliver_webhook(url, BODY, msg_id=MSG_ID, secret=secret, policy=policy)
        elapsed = time.monotonic() - t0

    assert len(report.attempts) == 2 and not report.delivered
    assert elapsed <= 2.5 + 0.5, f"the delivery lasted {elapsed:.1f} s"


def test_several_secrets_sign_one_request_and_each_verifies(receiver):
    new, old, other = generate_secret(), generate_secret(), generate_secret()
    report, _ = deliver(receiver.url, [new, old], local_policy())

    assert report.delivered
    [req] = receiver.requests
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    # The library's verifier accepts a request whose signature list holds one for its secret.
    assert Webhook(new).verify(req.body, req.headers) == json.loads(BODY)
    assert Webhook(old).verify(req.body, req.headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(req.body, req.headers)


def test_deliveries_to_several_targets_run_at_once_each_with_its_own_secret(receiver):
    a, b = generate_secret(), generate_secret()
    targets = [
        WebhookTarget(url=receiver.url + "?token=one", secrets=(a,)),
        WebhookTarget(url=receiver.url + "?token=two", secrets=(b,)),
    ]
    receiver.delay_s = 0.5
    t0 = time.monotonic()
    reports = deliver_webhooks(targets, BODY, msg_id=MSG_ID, policy=local_policy())
    elapsed = time.monotonic() - t0

    assert [r.delivered for r in reports] == [True, True]
    assert elapsed < 1.0  # concurrent: two 0.5 s answers did not take 1 s in a row
    by_token = {r.path.split("token=")[1]: r for r in receiver.requests}
    Webhook(a).verify(by_token["one"].body, by_token["one"].headers)
    Webhook(b).verify(by_token["two"].body, by_token["two"].headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(b).verify(by_token["one"].body, by_token["one"].headers)


def test_reports_and_errors_never_keep_the_query_string(secret):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}/hook?token=s3cr3t#frag"

    report, _ = deliver(url, secret, local_policy(max_attempts=1))

    assert report.url == f"http://127.0.0.1:{port}/hook?redacted"
    assert "s3cr3t" not in report.model_dump_json()
    assert redact_url("https://h.example.com/x") == "https://h.example.com/x"


# ---------------------------------------------------------------------------------------------
# One lookup, pinned: the address checked is the address connected to
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Callable[..., list[tuple]]]]:
    """Install a scripted resolver as the delivery's `resolve` *and* as `socket.getaddrinfo`, which
    is what httpx's own lookup (asyncio's `loop.getaddrinfo`) ends in: any lookup but ours is seen.
    `answers(host, call_number)` gives the addresses, or None to hang (20 s, released at teardown)."""
    released = threading.Event()
    real = socket.getaddrinfo

    def install(answers: Callable[[str, int], list[str] | None]) -> Callable[..., list[tuple]]:
        calls: list[str] = []

        def resolve(host: str | bytes, port: int, *args: object, **kwargs: object) -> list[tuple]:
            host = host.decode("ascii") if isinstance(host, bytes) else host  # anyio passes IDNA bytes
            if host not in ("hooks.example.com", "hooks.test", "other.test"):
                return real(host, port, *args, **kwargs)  # an IP literal, localhost: not scripted
            calls.append(host)
            ips = answers(host, len(calls))
            if ips is None:
                released.wait(20)
                ips = [PUBLIC]
            return resolver(*ips)(host, port)

        resolve.calls = calls  # type: ignore[attr-defined]
        monkeypatch.setattr(socket, "getaddrinfo", resolve)
        return resolve

    yield install
    released.set()


def test_a_lookup_that_hangs_ends_the_delivery_at_its_deadline(secret, dns):
    resolve = dns(lambda host, n: None)  # a DNS server that never answers (20 s)
    policy = WebhookPolicy(timeout_s=3, delivery_deadline_s=3, max_attempts=1)
    t0 = time.monotonic()
    report = deliver_webhook(
        "https://hooks.example.com/hook", BODY, msg_id=MSG_ID, secret=secret, policy=policy, resolve=resolve
    )
    elapsed = time.monotonic() - t0

    assert abs(elapsed - 3.0) <= 1.0, f"the delivery lasted {elapsed:.1f} s"
    assert not report.delivered and report.attempts == []
    assert report.refused == "webhook host not resolved within 3 s"


def test_httpx_never_looks_the_host_up_again(receiver, secret, dns):
    # The reviewer's case: the check's lookup answers, a second one (httpx's, at connect time) takes
    # 20 s; a 3 s delivery took 20 s, because asyncio.run waits for the executor thread on exit.
    resolve = dns(lambda host, n: ["127.0.0.1"] if n == 1 else None)
    url = receiver.url.replace("127.0.0.1", "hooks.test")
    t0 = time.monotonic()
    report, _ = deliver(url, secret, local_policy(timeout_s=3, delivery_deadline_s=3), resolve=resolve)
    elapsed = time.monotonic() - t0

    assert report.delivered and elapsed < 3.0, f"the delivery lasted {elapsed:.1f} s"
    assert resolve.calls == ["hooks.test"]
    # The receiver at the checked address got the original Host header
    [req] = receiver.requests
    assert req.headers["host"] == url.split("/")[2] and req.path == "/hook"


def test_dns_rebinding_cannot_reach_loopback(secret, dns):
    """A public address for the check, 127.0.0.1 for any later lookup: the connection goes to the
    checked public address (unreachable here, so the attempt fails), never to the loopback listener."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    resolve = dns(lambda host, n: [PUBLIC] if n == 1 else ["127.0.0.1"])

    report, _ = deliver(
        f"https://hooks.example.com:{port}/hook",
        secret,
        WebhookPolicy(timeout_s=1, max_attempts=1),  # allow_loopback False: the cloud's setting
        resolve=resolve,
    )

    with pytest.raises(TimeoutError):
        listener.accept()  # nothing ever connected to loopback
    listener.close()
    assert not report.delivered and report.refused is None and len(report.attempts) == 1
    assert resolve.calls == ["hooks.example.com"]


def test_an_attempt_tries_every_checked_address_it_cannot_connect_to(receiver, secret, dns):
    # Two loopback addresses, nothing listening on the first (an AAAA record without a route, say):
    # one attempt, as a client that resolved the name itself would, reaches the second.
    port = int(receiver.url.split(":")[2].split("/")[0])
    dead = socket.socket()
    dead.bind(("127.0.0.2", port))  # bound, not listening: connection refused
    try:
        resolve = dns(lambda host, n: ["127.0.0.2", "127.0.0.1"])
        report, _ = deliver(
            f"http://hooks.test:{port}/hook", secret, local_policy(max_attempts=1), resolve=resolve
        )
    finally:
        dead.close()
    assert report.delivered and [a.ok for a in report.attempts] == [True]
    assert len(receiver.requests) == 1


def test_retries_start_at_the_next_checked_address(receiver, secret, dns):
    # The first address accepts and answers 503; the retry starts at the second address.
    port = int(receiver.url.split(":")[2].split("/")[0])
    seen: list[str] = []
    busy = socket.socket()
    busy.bind(("127.0.0.3", port))
    busy.listen()

    def answer_503() -> None:
        conn, _ = busy.accept()
        seen.append("127.0.0.3")
        conn.settimeout(2)
        request = b""
        while b"\r\n\r\n" not in request:  # the headers, then the whole body, before answering
            request += conn.recv(65536)
        head, _, body = request.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(body) < length:
            body += conn.recv(65536)
        conn.sendall(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        conn.close()

    thread = threading.Thread(target=answer_503, daemon=True)
    thread.start()
    try:
        resolve = dns(lambda host, n: ["127.0.0.3", "127.0.0.1"])
        report, _ = deliver(
            f"http://hooks.test:{port}/hook",
            secret,
            local_policy(max_attempts=2, initial_backoff_s=0.01),
            resolve=resolve,
        )
    finally:
        thread.join(5)
        busy.close()
    assert seen == ["127.0.0.3"] and len(receiver.requests) == 1
    assert report.delivered and [a.error for a in report.attempts] == ["HTTP 503", None]


def test_a_url_httpx_cannot_send_is_refused_up_front_and_spares_the_other_targets(receiver):
    # getaddrinfo encodes "☃.net" (IDNA 2003); httpx (IDNA 2008) refuses to build the URL. It used to
    # pass the check and then fail the whole notify run, the other target's delivery included.
    with pytest.raises(WebhookRefused, match="not valid"):
        check_webhook_target("https://☃.net/hook", resolve=resolver(PUBLIC))
    good, bad = generate_secret(), generate_secret()
    reports = deliver_webhooks(
        [
            WebhookTarget(url="https://☃.net/hook", secrets=(bad,)),
            WebhookTarget(url=receiver.url, secrets=(good,)),
        ],
        BODY,
        msg_id=MSG_ID,
        policy=local_policy(),
    )
    assert not reports[0].delivered and "not valid" in (reports[0].refused or "")
    assert reports[1].delivered and len(receiver.requests) == 1


def test_the_name_resolved_is_the_name_sent():
    # IDNA 2003 maps "straße" to "strasse"; httpx sends "xn--strae-oqa" (IDNA 2008): another domain.
    calls: list[str] = []
    check_webhook_target("https://straße.example/hook", resolve=resolver(PUBLIC, calls=calls))
    assert [host for host, _ in calls] == ["xn--strae-oqa.example"]
    _, headers, extensions = pinned_request("https://straße.example/hook", PUBLIC)
    assert headers["host"] == extensions["sni_hostname"] == "xn--strae-oqa.example"


def test_an_environment_proxy_is_never_used(receiver, secret, monkeypatch):
    # Through a CONNECT tunnel httpcore verifies TLS against the pinned address, not the host name:
    # deliveries go direct, whatever HTTP(S)_PROXY says.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens on the discard port
    report, _ = deliver(receiver.url, secret, local_policy(max_attempts=1))
    assert report.delivered


def test_pinned_request_keeps_the_host_for_http_and_tls():
    url, headers, extensions = pinned_request("https://Hooks.Example.com:8443/a/b?token=t", "2001:db8::1")
    assert str(url) == "https://[2001:db8::1]:8443/a/b?token=t"
    assert headers == {"host": "hooks.example.com:8443"}
    assert extensions == {"sni_hostname": "hooks.example.com"}
    url, headers, extensions = pinned_request("https://bücher.example/x", PUBLIC)
    assert str(url) == f"https://{PUBLIC}/x"
    assert headers == {"host": "xn--bcher-kva.example"} and extensions == {
        "sni_hostname": "xn--bcher-kva.example"
    }


# --- real TLS: a certificate for a name, served on 127.0.0.1 ---------------------------------------


@dataclass
class TlsServer:
    port: int
    ca: ssl.SSLContext
    """A client context that trusts the test CA (and checks host names, as httpx's default does)."""
    server_names: list[str | None]
    hosts: list[str]


@pytest.fixture
def tls_server() -> Iterator[TlsServer]:
    """An HTTPS server on 127.0.0.1 whose certificate (from a throwaway CA) names only hooks.test."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    now = datetime.now(UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "talkstack test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.test")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_names: list[str | None] = []
    hosts: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = f"{tmp}/leaf.pem", f"{tmp}/leaf.key"
        with open(cert_file, "wb") as f:
            f.write(leaf.public_bytes(serialization.Encoding.PEM))
        with open(key_file, "wb") as f:
            f.write(pem_key(leaf_key))
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(cert_file, key_file)
    server_context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    client_context = ssl.create_default_context(
        cadata=ca_cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    )

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hosts.append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format, *args) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield TlsServer(server.server_address[1], client_context, server_names, hosts)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_https_to_the_checked_address_verifies_the_certificate_against_the_host_name(tls_server, secret, dns):
    resolve = dns(lambda host, n: ["127.0.0.1"])
    policy = local_policy(max_attempts=1)

    async def send(url: str) -> DeliveryReport:
        async with httpx.AsyncClient(verify=tls_server.ca) as client:
            return await deliver_async(
                url, BODY, msg_id=MSG_ID, secret=secret, policy=policy, client=client, resolve=resolve
            )

    # Connected to 127.0.0.1, which the certificate does not name: only SNI and verification against
    # hooks.test can make this succeed.
    good = anyio.run(send, f"https://hooks.test:{tls_server.port}/hook")
    assert good.delivered, good.attempts
    assert tls_server.server_names == ["hooks.test"]
    assert tls_server.hosts == [f"hooks.test:{tls_server.port}"]

    # Same server, same address, another name: the certificate does not match it, so nothing is sent.
    bad = anyio.run(send, f"https://other.test:{tls_server.port}/hook")
    assert not bad.delivered and tls_server.hosts == [f"hooks.test:{tls_server.port}"]
    assert "CERTIFICATE_VERIFY_FAILED" in (bad.attempts[0].error or "")
    assert tls_server.server_names[-1] == "other.test"
