"""Self-checks of the test peers in this folder: each behaves as its docstring says."""

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).parent
TOKEN = "peer-test-token"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
PROGRAMME = "0b7c2f3e-5a1d-4c8e-9f00-000000000023"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Peer:
    def __init__(self, script: str, *args: str, base: str = "/v2"):
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self.url = self.root + base
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / script), "--port", str(self.port),
             "--bearer-token", TOKEN, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        assert line.startswith("Serving SCIM on"), line
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)

    def call(self, method, path, body=None, root=False):
        """(status, headers, JSON body or None)."""
        request = urllib.request.Request(
            (self.root if root else self.url) + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {TOKEN}",
                "Content-Type": "application/scim+json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                status, headers, data = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            status, headers, data = e.code, e.headers, e.read()
        return status, headers, json.loads(data) if data else None

    def create(self, **user):
        status, _, body = self.call("POST", "/Users", {"schemas": [USER], **user})
        return status, body

    def stop(self):
        self.process.kill()
        self.process.wait()


@pytest.fixture
def rg(request):
    args = getattr(request, "param", ("--limit", "5", "--window", "1"))
    peer = Peer("reward_gateway.py", "--programme", PROGRAMME, *args,
                base=f"/{PROGRAMME}/scim/v2")
    yield peer
    peer.stop()


@pytest.fixture
def partial():
    peer = Peer("partial.py")
    yield peer
    peer.stop()


def member(n, given="Ada", family="Lovelace", email=None):
    email = email or f"member{n}@example.com"
    return {
        "userName": email,
        "externalId": f"E-{n}",
        "name": {"givenName": given, "familyName": family},
        "emails": [{"value": email, "type": "work", "primary": True}],
    }


def test_reward_gateway_announces_the_budget_and_answers_429_past_it(rg):
    for i in range(5):
        status, headers, _ = rg.call("GET", "/Users?count=1")
        assert status == 200
        assert headers["X-Rate-Limit-Limit"] == "5"
        assert headers["X-Rate-Limit-Remaining"] == str(4 - i)
        assert headers["X-Rate-Limit-Reset"] in ("0", "1")
    status, headers, body = rg.call("GET", "/Users?count=1")
    assert status == 429
    assert "Retry-After" not in headers
    assert headers["X-Rate-Limit-Remaining"] == "0"
    assert body["status"] == "429" and body["schemas"]
    # Another endpoint has its own window.
    assert rg.call("GET", "/Users/nobody")[0] == 404
    # The window ends in real time.
    time.sleep(1.05)
    status, headers, _ = rg.call("GET", "/Users?count=1")
    assert status == 200 and headers["X-Rate-Limit-Remaining"] == "4"
    stats = rg.call("GET", "/_admin/stats", root=True)[2]
    assert stats["endpoints"]["/Users"]["requests"] == 7
    assert stats["endpoints"]["/Users"]["throttled"] == 1
    one = stats["endpoints"]["/Users/{id}"]
    assert one["first"] == one["last"] > 0
    del one["first"], one["last"]
    assert one == {
        "requests": 1, "throttled": 0, "statuses": {"404": 1}, "methods": {"GET": 1}
    }
    users = stats["endpoints"]["/Users"]
    assert users["last"] - users["first"] >= 1.0
    assert stats["totals"]["requests"] == 8 and stats["totals"]["throttled"] == 1
    rg.call("POST", "/_admin/reset-stats", root=True)
    assert rg.call("GET", "/_admin/stats", root=True)[2]["totals"]["requests"] == 0


@pytest.mark.parametrize("rg", [("--limit", "1000", "--window", "60")], indirect=True)
def test_reward_gateway_validation_pages_and_no_bulk(rg):
    status, body = rg.create(**member(1, given="J0hn"))
    assert status == 400 and body["scimType"] == "invalidValue"
    assert "name.givenName" in body["detail"] and "letters" in body["detail"]
    status, body = rg.create(**member(2, family="x" * 51))
    assert status == 400 and "name.familyName" in body["detail"]
    status, body = rg.create(**member(3, email="a<b@example.com"))
    assert status == 400 and "userName" in body["detail"]
    status, body = rg.create(**member(4, email="a@" + "b" * 200 + ".com"))
    assert status == 400 and "e-mail" in body["detail"]
    status, body = rg.create(**member(5, given="Zoë-Anne O’Brien", family="St. John's"))
    assert status == 201, body
    # A patch that breaks a rule is refused too, and leaves the member as it was.
    op = {"op": "replace", "path": "name.familyName", "value": "Smith3"}
    status, _, body = rg.call("PATCH", f"/Users/{body['id']}",
                              {"schemas": [PATCH], "Operations": [op]})
    assert status == 400 and "name.familyName" in body["detail"]
    for n in range(6, 126):
        assert rg.create(**member(n))[0] == 201
    _, _, page = rg.call("GET", "/Users?startIndex=1&count=500")
    assert page["totalResults"] == 121 and len(page["Resources"]) == 100
    _, _, page = rg.call("GET", "/Users")
    assert len(page["Resources"]) == 100
    spc = rg.call("GET", "/ServiceProviderConfig")[2]
    assert spc["bulk"]["supported"] is False and spc["filter"]["maxResults"] == 100
    status, _, _ = rg.call("POST", "/Bulk", {"schemas": [
        "urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": []})
    assert status in (404, 501)
    stats = rg.call("GET", "/_admin/stats", root=True)[2]
    assert stats["endpoints"]["/Users"]["statuses"]["400"] == 4


@pytest.mark.parametrize("rg", [("--limit", "1000", "--window", "60")], indirect=True)
def test_reward_gateway_close_down_and_deletion_by_hand(rg):
    ids = [rg.create(**member(n))[1]["id"] for n in range(1, 4)]
    op = {"op": "replace", "path": "active", "value": False}
    rg.call("PATCH", f"/Users/{ids[0]}", {"schemas": [PATCH], "Operations": [op]})
    assert rg.call("POST", "/_admin/close-down", root=True)[2] == {"deleted": 1}
    assert rg.call("GET", f"/Users/{ids[0]}")[0] == 404
    assert rg.call("POST", "/_admin/delete?externalId=E-2", root=True)[0] == 200
    assert rg.call("GET", f"/Users/{ids[1]}")[0] == 404
    assert rg.call("POST", "/_admin/delete?externalId=E-2", root=True)[0] == 404
    assert rg.call("GET", f"/Users/{ids[2]}")[0] == 200
    stats = rg.call("GET", "/_admin/stats", root=True)[2]
    assert all(not e.startswith("/_admin") for e in stats["endpoints"])
    # Outside the programme prefix there is nothing.
    assert rg.call("GET", "/v2/Users", root=True)[0] == 404


def test_partial_refuses_attribute_path_patches_with_500(partial):
    status, body = partial.create(**member(1))
    assert status == 201
    path = f"/Users/{body['id']}"
    for attribute_path in ("name.familyName", 'emails[type eq "work"].value'):
        op = {"op": "replace", "path": attribute_path, "value": "x"}
        assert partial.call("PATCH", path, {"schemas": [PATCH], "Operations": [op]})[0] == 500
    op = {"op": "replace", "path": "name", "value": {"givenName": "Ada", "familyName": "King"}}
    assert partial.call("PATCH", path, {"schemas": [PATCH], "Operations": [op]})[0] in (200, 204)
    assert partial.call("GET", path)[2]["name"]["familyName"] == "King"
    stats = partial.call("GET", "/_admin/stats", root=True)[2]
    patches = stats["endpoints"]["/Users/{id}"]
    assert patches["methods"]["PATCH"] == 3 and patches["statuses"]["500"] == 2
    assert stats["totals"]["requests"] == 5


def test_partial_drops_what_it_does_not_keep_and_still_announces_it(partial):
    user = {**member(1), "title": "Engineer", "schemas": [USER, ENTERPRISE],
            ENTERPRISE: {"department": "R&D"}}
    status, _, created = partial.call("POST", "/Users", user)
    assert status == 201
    assert "title" not in created and ENTERPRISE not in created
    user["id"] = created["id"]
    status, _, replaced = partial.call("PUT", f"/Users/{created['id']}", user)
    assert status == 200 and "title" not in replaced
    op = {"op": "add", "path": "title", "value": "Boss"}
    partial.call("PATCH", f"/Users/{created['id']}", {"schemas": [PATCH], "Operations": [op]})
    assert "title" not in partial.call("GET", f"/Users/{created['id']}")[2]
    schemas = partial.call("GET", "/Schemas")[2]["Resources"]
    core = next(s for s in schemas if s["id"] == USER)
    assert any(a["name"] == "title" for a in core["attributes"])
    assert any(s["id"] == ENTERPRISE for s in schemas)


@pytest.mark.parametrize("mode", ["huge-total", "endless", "growing", "trickle"])
def test_hostile_lists(mode):
    peer = Peer("hostile.py", "--mode", mode)
    try:
        assert peer.call("GET", "/ServiceProviderConfig")[0] == 200
        first = peer.call("GET", "/Users?startIndex=1&count=100")[2]
        far = peer.call("GET", "/Users?startIndex=1000001&count=100")[2]
        if mode == "huge-total":
            assert first["totalResults"] == 10**12
        elif mode == "endless":
            assert "totalResults" not in first and "totalResults" not in far
        else:
            assert first["totalResults"] < far["totalResults"]
            assert far["totalResults"] > 1000001
        expected = 1 if mode == "trickle" else 100
        assert len(first["Resources"]) == len(far["Resources"]) == expected
        assert first["Resources"][0]["id"] != far["Resources"][0]["id"]
        assert peer.call("GET", '/Users?filter=externalId eq "E-1"'.replace(" ", "%20"))[2][
            "totalResults"] == 0
    finally:
        peer.stop()
