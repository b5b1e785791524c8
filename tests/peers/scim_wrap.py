"""What the SCIM test peers built on scim2-server share: its WSGI application served
in-process (no second HTTP hop), mounted under a path prefix, with a storage the peer
can shape, and the small WSGI helpers the wrappers use.

scim2-server (PyPI) does the SCIM work: filters, PATCH, ETags, paging. A peer changes
only what its real counterpart does differently, in front of it (WSGI middleware) or
below it (a storage subclass)."""

import argparse
import io
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from scim2_models import ResourceType, ServiceProviderConfig, ScimProvider
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.testserver.application import (
    BEARER_TOKEN_SCHEME,
    BearerTokenApplication,
)
from scim2_server.testserver.cli import ThreadingWSGIServer
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def scim_app(
    storage: InMemoryStorage,
    token: str | None,
    config: dict[str, Any] | None = None,
    users_only: bool = False,
) -> BearerTokenApplication:
    """scim2-server's application over `storage`, with the default schemas, the
    service provider configuration changed by `config` (merged over the default), and
    only the User resource type when `users_only`."""
    spc = load_default_service_provider_config()
    if config:
        merged = {**spc.model_dump(), **config}
        spc = ServiceProviderConfig.model_validate(merged)
    if token:
        spc.authentication_schemes = [
            *(spc.authentication_schemes or []),
            BEARER_TOKEN_SCHEME,
        ]
    resource_types: Iterable[ResourceType] = load_default_resource_types().values()
    if users_only:
        resource_types = [rt for rt in resource_types if rt.name == "User"]
    provider = ScimProvider.from_discovery(
        load_default_schemas().values(), resource_types, config=spc
    )
    return BearerTokenApplication(
        storage,
        provider,
        service=ScimService(provider, secret="peer"),
        bearer_tokens=[token] if token else [],
    )


def mount(prefix: str, app: Callable) -> Callable:
    """Serves `app` under `prefix` (e.g. `/<guid>/scim`): its URLs (`Location`,
    `meta.location`) then carry the prefix. Anything else is a 404."""
    prefix = prefix.rstrip("/")

    def mounted(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not prefix:
            return app(environ, start_response)
        if path != prefix and not path.startswith(prefix + "/"):
            return error(start_response, 404, "no such programme")
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
        environ["PATH_INFO"] = path[len(prefix) :]
        return app(environ, start_response)

    return mounted


def error(
    start_response,
    status: int,
    detail: str,
    scim_type: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    """A SCIM error answer (RFC 7644 §3.12)."""
    body: dict[str, Any] = {
        "schemas": [ERROR_SCHEMA],
        "status": str(status),
        "detail": detail,
    }
    if scim_type:
        body["scimType"] = scim_type
    return answer(start_response, status, body, headers)


def answer(
    start_response,
    status: int,
    body: Any,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    """A JSON answer (`application/scim+json`)."""
    data = json.dumps(body).encode()
    phrase = HTTPStatus(status).phrase
    start_response(
        f"{status} {phrase}",
        [
            ("Content-Type", "application/scim+json"),
            ("Content-Length", str(len(data))),
            *(headers or []),
        ],
    )
    return [data]


def read_body(environ) -> bytes:
    """Reads the request body and puts it back, so the application reads it again."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def json_body(environ) -> Any:
    """The request body as JSON, or `None` when it is not."""
    try:
        return json.loads(read_body(environ) or b"null")
    except ValueError:
        return None


class QuietHandler(WSGIRequestHandler):
    """No access log line per request (the peers count requests themselves)."""

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


def serve(app: Callable, host: str, port: int, banner: str) -> None:
    """Serves `app` with scim2-server's own threaded server, until interrupted."""
    with make_server(
        host, port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler
    ) as server:
        print(banner, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every peer takes (the same as scim2-server's)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--hostname", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--bearer-token", help="the token every request must carry (none: any)"
    )
    return parser


def check_token(environ, token: str | None) -> bool:
    """Whether the request carries the bearer token (always, without one)."""
    if not token:
        return True
    scheme, _, given = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and given == token


def counted(stats: "Stats", endpoint: str, method: str, start_response, extra=()):
    """`start_response` that counts the answer's status in `stats` and adds `extra`
    headers."""

    def start(status, headers, exc_info=None):
        stats.count(endpoint, method, int(status.split()[0]))
        return start_response(status, [*headers, *extra], exc_info)

    return start


def main_guard(main: Callable[[], None]) -> None:
    try:
        main()
    except BrokenPipeError:
        sys.exit(0)


class Stats:
    """Requests and 429s per endpoint (and per status and method, and when the first
    and the last were answered, in seconds since the counts started), and totals: what
    `GET /_admin/stats` answers."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.started = time.monotonic()

    def count(self, endpoint: str, method: str, status: int) -> None:
        now = round(time.monotonic() - self.started, 3)
        with self.lock:
            entry = self.endpoints.setdefault(
                endpoint,
                {
                    "requests": 0,
                    "throttled": 0,
                    "statuses": {},
                    "methods": {},
                    "first": now,
                },
            )
            entry["last"] = now
            entry["requests"] += 1
            entry["throttled"] += status == 429
            entry["statuses"][str(status)] = entry["statuses"].get(str(status), 0) + 1
            entry["methods"][method] = entry["methods"].get(method, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            endpoints = json.loads(json.dumps(self.endpoints))
        totals: dict[str, Any] = {
            "requests": 0, "throttled": 0, "statuses": {}, "methods": {}
        }
        if endpoints:
            totals["first"] = min(e["first"] for e in endpoints.values())
            totals["last"] = max(e["last"] for e in endpoints.values())
        for entry in endpoints.values():
            totals["requests"] += entry["requests"]
            totals["throttled"] += entry["throttled"]
            for key in ("statuses", "methods"):
                for name, n in entry[key].items():
                    totals[key][name] = totals[key].get(name, 0) + n
        return {"endpoints": endpoints, "totals": totals}


def endpoint_of(path: str) -> str:
    """`/v2/Users/abc` → `/Users/{id}`: the path below the version, ids collapsed."""
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] == "v2":
        parts = parts[1:]
    if not parts:
        return "/"
    tail = [p if p.startswith(".") else "{id}" for p in parts[1:2]] + parts[2:]
    return "/" + "/".join([parts[0], *tail])
