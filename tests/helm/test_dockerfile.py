"""The Dockerfile's structure (no container engine here to build it): a cached dependency
layer, a minimal non-root runtime stage, and the binary as entrypoint."""

import json
import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def instructions():
    """(instruction, argument) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages():
    result = []
    for word, arg in instructions():
        if word == "FROM":
            result.append({"from": arg, "steps": []})
        else:
            result[-1]["steps"].append((word, arg))
    return result


def test_multi_stage_with_a_minimal_runtime():
    s = stages()
    assert len(s) >= 2
    assert re.match(r"rust:\S+ AS builder$", s[0]["from"], re.I)
    runtime = s[-1]["from"]
    assert "rust" not in runtime
    assert runtime.startswith(("gcr.io/distroless/", "debian:")), runtime
    # The runtime stage gets the binary and nothing else.
    copies = [arg for word, arg in s[-1]["steps"] if word == "COPY"]
    assert copies == ["--from=builder /freshteam-operator /freshteam-operator"]


def test_dependencies_are_built_before_the_source_is_copied():
    steps = stages()[0]["steps"]
    builds = [i for i, (w, a) in enumerate(steps) if w == "RUN" and "cargo build" in a]
    source = [i for i, (w, a) in enumerate(steps) if w == "COPY" and a.startswith("src")]
    manifest = [i for i, (w, a) in enumerate(steps) if w == "COPY" and "Cargo.lock" in a]
    assert len(builds) == 2 and len(source) == 1 and len(manifest) == 1
    assert manifest[0] < builds[0] < source[0] < builds[1]
    for i in builds:
        assert "--locked" in steps[i][1] and "--release" in steps[i][1]
    # The dummy crate has every target Cargo.toml declares, or cargo refuses the manifest.
    dummy = steps[builds[0]][1]
    assert "src/main.rs" in dummy and "src/lib.rs" in dummy
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    for bench in cargo.get("bench", []):
        assert f"benches/{bench['name']}.rs" in dummy, bench["name"]
    # Cargo refuses a manifest whose declared targets are missing.
    for binary in cargo.get("bin", []):
        assert binary["path"] in dummy, binary["name"]
    # The real sources must be newer than the dummy build's outputs.
    assert "touch src/main.rs src/lib.rs" in steps[builds[1]][1]


def test_runs_as_a_numeric_non_root_user_with_the_binary_as_entrypoint():
    steps = dict(stages()[-1]["steps"])
    user = steps["USER"].split(":")
    assert all(part.isdigit() for part in user) and int(user[0]) != 0
    assert int(user[0]) == 65532  # the chart's runAsUser
    assert json.loads(steps["ENTRYPOINT"]) == ["/freshteam-operator"]
    assert json.loads(steps["CMD"]) == ["run"]
    assert steps["EXPOSE"] == "8080"  # the chart's metrics port


def test_dockerignore_keeps_the_context_small():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"target", ".venv", ".git", "demo-out"} <= ignored
    # What the build copies must not be ignored.
    assert not {"src", "benches", "Cargo.toml", "Cargo.lock"} & ignored


def test_only_the_operator_is_built_and_the_simulator_never_copied():
    steps = stages()[0]["steps"]
    builds = [a for w, a in steps if w == "RUN" and "cargo build" in a]
    assert all("-p freshteam-operator --bin freshteam-operator" in b for b in builds)
    # Cargo needs every workspace member's manifest (and its declared targets, as dummies),
    # but the simulator's code never enters the image's build.
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    copies = [a for w, a in steps if w == "COPY"]
    for member in cargo["workspace"]["members"]:
        if member != ".":
            assert f"{member}/Cargo.toml ./{member}/" in copies, member
            assert f"{member}/src/lib.rs" in builds[0] and f"{member}/src/main.rs" in builds[0]
            assert not any(c.startswith(f"{member} ") or c.startswith(f"{member}/src") for c in copies)
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"simulator/src", "simulator/tests"} <= ignored
