#!/usr/bin/env python3
"""End-to-end benchmark of `freshteam-operator sync`.

Starts the project's Freshteam simulator and a real scim2-server on loopback, runs a first
import, a steady-state full reconciliation and `--rounds` incremental runs, each after
changing --changed-percent of the current employees, for each size (all with one
--state-file), and prints, per run: wall time, the operator's CPU time and peak RSS,
requests per system against the protocol minimum (ceil(N / page) list pages + lookups),
and writes; then the median incremental run against the median full one.

    scripts/bench.py --sizes 1000,10000 [--page-size 37] [--bulk auto|off|both]
                     [--rate-limit 50 --window-ms 1000] [--no-reference]

After each steady state it also runs a plain sequential reference against the same two
services (Freshteam pages one by one, the SCIM list one page at a time, an in-memory
diff) and prints both side by side: the whole run, and the SCIM list alone, for each of
`--rounds` rounds (alternating which goes first) and their medians.
"""

import argparse
import json
import math
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-scim-token"
API_KEY = "bench-api-key"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, headers=None, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            urllib.request.urlopen(req, timeout=2).read()
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def http_json(url, method="GET", body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    if data:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


MANIFEST = """apiVersion: v1
kind: Secret
metadata: {{name: ft}}
stringData: {{apiKey: {api_key}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: scim}}
stringData: {{token: {token}}}
---
apiVersion: freshteam.provisioning.dev/v1alpha1
kind: FreshteamIntegration
metadata: {{name: bench}}
spec:
  source:
    subdomain: bench
    baseUrl: http://127.0.0.1:{sim_port}/api
    apiKeySecretRef: {{name: ft, key: apiKey}}
  destination:
    scim:
      url: http://127.0.0.1:{scim_port}/v2
      tokenSecretRef: {{name: scim, key: token}}
  mapping:
    email: official_email
    firstName: first_name
    lastName: last_name
    jobTitle: designation
    department: department
"""


def get_json(url, headers):
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read()), r.headers


def sequential_reference(sim_port, scim_port):
    """The plain way: every Freshteam page in turn, every SCIM page in turn, one diff."""
    start = time.perf_counter()
    ft = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
    departments, _ = get_json(f"http://127.0.0.1:{sim_port}/api/departments", ft)
    names = {d["id"]: d.get("name") for d in departments}
    employees, page = [], 1
    while True:
        batch, headers = get_json(f"http://127.0.0.1:{sim_port}/api/employees?page={page}", ft)
        employees.extend(batch)
        if not batch or page >= int(headers.get("total-pages") or page):
            break
        page += 1
    scim_start = time.perf_counter()
    sc = {"Authorization": f"Bearer {TOKEN}"}
    users, index = [], 1
    while True:
        body, _ = get_json(f"http://127.0.0.1:{scim_port}/v2/Users?startIndex={index}&count=1000", sc)
        batch = body.get("Resources", [])
        users.extend(batch)
        index += len(batch)
        if not batch or len(users) >= body.get("totalResults", 0):
            break
    scim_wall = time.perf_counter() - scim_start
    by_id = {u.get("externalId"): u for u in users}
    differ = 0
    for e in employees:
        u = by_id.get(e.get("employee_id"))
        ext = (u or {}).get("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", {})
        want = (e.get("official_email"), e.get("first_name"), e.get("last_name"),
                e.get("designation"), names.get(e.get("department_id")))
        have = u and (u.get("userName"), u.get("name", {}).get("givenName"),
                      u.get("name", {}).get("familyName"), u.get("title"), ext.get("department"))
        differ += want != have
    return {"wall": time.perf_counter() - start, "scim_list": scim_wall,
            "users": len(users), "differ": differ}


LISTED = re.compile(r"listed SCIM users.*?pages\S*?=\S*?(\d+).*?window\S*?=\S*?(\d+).*?elapsed_ms\S*?=\S*?(\d+)")


def touch(sim_port, people, percent):
    """Changes the job title of `percent` % of the current employees, evenly spread, in
    one `POST /_sim/touch` (each edit moves the employee's updated_at, as an edit in
    Freshteam does). Returns how many."""
    current = [e for e in people if e.get("status") == "active" and not e.get("terminated")
               and not e.get("deleted") and not e.get("draft")]
    count = max(1, round(len(current) * percent / 100))
    touched = http_json(f"http://127.0.0.1:{sim_port}/_sim/touch", method="POST",
                        body={"count": count, "field": "designation", "population": "current"})
    return len(touched["employee_ids"])


# Starts the measured command from a small fresh process and reports its wait4 usage:
# a process started straight from this one would inherit this one's (large, at 100k)
# peak RSS as its own, since exec keeps the high-water mark of the memory it replaces.
LAUNCHER = """import json, os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"cpu": ru.ru_utime + ru.ru_stime, "maxrss_kb": ru.ru_maxrss}, f)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_sync(binary, manifest, bulk, extra=()):
    """Runs sync as a grandchild and measures it with wait4 (CPU and peak RSS of it alone)."""
    start = time.perf_counter()
    env = dict(os.environ, RUST_LOG="warn,freshteam_operator::destination::scim=debug", NO_COLOR="1")
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile(suffix=".json") as usage_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, usage_file.name,
             binary, "sync", "--file", manifest, "--output", "json", "--bulk", bulk, *extra],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
        )
        # Read stdout to the end before waiting so a large JSON can't block the child.
        out = proc.stdout.read()
        code = proc.wait()
        wall = time.perf_counter() - start
        if code not in (0, 3):
            err.seek(0)
            sys.stderr.write(err.read().decode())
            raise SystemExit(f"sync exited {code}")
        with open(usage_file.name) as f:
            usage = json.load(f)
        err.seek(0)
        listed = LISTED.search(re.sub(r"\x1b\[[0-9;]*m", "", err.read().decode(errors="replace")))
    run = json.loads(out)
    return {
        "list_ms": int(listed.group(3)) if listed else None,
        "list_pages": int(listed.group(1)) if listed else None,
        "list_window": int(listed.group(2)) if listed else None,
        "wall": wall,
        "cpu": usage["cpu"],
        "rss_mb": usage["maxrss_kb"] / 1024,
        "run": run,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--page-size", type=int, default=37)
    ap.add_argument("--bulk", choices=["auto", "off", "both"], default="both")
    ap.add_argument("--rate-limit", type=int, default=None, help="simulator requests per window")
    ap.add_argument("--window-ms", type=int, default=1000)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "freshteam-operator"))
    ap.add_argument("--simulator", help="the freshteam-simulator binary (default: beside --binary)")
    ap.add_argument("--no-reference", action="store_true", help="skip the sequential reference")
    ap.add_argument("--changed-percent", type=float, default=1.0,
                    help="employees changed before the incremental run")
    ap.add_argument("--no-incremental", action="store_true",
                    help="skip the incremental run (first import and full steady state only)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="steady-state runs compared with as many reference runs (medians printed)")
    args = ap.parse_args()

    simulator = args.simulator or os.path.join(os.path.dirname(args.binary), "freshteam-simulator")
    for binary in (args.binary, simulator):
        if not os.path.exists(binary):
            raise SystemExit(f"{binary} missing: run `cargo build --release --workspace` first")
    scim_bin = os.path.join(ROOT, ".venv", "bin", "scim2-server")
    bulks = ["auto", "off"] if args.bulk == "both" else [args.bulk]

    rows = []
    comparisons = []
    incrementals = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for bulk in bulks:
            sim_port, scim_port = free_port(), free_port()
            sim_cmd = [simulator, "--port", str(sim_port), "--employees", str(size),
                       "--page-size", str(args.page_size), "--api-key", API_KEY]
            if args.rate_limit:
                sim_cmd += ["--rate-limit", str(args.rate_limit), "--window-ms", str(args.window_ms)]
            sim = subprocess.Popen(sim_cmd, stderr=subprocess.DEVNULL)
            scim = subprocess.Popen([scim_bin, "--port", str(scim_port), "--bearer-token", TOKEN],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_http(f"http://127.0.0.1:{sim_port}/_sim/requests")
                wait_http(f"http://127.0.0.1:{scim_port}/v2/ServiceProviderConfig",
                          {"Authorization": f"Bearer {TOKEN}"})
                with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
                    f.write(MANIFEST.format(api_key=API_KEY, token=TOKEN, sim_port=sim_port, scim_port=scim_port))
                    manifest = f.name
                # One pass per population, each at least one page, plus the lookup.
                people = http_json(f"http://127.0.0.1:{sim_port}/_sim/employees")
                def pages(pred):
                    return max(1, math.ceil(sum(1 for e in people if pred(e)) / args.page_size))
                minimum = (
                    pages(lambda e: e.get("status") == "active" and not e.get("terminated")
                          and not e.get("deleted"))
                    + pages(lambda e: e.get("status") == "inactive")
                    + pages(lambda e: e.get("terminated"))
                    + pages(lambda e: e.get("deleted"))
                    + pages(lambda e: e.get("draft"))
                    + 1
                )
                state = manifest + ".state.json"
                labels = ["first import", "steady state"]
                if not args.no_incremental:
                    # As many incremental rounds as full ones, each after its own 1 %
                    # touch: one run alone can catch a stall of the peer (scim2-server's
                    # listen backlog of 5 drops a connection now and then: 1 s).
                    labels += ["incremental"] * max(1, args.rounds)
                by_label = {}
                incr_rows = []
                for label in labels:
                    if label == "incremental":
                        changed = touch(sim_port, people, args.changed_percent)
                    http_json(f"http://127.0.0.1:{sim_port}/_sim/requests", method="DELETE")
                    # The first import starts the cursor, the steady state is a full
                    # reconciliation, the incremental run reads what changed since.
                    mode = {"first import": "auto", "steady state": "full", "incremental": "auto"}[label]
                    m = run_sync(args.binary, manifest, bulk, ["--state-file", state, "--mode", mode])
                    by_label[label] = m
                    if label == "incremental":
                        s = m["run"]["status"]
                        if s.get("mode") != "Incremental" or s["summary"].get("updated", 0) != changed:
                            raise SystemExit(f"the incremental run was {s.get('mode')} and updated "
                                             f"{s['summary'].get('updated')} of {changed} changed: {s.get('modeReason')}")
                    log = http_json(f"http://127.0.0.1:{sim_port}/_sim/requests")
                    calls = m["run"]["status"].get("apiCalls", {})
                    summary = m["run"]["status"]["summary"]
                    rows.append({
                        "size": size, "bulk": bulk, "run": label, "wall": m["wall"], "cpu": m["cpu"],
                        "rss": m["rss_mb"], "ft_requests": len(log), "ft_min": minimum,
                        "throttled": calls.get("freshteamThrottled", 0),
                        "scim_reads": calls.get("destinationReads", 0),
                        "scim_writes": calls.get("destinationWrites", 0),
                        "scim_bulk": calls.get("destinationBulk", 0),
                        "created": summary.get("created", 0), "unchanged": summary.get("unchanged", 0),
                        "kind": m["run"]["status"].get("mode", ""),
                    })
                    print_row(rows[-1], header=len(rows) == 1)
                    if label == "incremental":
                        incr_rows.append(rows[-1])
                    elif label != "first import":
                        full_row = rows[-1]
                    if label == "first import":
                        first_row = rows[-1]
                    if label == "steady state" and not args.no_reference:
                        # Rounds alternate which goes first, so a load that drifts while
                        # they run (other processes on the machine) favours neither side.
                        full = ["--state-file", state, "--mode", "full"]
                        syncs, refs = [m], []
                        for r in range(args.rounds):
                            if r % 2 == 0:
                                refs.append(sequential_reference(sim_port, scim_port))
                                if r > 0:
                                    syncs.append(run_sync(args.binary, manifest, bulk, full))
                            else:
                                syncs.append(run_sync(args.binary, manifest, bulk, full))
                                refs.append(sequential_reference(sim_port, scim_port))
                        comparisons.append((size, bulk, syncs, refs))
                if incr_rows:
                    incrementals.append((size, bulk, first_row, full_row, incr_rows))
                os.unlink(manifest)
                if os.path.exists(state):
                    os.unlink(state)
            finally:
                sim.terminate()
                scim.terminate()
                sim.wait()
                scim.wait()
    if comparisons:
        print()
        print("steady state, this project vs. a plain sequential reference of the same services:")
        print(f"{'employees':>9} {'bulk':>4} {'':<8} {'sync s':>7} {'ref s':>6} {'ratio':>6} "
              f"{'SCIM list s':>11} {'ref list s':>10} {'ratio':>6} {'pages':>5} {'window':>6}")
        for size, bulk, syncs, refs in comparisons:
            for i, (m, ref) in enumerate(zip(syncs, refs)):
                print_comparison(size, bulk, f"round {i + 1}", m, ref)
            if len(refs) > 1:
                med = lambda xs: statistics.median(xs)
                m = {"wall": med([x["wall"] for x in syncs]),
                     "list_ms": med([x["list_ms"] or float("nan") for x in syncs]),
                     "list_pages": syncs[-1]["list_pages"],
                     "list_window": max(x["list_window"] or 0 for x in syncs)}
                ref = {"wall": med([x["wall"] for x in refs]), "scim_list": med([x["scim_list"] for x in refs])}
                print_comparison(size, bulk, "median", m, ref)
            ref = refs[-1]
            print(f"  reference: {ref['users']} users listed; {ref['differ']} employees differ from "
                  f"their member or have none (inactive, or error rows in the import)")
    if incrementals:
        print()
        print(f"incremental run ({args.changed_percent:g} % changed; the median of its rounds) against the full reconciliation "
              "(targets: wall <= 0.1x, Freshteam requests <= 10 %; peak RSS at 100,000: first "
              "import <= 120 MB, any steady-state run <= 80 MB):")
        print(f"{'employees':>9} {'bulk':>4} {'full s':>7} {'incr s':>7} {'ratio':>6} "
              f"{'full FT':>7} {'incr FT':>7} {'ratio':>6} {'RSS first':>9} {'RSS full':>8} {'RSS incr':>8}")
        for size, bulk, first, full, incr_rows in incrementals:
            # The median incremental round; the highest peak RSS of them.
            incr = dict(sorted(incr_rows, key=lambda r: r["wall"])[len(incr_rows) // 2],
                        rss=max(r["rss"] for r in incr_rows))
            # Against the median of the full steady-state runs, when there were rounds.
            walls = [c["wall"] for (sz, b, syncs, _) in comparisons if (sz, b) == (size, bulk) for c in syncs]
            if walls:
                full = dict(full, wall=statistics.median(walls))
            wall = incr["wall"] / full["wall"]
            ft = incr["ft_requests"] / max(1, full["ft_requests"])
            print(f"{size:>9} {bulk:>4} {full['wall']:>7.2f} {incr['wall']:>7.2f} {wall:>5.3f}x "
                  f"{full['ft_requests']:>7} {incr['ft_requests']:>7} {ft:>5.1%} "
                  f"{first['rss']:>9.1f} {full['rss']:>8.1f} {incr['rss']:>8.1f}"
                  f"  {'ok' if wall <= 0.1 and ft <= 0.1 else 'OVER TARGET'}", flush=True)
    if args.rate_limit:
        for r in rows:
            floor = max(0, math.ceil(r["ft_min"] / args.rate_limit) - 1) * args.window_ms / 1000
            print(f"quota floor for {r['size']} ({r['run']}): {floor:.1f} s of waiting for "
                  f"{r['ft_min']} requests at {args.rate_limit}/{args.window_ms} ms; measured wall {r['wall']:.1f} s")


def print_comparison(size, bulk, label, m, ref):
    lst = m["list_ms"] / 1000 if m["list_ms"] is not None else float("nan")
    print(f"{size:>9} {bulk:>4} {label:<8} {m['wall']:>7.2f} {ref['wall']:>6.2f} {m['wall'] / ref['wall']:>5.2f}x "
          f"{lst:>11.2f} {ref['scim_list']:>10.2f} {lst / ref['scim_list']:>5.2f}x "
          f"{m['list_pages'] or 0:>5} {m['list_window'] or 0:>6}", flush=True)


def print_row(r, header):
    if header:
        print(f"{'employees':>9} {'bulk':>4} {'run':<13} {'wall s':>7} {'cpu s':>6} {'rss MB':>7} "
              f"{'FT req':>7} {'FT min':>7} {'429s':>4} {'SCIM rd':>7} {'SCIM wr':>7} {'bulk req':>8} "
              f"{'created':>7} {'unchanged':>9} {'mode':<11}")
    print(f"{r['size']:>9} {r['bulk']:>4} {r['run']:<13} {r['wall']:>7.2f} {r['cpu']:>6.2f} {r['rss']:>7.1f} "
          f"{r['ft_requests']:>7} {r['ft_min']:>7} {r['throttled']:>4} {r['scim_reads']:>7} "
          f"{r['scim_writes']:>7} {r['scim_bulk']:>8} {r['created']:>7} {r['unchanged']:>9} {r['kind']:<11}", flush=True)


if __name__ == "__main__":
    main()
