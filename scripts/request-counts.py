#!/usr/bin/env python3
"""Counts the requests `freshteam-operator sync` makes per run against one SCIM peer: a
first import, a steady-state full run, and an incremental run after 1 % of the current
employees changed (one --state-file throughout). With --baseline, a second binary runs
the same three runs against fresh peers and both are printed side by side.

Against the Reward Gateway-shaped service (tests/peers/reward_gateway.py, its limit set
high so nothing waits) it also counts per endpoint from the service's own stats and says
how many of Reward Gateway's 15-minute windows (180 requests per endpoint) each run needs.

    scripts/request-counts.py --peer reward-gateway|scim2-server|scimmy \\
        [--employees 1000 10000] [--binary BIN] [--baseline OLD_BIN] [--simulator SIM_BIN]
"""
import argparse, json, math, os, socket, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import free_port, http_json  # noqa: E402  (one copy of the HTTP helpers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUID = "3f6c1b2a-9d4e-4c7a-8b1f-23e0d5a7c923"
TOKEN = "count-scim-token"
KEY = "count-api-key"
RG_LIMIT, RG_WINDOW_MIN = 180, 15
RUNS = [
    ("first import", ["--mode", "auto"], False),
    ("steady state, full", ["--mode", "full"], False),
    ("incremental, 1 % changed", ["--mode", "incremental"], True),
]


def wait_port(port, seconds=30):
    end = time.time() + seconds
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on 127.0.0.1:{port}")


def call(url, method="GET", body=None, token=None):
    return http_json(url, method, body, {"Authorization": f"Bearer {token}"} if token else None)


def start_peer(peer, port):
    py = os.path.join(ROOT, ".venv/bin/python")
    if peer == "reward-gateway":
        cmd = [py, os.path.join(ROOT, "tests/peers/reward_gateway.py"), "--limit", "1000000",
               "--window", "900", "--programme", GUID]
        base = f"/{GUID}/scim/v2"
    elif peer == "scim2-server":
        cmd, base = [os.path.join(ROOT, ".venv/bin/scim2-server")], "/v2"
    else:
        cmd, base = ["node", os.path.join(ROOT, "scripts/scimmy-peer/server.mjs")], "/v2"
    cmd += ["--port", str(port), "--bearer-token", TOKEN]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), base


def manifest(sim, scim, peer):
    profile = "      profile: RewardGateway\n" if peer == "reward-gateway" else ""
    return f"""apiVersion: v1
kind: Secret
metadata: {{name: freshteam-acme}}
stringData: {{apiKey: {KEY}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: members-scim}}
stringData: {{token: {TOKEN}}}
---
apiVersion: freshteam.provisioning.dev/v1alpha1
kind: FreshteamIntegration
metadata: {{name: acme}}
spec:
  source:
    subdomain: acme
    baseUrl: {sim}
    apiKeySecretRef: {{name: freshteam-acme, key: apiKey}}
  destination:
    scim:
      url: {scim}
      tokenSecretRef: {{name: members-scim, key: token}}
{profile}  mapping: {{email: official_email, firstName: first_name, lastName: last_name, jobTitle: designation}}
"""


def measure(binary, simulator, peer, n):
    """Each run's (label, summary, apiCalls, peer stats or None, seconds)."""
    sim_port, scim_port = free_port(), free_port()
    sim = subprocess.Popen([simulator, "--port", str(sim_port), "--employees", str(n),
                            "--page-size", "100"], env=dict(os.environ, SIM_API_KEY=KEY),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scim, base = start_peer(peer, scim_port)
    try:
        wait_port(sim_port)
        wait_port(scim_port)
        root = f"http://127.0.0.1:{scim_port}"
        rows = []
        with tempfile.TemporaryDirectory() as d:
            path, state = os.path.join(d, "acme.yaml"), os.path.join(d, "state.json")
            with open(path, "w") as f:
                f.write(manifest(f"http://127.0.0.1:{sim_port}/api", root + base, peer))
            for label, args, touch in RUNS:
                if touch:
                    call(f"http://127.0.0.1:{sim_port}/_sim/touch", "POST",
                         {"count": max(1, n // 100), "population": "current"})
                if peer == "reward-gateway":
                    call(f"{root}/_admin/reset-stats", "POST", token=TOKEN)
                started = time.time()
                out = subprocess.run([binary, "sync", "--file", path, "--state-file", state,
                                      "--output", "json", *args], capture_output=True, text=True)
                took = time.time() - started
                try:
                    status = json.loads(out.stdout)["status"]
                except (ValueError, KeyError):
                    sys.exit(f"{binary} sync failed:\n{out.stderr[-2000:]}")
                stats = call(f"{root}/_admin/stats", token=TOKEN) if peer == "reward-gateway" else None
                rows.append((label, status["summary"], status.get("apiCalls", {}), stats, took))
    finally:
        for p in (sim, scim):
            p.terminate()
            p.wait()
    return rows


def scim_requests(calls):
    return sum(calls.get(k, 0) for k in ("destinationReads", "destinationWrites", "destinationBulk"))


def cell(calls):
    return (f"{scim_requests(calls):,} ({calls.get('destinationReads', 0):,} reads, "
            f"{calls.get('destinationWrites', 0):,} writes, {calls.get('destinationBulk', 0):,} bulk)")


def windows(stats):
    need = max((math.ceil(v["requests"] / RG_LIMIT) for v in stats["endpoints"].values()), default=0)
    least = "within the first window" if need <= 1 else f"≥ {(need - 1) * RG_WINDOW_MIN} min"
    per = ", ".join(f"`{e}` {v['requests']:,}" for e, v in sorted(stats["endpoints"].items()))
    return need, least, per


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", choices=["reward-gateway", "scim2-server", "scimmy"], default="reward-gateway")
    ap.add_argument("--employees", type=int, nargs="+", default=[1000, 10000])
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    ap.add_argument("--binary", default=os.path.join(target, "release/freshteam-operator"))
    ap.add_argument("--baseline", help="another build of freshteam-operator, printed beside --binary")
    ap.add_argument("--simulator", default=os.path.join(target, "release/freshteam-simulator"),
                    help="the freshteam-simulator binary (cargo build --release --workspace)")
    a = ap.parse_args()
    if a.baseline:
        print(f"SCIM requests per run against {a.peer} (reads include discovery and list pages)\n")
        print("| employees | run | created / updated | baseline | this build |")
        print("|---|---|---|---|---|")
    elif a.peer == "reward-gateway":
        print("| employees | run | created / updated | requests | per endpoint | 15-min windows at 180 | so it takes |")
        print("|---|---|---|---|---|---|---|")
    else:
        print("| employees | run | created / updated | SCIM requests |")
        print("|---|---|---|---|")
    for n in a.employees:
        rows = measure(a.binary, a.simulator, a.peer, n)
        base = measure(a.baseline, a.simulator, a.peer, n) if a.baseline else None
        for i, (label, s, calls, stats, _) in enumerate(rows):
            head = f"| {n:,} | {label} | {s.get('created', 0):,} / {s.get('updated', 0):,} |"
            if base:
                print(f"{head} {cell(base[i][2])} | {cell(calls)} |", flush=True)
            elif stats:
                need, least, per = windows(stats)
                print(f"{head} {stats['totals']['requests']:,} | {per} | {need} | {least} |", flush=True)
            else:
                print(f"{head} {cell(calls)} |", flush=True)


if __name__ == "__main__":
    main()
