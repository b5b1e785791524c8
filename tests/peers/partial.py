"""A partial SCIM service, for the tests: scim2-server's application, in-process, made
to behave like services that implement part of RFC 7644 and say nothing about it.

- A PATCH with any operation whose attribute path goes below an attribute (a sub-attribute
  `name.familyName`, or a value filter `emails[type eq "work"].value`) answers 500.
  Paths naming a whole attribute (`name`, `emails`, `active`, an extension URN
  followed by a plain attribute) work.
- Attributes it does not keep (`--drop`, default: `title` and the enterprise extension)
  are silently dropped on create, replace and patch, while `/Schemas` still announces
  them: only the stored resource (the answer to a write, or a read) shows it.
- No `/Bulk` (announced unsupported), so that every PATCH meets the check.
- Base URL `http://HOST:PORT/v2`, bearer token as scim2-server's.
- `GET /_admin/stats` counts requests per endpoint (ids collapsed), status and method;
  `POST /_admin/reset-stats` forgets them (both outside the counts, same token).
"""

import re
from typing import Any

from scim2_server.memory import InMemoryStorage

import scim_wrap

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
DEFAULT_DROPPED = ("title", ENTERPRISE)
# An attribute path, minus a leading schema URN (`urn:...:User:department`).
URN_PREFIX = re.compile(r"^urn:[^\[\]]*:")


def deep_path(path: Any) -> bool:
    """Whether a PATCH path names less than a whole attribute."""
    if not isinstance(path, str):
        return False
    attribute = URN_PREFIX.sub("", path) if path.startswith("urn:") else path
    return "." in attribute or "[" in attribute


class DroppingStorage(InMemoryStorage):
    """scim2-server's storage, forgetting the attributes it does not keep."""

    def __init__(self, dropped: tuple[str, ...]):
        super().__init__()
        self.dropped = dropped

    def create(self, resource_type, resource):
        return super().create(resource_type, self._drop(resource))

    def update(self, resource_type, resource, *, expected_version=None):
        return super().update(
            resource_type, self._drop(resource), expected_version=expected_version
        )

    def _drop(self, resource):
        data = resource.model_dump(mode="json", by_alias=True)
        if not any(name in data for name in self.dropped):
            return resource
        for name in self.dropped:
            data.pop(name, None)
        data["schemas"] = [s for s in data.get("schemas", []) if s not in self.dropped]
        kept = type(resource).model_validate(data)
        kept.meta = resource.meta
        return kept


class Partial:
    """The WSGI application: the PATCH check, then scim2-server."""

    def __init__(self, token: str | None, dropped: tuple[str, ...]):
        self.scim = scim_wrap.scim_app(
            DroppingStorage(dropped),
            token,
            # No /Bulk: every PATCH comes through the check above.
            config={"bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0}},
        )
        self.token = token
        self.stats = scim_wrap.Stats()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ["REQUEST_METHOD"]
        if path.startswith("/_admin/"):
            return self.admin(environ, start_response, path)
        start_response = scim_wrap.counted(
            self.stats, scim_wrap.endpoint_of(path), method, start_response
        )
        if method == "PATCH" and scim_wrap.check_token(
            environ, self.token
        ):
            body = scim_wrap.json_body(environ)
            operations = body.get("Operations") if isinstance(body, dict) else None
            if isinstance(operations, list) and any(
                isinstance(op, dict) and deep_path(op.get("path"))
                for op in operations
            ):
                return scim_wrap.error(start_response, 500, "Internal Server Error")
        return self.scim(environ, start_response)

    def admin(self, environ, start_response, path):
        if not scim_wrap.check_token(environ, self.token):
            return scim_wrap.error(start_response, 401, "Authorization failure")
        if path == "/_admin/stats":
            return scim_wrap.answer(start_response, 200, self.stats.snapshot())
        if path == "/_admin/reset-stats" and environ["REQUEST_METHOD"] == "POST":
            self.stats.reset()
            return scim_wrap.answer(start_response, 200, {"reset": True})
        return scim_wrap.error(start_response, 404, "no such admin call")


def main() -> None:
    parser = scim_wrap.base_parser(
        "partial-scim-peer", "A SCIM service that implements part of RFC 7644."
    )
    parser.add_argument(
        "--drop",
        action="append",
        help="an attribute (or extension URN) it does not keep; repeatable "
        "(default: title and the enterprise extension)",
    )
    args = parser.parse_args()
    app = Partial(args.bearer_token, tuple(args.drop or DEFAULT_DROPPED))
    scim_wrap.serve(
        app,
        args.hostname,
        args.port,
        f"Serving SCIM on http://{args.hostname}:{args.port}/v2",
    )


if __name__ == "__main__":
    scim_wrap.main_guard(main)
