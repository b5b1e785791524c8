"""Renders charts/freshteam-operator with the Helm SDK and prints its manifests as one JSON
list (for the e2e tests, which apply the chart's RBAC and run its Deployments' args).

    .venv/bin/python tests/cluster/render_chart.py RELEASE NAMESPACE 'VALUES-JSON'
"""

import json
import pathlib
import sys

import helm_python as helm
import yaml

CHART = pathlib.Path(__file__).resolve().parents[2] / "charts" / "freshteam-operator"

release, namespace, values = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
chart = helm.Chart.load(str(CHART))
try:
    files = chart.render(values=values, name=release, namespace=namespace)
finally:
    chart.close()
docs = []
for path, text in sorted(files.items()):
    if path.endswith("NOTES.txt"):
        continue
    docs.extend(d for d in yaml.safe_load_all(text) if d)
json.dump(docs, sys.stdout)
