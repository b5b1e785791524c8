"""A SCIM service shaped like Reward Gateway's published behaviour, for the tests:
scim2-server's application, in-process, behind what Reward Gateway adds.

- Base URL `http://HOST:PORT/<programme-guid>/scim/v2` (anything else: 404).
- Rate limit: a fixed window per endpoint (the path with ids collapsed: `/Users`,
  `/Users/{id}`, `/ServiceProviderConfig`, `/Schemas`, `/Schemas/{id}`, ...) per client
  IP, `--limit` requests per `--window` seconds. A window opens with the first request
  to its endpoint and lasts `--window` seconds; the first request after it ends opens
  the next (windows are aligned to requests, not to the clock). Every answer, 429s
  included, carries `X-Rate-Limit-Limit`, `X-Rate-Limit-Remaining` and
  `X-Rate-Limit-Reset` (whole seconds until the window ends, rounded up). Past the
  limit: 429 with a SCIM error body and no `Retry-After`.
- No `/Bulk` (the service provider configuration says so; `/Bulk` answers 501).
- List pages of at most 100 (`filter.maxResults: 100`; a larger `count` is capped).
- Reward Gateway's member validation on every create, replace and patch (checked on
  the resulting member): first and last names 1-50 characters of Unicode letters,
  whitespace, hyphens, dots and apostrophes (`'`, `’`); e-mail addresses (`userName`
  and `emails[].value`) valid, 1-200 characters, no `<` or `>`. A refusal is 400 with
  `scimType: invalidValue` and a detail naming the field and the rule.
- Admin calls, outside the programme prefix and the budget (same bearer token):
  `GET /_admin/stats`, `POST /_admin/reset-stats`, `GET /_admin/users` (every user, for
  the tests to look without spending the budget), `POST /_admin/close-down` (deletes
  every inactive account, answers `{"deleted": N}`), `POST /_admin/delete?externalId=E`
  (deletes that account, as an administrator would by hand; 404 when absent).
"""

import math
import re
import threading
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

from scim2_models import InvalidValueException
from scim2_server.memory import InMemoryStorage, _key

import scim_wrap

PAGE_MAX = 100
NAME_MAX = 50
EMAIL_MAX = 200
NAME_RULE = (
    "must be 1-50 characters of letters, whitespace, hyphens, dots and "
    "apostrophes only"
)
EMAIL_RULE = "must be a valid e-mail address of 1-200 characters without < or >"
# PHP's FILTER_VALIDATE_EMAIL, close enough for the tests: dot-atom local part, a
# domain of at least two labels.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_RE = re.compile(rf"^{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})+$")


def name_problem(value: Any) -> bool:
    """Whether a first or last name breaks the published rule."""
    if not isinstance(value, str) or not 1 <= len(value) <= NAME_MAX:
        return True
    return any(not (c.isalpha() or c.isspace() or c in "'’-.") for c in value)


def email_problem(value: Any) -> bool:
    """Whether an e-mail address breaks the published rule."""
    if not isinstance(value, str) or not 1 <= len(value) <= EMAIL_MAX:
        return True
    return "<" in value or ">" in value or not EMAIL_RE.match(value)


def refusal(member: dict[str, Any]) -> str | None:
    """The detail of the first rule `member` (a SCIM User as JSON) breaks."""
    name = member.get("name") or {}
    for field in ("givenName", "familyName"):
        if field in name and name[field] is not None and name_problem(name[field]):
            return f"name.{field} {NAME_RULE}: {name[field]!r}"
    if email_problem(member.get("userName")):
        return f"userName {EMAIL_RULE}: {member.get('userName')!r}"
    for email in member.get("emails") or []:
        if email.get("value") is not None and email_problem(email["value"]):
            return f"emails.value {EMAIL_RULE}: {email['value']!r}"
    return None


class ValidatingStorage(InMemoryStorage):
    """scim2-server's storage, refusing what Reward Gateway refuses before storing."""

    def create(self, resource_type, resource):
        self._validate(resource)
        return super().create(resource_type, resource)

    def update(self, resource_type, resource, *, expected_version=None):
        self._validate(resource)
        return super().update(
            resource_type, resource, expected_version=expected_version
        )

    @staticmethod
    def _validate(resource) -> None:
        if resource.meta and resource.meta.resource_type not in (None, "User"):
            return
        detail = refusal(resource.model_dump(mode="json", by_alias=True))
        if detail:
            raise InvalidValueException(detail=detail)

    def dump(self) -> list[dict[str, Any]]:
        """Every user as JSON."""
        with self.lock:
            return [r.model_dump(mode="json", by_alias=True) for r in self.resources]

    def delete_where(self, keep) -> int:
        """Deletes every user for which `keep(user as JSON)` is false."""
        with self.lock:
            doomed = [
                r
                for r in self.resources
                if not keep(r.model_dump(mode="json", by_alias=True))
            ]
            for resource in doomed:
                self._remove(_key(resource))
            return len(doomed)


class FixedWindows:
    """Fixed-window counters per (client IP, endpoint)."""

    def __init__(self, limit: int, window: float):
        self.limit = limit
        self.window = window
        self.windows: dict[tuple[str, str], list[float]] = {}
        self.lock = threading.Lock()

    def take(self, key: tuple[str, str]) -> tuple[bool, list[tuple[str, str]]]:
        """Counts one request: whether it is within the limit, and the headers."""
        now = time.monotonic()
        with self.lock:
            start, count = self.windows.get(key, (None, 0))
            if start is None or now >= start + self.window:
                start, count = now, 0
            count += 1
            self.windows[key] = [start, count]
        reset = max(0, math.ceil(start + self.window - now))
        headers = [
            ("X-Rate-Limit-Limit", str(self.limit)),
            ("X-Rate-Limit-Remaining", str(max(0, self.limit - count))),
            ("X-Rate-Limit-Reset", str(reset)),
        ]
        return count <= self.limit, headers


class RewardGateway:
    """The WSGI application: admin calls, then the budget, then scim2-server."""

    def __init__(self, args):
        self.token = args.bearer_token
        self.prefix = f"/{args.programme}/scim"
        self.storage = ValidatingStorage()
        app = scim_wrap.scim_app(
            self.storage,
            self.token,
            config={
                "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
                "filter": {"supported": True, "maxResults": PAGE_MAX},
            },
            users_only=True,
        )
        self.scim = scim_wrap.mount(self.prefix, app)
        self.windows = FixedWindows(args.limit, args.window)
        self.stats = scim_wrap.Stats()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_admin/"):
            return self.admin(environ, start_response, path)
        if not path.startswith(self.prefix + "/"):
            return scim_wrap.error(start_response, 404, "no such programme")
        endpoint = scim_wrap.endpoint_of(path[len(self.prefix) :])
        method = environ["REQUEST_METHOD"]
        allowed, headers = self.windows.take(
            (environ.get("REMOTE_ADDR", ""), endpoint)
        )

        counted_start = scim_wrap.counted(
            self.stats, endpoint, method, start_response, headers
        )
        if not allowed:
            return scim_wrap.error(
                counted_start, 429, "Too many requests: rate limit exceeded"
            )
        return self.scim(environ, counted_start)

    def admin(self, environ, start_response, path):
        if not scim_wrap.check_token(environ, self.token):
            return scim_wrap.error(start_response, 401, "Authorization failure")
        method = environ["REQUEST_METHOD"]
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if path == "/_admin/stats" and method == "GET":
            return scim_wrap.answer(start_response, 200, self.stats.snapshot())
        if path == "/_admin/users" and method == "GET":
            return scim_wrap.answer(start_response, 200, self.storage.dump())
        if method != "POST":
            return scim_wrap.error(start_response, 405, "POST only")
        if path == "/_admin/reset-stats":
            self.stats.reset()
            return scim_wrap.answer(start_response, 200, {"reset": True})
        if path == "/_admin/close-down":
            deleted = self.storage.delete_where(lambda u: u.get("active") is not False)
            return scim_wrap.answer(start_response, 200, {"deleted": deleted})
        if path == "/_admin/delete" and query.get("externalId"):
            external_id = query["externalId"][0]
            deleted = self.storage.delete_where(
                lambda u: u.get("externalId") != external_id
            )
            status = 200 if deleted else 404
            return scim_wrap.answer(start_response, status, {"deleted": deleted})
        return scim_wrap.error(start_response, 404, "no such admin call")


def main() -> None:
    parser = scim_wrap.base_parser(
        "reward-gateway-peer", "A SCIM service shaped like Reward Gateway."
    )
    parser.add_argument("--limit", type=int, default=180, help="requests per window")
    parser.add_argument(
        "--window", type=float, default=900.0, help="window length in seconds"
    )
    parser.add_argument(
        "--programme",
        default=str(uuid.UUID(int=0x5EED_0000_0000_4000_8000_0000_0000_0023)),
        help="the programme GUID of the base URL",
    )
    args = parser.parse_args()
    app = RewardGateway(args)
    scim_wrap.serve(
        app,
        args.hostname,
        args.port,
        f"Serving SCIM on http://{args.hostname}:{args.port}{app.prefix}/v2",
    )


if __name__ == "__main__":
    scim_wrap.main_guard(main)
