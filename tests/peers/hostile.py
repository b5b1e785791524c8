"""A hostile SCIM service, for the tests: its discovery documents are those of a minimal
valid service, its `/Users` list is not. Needs nothing but Python's standard library.

Modes (`--mode`):
- `huge-total`: `totalResults` is 10^12 (`--total` changes it); every page is full
  (`count` users, at most 1000) of distinct, real-looking users.
- `endless`: every page is full of new users and no `totalResults` is given (RFC 7644
  requires it; this service never says how many there are), no page is ever short or
  empty: the list never ends.
- `growing`: every page is full of new users and `totalResults` is always one page
  beyond the page served (at least `--total`): the list grows as it is read, so a
  client that follows the latest total never ends, and one that keeps the first page's
  total ends early.
- `trickle`: every page holds one user whatever `count` asks; `totalResults` is at least
  `--total` (default 100,000) and always beyond the page served: it never ends either.

A filtered list (`filter=...`) finds nothing; `POST /Users` creates nothing but answers
201 with the user and an id; `GET /Users/{id}` is 404. Base URL `http://HOST:PORT/v2`,
bearer token as the other peers. `GET /_admin/stats` counts the requests.
"""

import argparse
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
MAX_RESULTS = 1000
FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances"]
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen"]


def attribute(name, kind="string", multi=False, subs=None, uniqueness="none"):
    spec = {
        "name": name,
        "type": kind,
        "multiValued": multi,
        "required": False,
        "caseExact": False,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": uniqueness,
    }
    if subs:
        spec["subAttributes"] = subs
    return spec


USER_SCHEMA = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
    "id": USER,
    "name": "User",
    "description": "User Account",
    "attributes": [
        attribute("userName", uniqueness="server"),
        attribute("externalId"),
        attribute("displayName"),
        attribute(
            "name",
            "complex",
            subs=[attribute("givenName"), attribute("familyName")],
        ),
        attribute(
            "emails",
            "complex",
            multi=True,
            subs=[attribute("value"), attribute("type"), attribute("primary", "boolean")],
        ),
        attribute("active", "boolean"),
    ],
    "meta": {"resourceType": "Schema", "location": f"/v2/Schemas/{USER}"},
}

USER_TYPE = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
    "id": "User",
    "name": "User",
    "endpoint": "/Users",
    "schema": USER,
    "meta": {"resourceType": "ResourceType", "location": "/v2/ResourceTypes/User"},
}

SERVICE_PROVIDER_CONFIG = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
    "patch": {"supported": True},
    "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
    "filter": {"supported": True, "maxResults": MAX_RESULTS},
    "changePassword": {"supported": False},
    "sort": {"supported": False},
    "etag": {"supported": False},
    "authenticationSchemes": [
        {
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a bearer token",
        }
    ],
    "meta": {"resourceType": "ServiceProviderConfig"},
}


def listing(resources, total, start=1):
    page = {
        "schemas": [LIST],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }
    if total is None:
        del page["totalResults"]
    return page


def user(n: int) -> dict:
    given = FIRST_NAMES[n % len(FIRST_NAMES)]
    family = LAST_NAMES[(n // len(FIRST_NAMES)) % len(LAST_NAMES)]
    return {
        "schemas": [USER],
        "id": f"{n:012d}",
        "externalId": f"H-{n}",
        "userName": f"{given}.{family}.{n}@hostile.example".lower(),
        "name": {"givenName": given, "familyName": family},
        "displayName": f"{given} {family}",
        "emails": [
            {"value": f"{given}.{family}.{n}@hostile.example".lower(), "primary": True}
        ],
        "active": True,
        "meta": {"resourceType": "User", "location": f"/v2/Users/{n:012d}"},
    }


def page(mode: str, total: int, start: int, count: int) -> dict:
    """The `/Users` page at `start` for `count`, in `mode`."""
    start = max(start, 1)
    size = 1 if mode == "trickle" else max(0, min(count, MAX_RESULTS))
    if mode == "huge-total":
        size = max(0, min(size, total - start + 1))
    elif mode == "endless":
        total = None
    else:
        # Always one page beyond this one: the list never ends.
        total = max(total, start - 1 + 2 * max(size, 1))
    return listing([user(start + i) for i in range(size)], total, start)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "HostileServer"

    def log_message(self, format, *args):  # noqa: A002
        pass

    def send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/scim+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def refuse(self, status: int, detail: str) -> None:
        self.send(status, {"schemas": [ERROR], "status": str(status), "detail": detail})

    def route(self) -> tuple[list[str], dict] | None:
        """The path below `/v2` and the query, once the token is checked."""
        url = urlsplit(self.path)
        if not url.path.startswith("/_admin/"):
            self.server.count()
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if self.server.token and (scheme.lower() != "bearer" or token != self.server.token):
            self.refuse(401, "Authorization failure")
            return None
        parts = [p for p in url.path.split("/") if p]
        if parts[:1] == ["v2"]:
            parts = parts[1:]
        return parts, parse_qs(url.query)

    def body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            return json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return {}

    def do_GET(self):
        routed = self.route()
        if routed is None:
            return
        parts, query = routed
        if parts == ["_admin", "stats"]:
            return self.send(200, {"requests": self.server.requests})
        if parts == ["ServiceProviderConfig"]:
            return self.send(200, SERVICE_PROVIDER_CONFIG)
        if parts == ["Schemas"]:
            return self.send(200, listing([USER_SCHEMA], 1))
        if parts == ["Schemas", USER]:
            return self.send(200, USER_SCHEMA)
        if parts == ["ResourceTypes"]:
            return self.send(200, listing([USER_TYPE], 1))
        if parts == ["ResourceTypes", "User"]:
            return self.send(200, USER_TYPE)
        if parts == ["Users"]:
            if "filter" in query:
                return self.send(200, listing([], 0))
            start = int((query.get("startIndex") or ["1"])[0])
            count = int((query.get("count") or [str(MAX_RESULTS)])[0])
            return self.send(200, page(self.server.mode, self.server.total, start, count))
        self.refuse(404, "Resource not found")

    def do_POST(self):
        routed = self.route()
        if routed is None:
            return
        body = self.body()
        if routed[0] == ["Users"]:
            body["id"] = uuid.uuid4().hex
            body["meta"] = {"resourceType": "User", "location": f"/v2/Users/{body['id']}"}
            return self.send(201, body)
        self.refuse(404, "Resource not found")

    def do_PUT(self):
        if self.route() is not None:
            self.body()
            self.refuse(404, "Resource not found")

    do_PATCH = do_PUT

    def do_DELETE(self):
        if self.route() is not None:
            self.refuse(404, "Resource not found")


class HostileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, mode: str, total: int, token: str | None):
        super().__init__(address, Handler)
        self.mode = mode
        self.total = total
        self.token = token
        self.requests = 0
        self.lock = threading.Lock()

    def count(self) -> None:
        with self.lock:
            self.requests += 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="hostile-scim-peer", description=__doc__)
    parser.add_argument("--hostname", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--bearer-token")
    parser.add_argument(
        "--mode",
        choices=["huge-total", "endless", "growing", "trickle"],
        required=True,
    )
    parser.add_argument("--total", type=int, help="the totalResults announced")
    args = parser.parse_args()
    defaults = {"huge-total": 10**12, "endless": 0, "growing": 0, "trickle": 100_000}
    total = args.total if args.total is not None else defaults[args.mode]
    server = HostileServer((args.hostname, args.port), args.mode, total, args.bearer_token)
    print(f"Serving SCIM on http://{args.hostname}:{args.port}/v2", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
