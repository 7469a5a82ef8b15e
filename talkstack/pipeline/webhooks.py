"""Signed webhook delivery for job events, following the Standard Webhooks spec (standardwebhooks.com).

Design:

- **Signing.** Every request carries `webhook-id`, `webhook-timestamp` and `webhook-signature`
  (HMAC-SHA256 over `id.timestamp.body`, computed by the `standardwebhooks` library rather than by
  hand, so any Standard Webhooks verifier accepts it). Secrets look like `whsec_<base64>`.
- **Stable id, fresh signature.** `webhook-id` is the event id and stays the same on every retry, so
  receivers can drop duplicates. The timestamp and signature are recomputed for each attempt:
  receivers reject timestamps older than a few minutes, and a late retry must still verify.
- **Several secrets.** During a rotation's overlap a request is signed with the new and the old
  secret: `webhook-signature` carries one `v1,<sig>` per secret, space-separated, and a verifier
  (the library's `Webhook.verify` included) accepts it if any one matches its secret.
- **Bounded in time.** Each attempt has a total deadline (`timeout_s`: connect, send, status line
  and headers together), enforced by an anyio cancel scope around httpx's async client, which
  closes the connection when it passes; httpx's own timeout only bounds each socket read, which a
  receiver dripping one byte a second never trips. Each delivery (every attempt and backoff) has a
  total deadline too (`delivery_deadline_s`): an attempt that could not end before it is not
  started. The host is looked up once, in a daemon thread that is abandoned if it does not answer
  within an attempt's deadline (an abandoned lookup holds nothing: no event loop waits for it), and
  httpx never resolves anything (see pinning below), so a slow DNS server cannot stretch a delivery.
  One event's deliveries to several targets run concurrently (`deliver_webhooks`).
- **Retries** (tenacity, exponential backoff with full jitter, capped by `WebhookPolicy`): transport
  errors (connect, timeout, read/write, connection dropped mid-response), HTTP 5xx, 408 and 429.
  Any other 4xx means the receiver rejected the event, so it is recorded and not retried. 3xx counts
  as a failure too: redirects are never followed, because the target of a redirect has not been
  through the SSRF check. `Retry-After` is not honoured; the backoff cap bounds every wait.
- **No tokens kept.** A report holds the URL with its query string redacted, and error lines
  never repeat the full URL: receivers put tokens in query strings.
- **Never fails a job.** `deliver_webhook` returns a `DeliveryReport` listing every attempt (status
  code or error, duration) instead of raising: a broken receiver must not turn a finished job into
  a failed one.
- **SSRF guard, pinned.** Before anything is sent, the host is resolved and refused if *any*
  address is private, loopback, link-local, multicast, reserved, unspecified, shared (100.64/10) or
  a cloud metadata endpoint, including IPv4 addresses wrapped in IPv6 (IPv4-mapped, 6to4, NAT64).
  Loopback is allowed only in local mode (`allow_loopback=True`), the one case where plain http is
  accepted. Each attempt then connects to one of *those checked addresses* (attempt n to the n-th,
  round robin), never to a fresh lookup: the request goes to `https://<address>:<port>/…` with the
  original `Host` header, and TLS uses the host name for SNI and for certificate verification
  (httpcore's `sni_hostname` request extension becomes `server_hostname` of the TLS handshake, and
  httpx's default SSL context checks the certificate against it). A DNS server that answers the
  check with a public address and the connection with a private one (DNS rebinding) gets no second
  question. Network-level egress rules (no route from the notifier to private ranges or the metadata
  endpoint) remain a backstop. Connections are pooled by address, so one client is never shared
  between deliveries to different hosts (each delivery makes its own).
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.from_thread
import anyio.lowlevel
import httpx
from pydantic import ConfigDict, Field, NonNegativeFloat, PositiveFloat, model_validator
from standardwebhooks import Webhook
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    wait_random_exponential,
)

from talkstack.contract.fields import StrictModel
from talkstack.contract.record import UtcDatetime, utc_now
from talkstack.pipeline.webhook_guard import (
    Resolver,
    WebhookRefused,
    check_webhook_target,
)
from talkstack.pipeline.webhook_signing import (
    generate_secret,
    sign_headers,
    signed_headers,
    signers,
)

__all__ = [
    "DEFAULT_WEBHOOK_POLICY",
    "DeliveryAttempt",
    "DeliveryReport",
    "WebhookPolicy",
    "WebhookRefused",
    "WebhookTarget",
    "check_webhook_target",
    "deliver_async",
    "deliver_webhook",
    "deliver_webhooks",
    "generate_secret",
    "pinned_request",
    "redact_url",
    "resolve_in_time",
    "sign_headers",
]

# 408 and 429 are the only 4xx that mean "try again later" rather than "this request is wrong".
RETRY_STATUSES = frozenset({408, 429})
_MAX_ERROR_CHARS = 300
_BACKSTOP_GRACE_S = 0.5
"""The delivery's backstop fires this long after its deadline, so that it never races the bounds
that end a lookup or an attempt at the deadline itself (and report why)."""


def redact_url(url: str) -> str:
    """The URL without its query string and fragment, for reports and log lines: receivers put
    tokens there (`?token=…`), and a token must not outlive the request in a record or a log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if not parts.query and not parts.fragment:
        return url
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "redacted" if parts.query else "", ""))


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


class WebhookPolicy(StrictModel):
    """How hard to try, and for how long at most. Frozen, so one default instance can be shared."""

    model_config = ConfigDict(frozen=True)

    max_attempts: int = Field(default=5, ge=1)
    """Attempts in all, the first one included."""
    initial_backoff_s: NonNegativeFloat = 1.0
    """Upper bound of the first (jittered) wait; the bound doubles after each attempt."""
    max_backoff_s: NonNegativeFloat = 30.0
    """Cap on the bound of any single wait."""
    timeout_s: PositiveFloat = 10.0
    """Total deadline of one attempt: connect, send, and the response's status line and headers,
    all together. A receiver that answers one byte at a time is cut off when it passes."""
    delivery_deadline_s: PositiveFloat = 120.0
    """Total deadline of one delivery: every attempt and every wait between them. No attempt starts
    that could not end before it, so a delivery never outlives it."""
    allow_loopback: bool = False
    """Local mode: allow loopback receivers (and plain http to them). Never on in the cloud."""

    @model_validator(mode="after")
    def _one_attempt_fits(self) -> WebhookPolicy:
        if self.delivery_deadline_s < self.timeout_s:
            raise ValueError(
                f"delivery_deadline_s ({self.delivery_deadline_s}) must be at least timeout_s "
                f"({self.timeout_s}): one attempt must fit in a delivery"
            )
        return self


DEFAULT_WEBHOOK_POLICY = WebhookPolicy()


class DeliveryAttempt(StrictModel):
    attempt: int = Field(ge=1)
    started_at: UtcDatetime
    duration_ms: NonNegativeFloat
    status_code: int | None
    """The receiver's HTTP status; None when no response came back."""
    error: str | None
    """One line, e.g. "ConnectError: [Errno 111] Connection refused" or "HTTP 503"; None on success."""
    ok: bool


class DeliveryReport(StrictModel):
    url: str
    """The target, its query string redacted (`?redacted`): tokens are not kept in records."""
    event_id: str
    """The `webhook-id` sent, identical on every attempt."""
    event_type: str | None
    delivered: bool
    refused: str | None
    """Why nothing was sent (`attempts` is then empty): the SSRF guard refused the URL, its host was
    not resolved in time, or the target is paused after repeated failures (`paused_until`)."""
    attempts: list[DeliveryAttempt]
    paused_until: UtcDatetime | None = None
    """The target was paused (talkstack.pipeline.webhook_breaker): no delivery before this time."""


@dataclass(frozen=True)
class WebhookTarget:
    """Where one event goes, and the secrets its requests are signed with (two during a rotation)."""

    url: str
    secrets: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    attempt: DeliveryAttempt
    retryable: bool
    connect_failed: bool = False
    """No connection was made (refused, unreachable, timed out connecting): nothing was sent."""


Sleep = Callable[[float], Awaitable[None] | None]
"""`anyio.sleep`, or a stand-in (tests record the waits instead of waiting); sync or async."""


def _one_line(exc: BaseException, url: str, *spellings: str) -> str:
    """The error in one line, any spelling of the URL (`spellings`: the pinned one) redacted."""
    text = " ".join(str(exc).split())
    for spelling in (url, *spellings):
        text = text.replace(spelling, redact_url(url))
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= _MAX_ERROR_CHARS else line[: _MAX_ERROR_CHARS - 1] + "…"


async def resolve_in_time(url: str, *, allow_loopback: bool, resolve: Resolver, within_s: float) -> list[str]:
    """`check_webhook_target` that answers within `within_s` whatever DNS does: the lookup runs in a
    daemon thread, abandoned (left to finish on its own, holding nothing) when time is up.

    Not the default executor (`loop.getaddrinfo`, what httpx would use) nor anyio's worker threads:
    `anyio.run` / `asyncio.run` wait for those on exit, so a 20 s lookup kept a 5 s delivery alive
    for 20 s. Raises `WebhookRefused` for a refused target and for a lookup that did not answer."""
    answer: Future[list[str]] = Future()
    answered = anyio.Event()
    token = anyio.lowlevel.current_token()

    def look_up() -> None:
        try:
            answer.set_result(check_webhook_target(url, allow_loopback=allow_loopback, resolve=resolve))
        except BaseException as exc:  # handed to the waiting task, which decides
            answer.set_exception(exc)
        # The loop may be gone (the lookup was abandoned and the delivery has ended): nothing to wake.
        with contextlib.suppress(Exception):
            anyio.from_thread.run_sync(answered.set, token=token)

    threading.Thread(target=look_up, name="webhook-dns", daemon=True).start()
    with anyio.move_on_after(within_s):
        await answered.wait()
    if not answer.done():
        raise WebhookRefused(f"webhook host not resolved within {within_s:g} s")
    return answer.result()


def pinned_request(url: str, address: str) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """The request that reaches `url`'s host at `address` (already checked) and nowhere else:
    the URL with the address as its host, the original `Host` header, and the host name for TLS
    (SNI and certificate verification) through httpcore's `sni_hostname` extension."""
    target = httpx.URL(url)
    return (
        target.copy_with(host=address),
        {"host": target.netloc.decode("ascii")},
        {"sni_hostname": target.raw_host.decode("ascii")},
    )


async def _post_once(
    client: httpx.AsyncClient,
    webhooks: Sequence[Webhook],
    url: str,
    address: str,
    body: str,
    msg_id: str,
    number: int,
    deadline_s: float,
    now: Callable[[], datetime],
) -> _Outcome:
    started_at = now()
    headers = signed_headers(webhooks, msg_id, started_at, body)
    t0 = time.monotonic()
    status: int | None = None
    error: str | None = None
    retryable = connect_failed = False
    pinned: httpx.URL | str = address
    try:
        # Inside the try: whatever one receiver's URL does, it fails this delivery only, never the
        # other targets of the event delivered beside it.
        pinned, host, extensions = pinned_request(url, address)
        # httpx's timeout bounds each socket operation, so a receiver that sends one byte at a time
        # would keep the attempt alive for ever; the cancel scope bounds the attempt as a whole and
        # closes the connection when it expires.
        with anyio.fail_after(deadline_s):
            # Stream and never read the body: only the status matters, and a hostile receiver could
            # otherwise make us buffer an arbitrarily large response. Redirects and the timeout are
            # set per request so that an injected client cannot loosen them.
            async with client.stream(
                "POST",
                pinned,
                content=body.encode("utf-8"),
                headers={**headers, **host},
                extensions=extensions,
                timeout=deadline_s,
                follow_redirects=False,
            ) as response:
                status = response.status_code
    except TimeoutError:
        error, retryable = f"DeadlineExceeded: no complete answer within {deadline_s:g} s", True
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing was sent: another address may do
        error, retryable, connect_failed = _one_line(exc, url, str(pinned)), True, True
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        error, retryable = _one_line(exc, url, str(pinned)), True
    except Exception as exc:  # anything else (bad URL for httpx, TLS setup, …) will not get better
        error = _one_line(exc, url, str(pinned))
    duration_ms = (time.monotonic() - t0) * 1000

    if status is not None and not 200 <= status < 300:
        error = f"HTTP {status}" + (" (redirect not followed)" if 300 <= status < 400 else "")
        retryable = status >= 500 or status in RETRY_STATUSES
    attempt = DeliveryAttempt(
        attempt=number,
        started_at=started_at,
        duration_ms=duration_ms,
        status_code=status,
        error=error,
        ok=error is None,
    )
    return _Outcome(attempt, retryable, connect_failed)


async def deliver_async(
    url: str,
    body: str,
    *,
    msg_id: str,
    secret: str | Sequence[str],
    policy: WebhookPolicy = DEFAULT_WEBHOOK_POLICY,
    event_type: str | None = None,
    client: httpx.AsyncClient | None = None,
    sleep: Sleep = anyio.sleep,
    resolve: Resolver = socket.getaddrinfo,
    now: Callable[[], datetime] = utc_now,
) -> DeliveryReport:
    """`deliver_webhook` inside a running event loop (several deliveries can share one loop)."""
    webhooks = signers(secret)
    started = time.monotonic()
    attempts: list[DeliveryAttempt] = []

    def report(refused: str | None = None) -> DeliveryReport:
        return DeliveryReport(
            url=redact_url(url),
            event_id=msg_id,
            event_type=event_type,
            delivered=bool(attempts) and attempts[-1].ok,
            refused=refused,
            attempts=attempts,
        )

    def no_time_for_another(state: RetryCallState) -> bool:
        # The next attempt would start after the wait and could last a whole timeout_s: if that
        # ends past the delivery deadline, stop now rather than be cut off mid-attempt.
        upcoming = state.upcoming_sleep or 0.0
        return time.monotonic() - started + upcoming + policy.timeout_s > policy.delivery_deadline_s

    async def wait(seconds: float) -> None:
        waited = sleep(seconds)
        if waited is not None:
            await waited

    http = (
        client
        if client is not None
        # trust_env=False: an HTTPS_PROXY tunnel would verify TLS against the pinned address, not the
        # host name (httpcore's CONNECT path ignores `sni_hostname`), and NO_PROXY would no longer
        # match a URL whose host is an address. Webhooks go direct; egress proxies are not supported.
        else httpx.AsyncClient(timeout=policy.timeout_s, follow_redirects=False, trust_env=False)
    )
    try:
        # A backstop: the lookup and every attempt are bounded on their own (below), within the
        # delivery deadline; anything unforeseen is cut just after it.
        with anyio.move_on_after(policy.delivery_deadline_s + _BACKSTOP_GRACE_S):
            try:
                # One lookup, within what one attempt may take: its addresses are the only ones
                # connected to, so its answer (checked) is the whole DNS story of the delivery.
                addresses = await resolve_in_time(
                    url,
                    allow_loopback=policy.allow_loopback,
                    resolve=resolve,
                    within_s=min(policy.timeout_s, policy.delivery_deadline_s),
                )
            except WebhookRefused as exc:
                return report(exc.reason)

            async def attempt_once() -> _Outcome:
                number = len(attempts) + 1
                attempt_started = time.monotonic()
                # Never past the delivery deadline, even for the first attempt after a slow lookup.
                budget = min(policy.timeout_s, policy.delivery_deadline_s - (attempt_started - started))
                # Each attempt starts at the next checked address (retries go round them) and, as a
                # client that resolved the name itself would, tries the others when no connection
                # could be made at all (an AAAA record with no IPv6 route, say) within its own time.
                first = (number - 1) % len(addresses)
                for address in addresses[first:] + addresses[:first]:
                    left = budget - (time.monotonic() - attempt_started)
                    outcome = await _post_once(
                        http, webhooks, url, address, body, msg_id, number, max(0.001, left), now
                    )
                    if not outcome.connect_failed or time.monotonic() - attempt_started >= budget:
                        break
                attempts.append(outcome.attempt)
                return outcome

            retrying = AsyncRetrying(
                stop=stop_after_attempt(policy.max_attempts) | no_time_for_another,
                wait=wait_random_exponential(multiplier=policy.initial_backoff_s, max=policy.max_backoff_s),
                retry=retry_if_result(lambda outcome: outcome.retryable),
                sleep=wait,
                # Out of attempts or of time: hand back the last outcome instead of raising RetryError.
                retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
            )
            await retrying(attempt_once)
    finally:
        if client is None:  # a caller's client is the caller's to close
            await http.aclose()
    return report()


def deliver_webhook(
    url: str,
    body: str,
    *,
    msg_id: str,
    secret: str | Sequence[str],
    policy: WebhookPolicy = DEFAULT_WEBHOOK_POLICY,
    event_type: str | None = None,
    client: httpx.AsyncClient | None = None,
    sleep: Sleep = anyio.sleep,
    resolve: Resolver = socket.getaddrinfo,
    now: Callable[[], datetime] = utc_now,
) -> DeliveryReport:
    """POST `body` (a JSON string) to `url`, signed with `secret` (or with each of several secrets),
    retrying per `policy`; the whole delivery ends within `policy.delivery_deadline_s`.

    Never raises for a refused URL or a failed delivery: the report says what happened. An invalid
    `secret` is a configuration bug, not a delivery failure, and raises ValueError before anything
    is sent. `sleep`, `resolve` and `now` are injectable so tests neither wait nor need DNS.
    """
    signers(secret)  # raise for a bad secret before any event loop or lookup
    return anyio.run(
        functools.partial(
            deliver_async,
            url,
            body,
            msg_id=msg_id,
            secret=secret,
            policy=policy,
            event_type=event_type,
            client=client,
            sleep=sleep,
            resolve=resolve,
            now=now,
        )
    )


def deliver_webhooks(
    targets: Sequence[WebhookTarget],
    body: str,
    *,
    msg_id: str,
    policy: WebhookPolicy = DEFAULT_WEBHOOK_POLICY,
    event_type: str | None = None,
    resolve: Resolver = socket.getaddrinfo,
) -> list[DeliveryReport]:
    """One event to several targets at once (a job's webhook and its key's endpoints), each with its
    own secrets: they run concurrently, so all of them together end within one delivery deadline.
    Reports come back in the order of `targets`."""
    for target in targets:
        signers(target.secrets)
    reports: list[DeliveryReport | None] = [None] * len(targets)

    async def run_all() -> None:
        # No shared client: connections are pooled by the pinned address, and two hosts behind one
        # address must not share a TLS connection made for the other's name.
        async def one(index: int, target: WebhookTarget) -> None:
            reports[index] = await deliver_async(
                target.url,
                body,
                msg_id=msg_id,
                secret=target.secrets,
                policy=policy,
                event_type=event_type,
                resolve=resolve,
            )

        async with anyio.create_task_group() as group:
            for index, target in enumerate(targets):
                group.start_soon(one, index, target)

    if targets:
        anyio.run(run_all)
    return [r for r in reports if r is not None]
