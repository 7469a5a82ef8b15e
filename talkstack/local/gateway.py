"""The local API Gateway: HTTP on localhost → REST API proxy events → the `api` Lambda handler.

moto emulates API Gateway's control plane only, so this plays its data plane: each request becomes
the event API Gateway's proxy integration sends (REST API, payload 1.0: path, httpMethod, headers
and multiValueHeaders, query strings, a base64 body for binary media such as multipart uploads,
requestContext), the handler module aws/lambda/api.py runs in process, and its proxy response goes
back as HTTP. One invocation at a time, as one Lambda instance serves one request at a time (and
powertools' resolver keeps the current event on the app). Bodies over Lambda's 6 MB payload get
413 here, as they would in AWS.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

log = logging.getLogger(__name__)
MAX_EVENT_BYTES = 6 * 1024 * 1024
TEXT_TYPES = ("application/json", "text/", "application/x-www-form-urlencoded")


class LambdaContextStub:
    """The attributes powertools reads from a Lambda context."""

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + 29  # API Gateway's integration timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def proxy_event(request: Request, stage: str = "local") -> dict[str, Any]:
    """The API Gateway REST proxy event for one HTTP request."""
    body = request.get_data(cache=False)
    content_type = request.headers.get("Content-Type", "")
    is_text = not body or content_type.startswith(TEXT_TYPES)
    headers = dict(request.headers.items())
    multi_headers: dict[str, list[str]] = {}
    for key, value in request.headers.items():
        multi_headers.setdefault(key, []).append(value)
    query = {k: v for k, v in request.args.items()} or None
    multi_query = {k: request.args.getlist(k) for k in request.args} or None
    return {
        "resource": "/{proxy+}",
        "path": request.path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": {"proxy": request.path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": request.method,
            "path": f"/{stage}{request.path}",
            "stage": stage,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {
                "sourceIp": request.remote_addr or "127.0.0.1",
                "userAgent": request.user_agent.string,
            },
            "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
        },
        "body": (body.decode("utf-8", "replace") if is_text else base64.b64encode(body).decode())
        if body
        else None,
        "isBase64Encoded": bool(body) and not is_text,
    }


def http_response(answer: dict[str, Any]) -> Response:
    body = answer.get("body") or ""
    data = base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()
    response = Response(data, status=int(answer.get("statusCode", 502)))
    for key, value in (answer.get("headers") or {}).items():
        response.headers[key] = str(value)
    for key, values in (answer.get("multiValueHeaders") or {}).items():
        response.headers.remove(key)
        for value in values:
            response.headers.add(key, str(value))
    return response


class LocalGateway:
    """`with LocalGateway(handler_for, port=4577): …` serves the API on http://127.0.0.1:4577."""

    def __init__(
        self,
        handler: Callable[[], Callable[[dict[str, Any], Any], dict[str, Any]]],
        host: str = "127.0.0.1",
        port: int = 4577,
        function_name: str = "api",
    ) -> None:
        self._handler, self.host, self.port, self.function_name = handler, host, port, function_name
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        if (request.content_length or 0) > MAX_EVENT_BYTES:
            response = Response(
                '{"error": {"code": "INPUT_TOO_LARGE", "message": "request body over the 6 MB Lambda '
                'payload limit; upload media through POST /v1/uploads", "details": {}}}',
                status=413,
                content_type="application/json",
            )
            return response(environ, start_response)
        event = proxy_event(request)
        with self._lock:
            try:
                answer = self._handler()(event, LambdaContextStub(self.function_name))
            except Exception:
                log.exception("the api handler crashed")
                answer = {
                    "statusCode": 502,
                    "headers": {"Content-Type": "application/json"},
                    "body": '{"message": "Internal server error"}',  # what API Gateway says then
                }
        return http_response(answer)(environ, start_response)

    def start(self) -> LocalGateway:
        self._server = make_server(self.host, self.port, self._wsgi, threaded=True)
        self.port = self._server.server_port  # port 0 → the one the OS chose
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-gateway", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LocalGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
