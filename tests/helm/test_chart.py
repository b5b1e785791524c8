"""The Helm chart, linted and rendered with the Helm SDK (helm-python-sdk; no cluster):
what a default install creates, single-namespace mode, least-privilege RBAC, the hardened
pod, e-mail settings, and the values schema."""

import json
import pathlib
import tomllib

import helm_python as helm
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "freshteam-operator"
RELEASE = "fto"
NAMESPACE = "operators"
FULLNAME = "fto-freshteam-operator"
SERVICE_ACCOUNT = {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}

# Exactly the calls the controller makes (src/controller): nothing more.
OPERATOR_RULES = {
    ("freshteam.provisioning.dev", "freshteamintegrations", "get"),
    ("freshteam.provisioning.dev", "freshteamintegrations", "list"),
    ("freshteam.provisioning.dev", "freshteamintegrations", "watch"),
    ("freshteam.provisioning.dev", "freshteamintegrations/status", "patch"),
    ("freshteam.provisioning.dev", "importruns", "get"),
    ("freshteam.provisioning.dev", "importruns", "list"),
    ("freshteam.provisioning.dev", "importruns", "watch"),
    ("freshteam.provisioning.dev", "importruns", "create"),
    ("freshteam.provisioning.dev", "importruns", "delete"),
    ("freshteam.provisioning.dev", "importruns/status", "patch"),
    ("", "configmaps", "get"),
    ("", "configmaps", "create"),
    ("", "configmaps", "update"),
    ("", "secrets", "get"),
    ("", "secrets", "list"),
    ("", "secrets", "watch"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
}
# kube-leader-election: get, create, then merge patches to acquire and renew.
LEASE_RULES = {
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "patch"),
}

SMTP_VALUES = {
    "smtp": {
        "existingSecret": "operator-smtp",
        "urlKey": "url",
        "usernameKey": "username",
        "passwordKey": "password",
        "mailFrom": "Rewards <rewards@example.com>",
    }
}


@pytest.fixture(scope="module")
def chart():
    c = helm.Chart.load(str(CHART))
    yield c
    c.close()


def render_files(chart, values=None, namespace=NAMESPACE):
    return chart.render(values=values or {}, name=RELEASE, namespace=namespace)


def render(chart, values=None, namespace=NAMESPACE):
    """The manifests of an install, parsed (NOTES.txt left out)."""
    docs = []
    for path, text in sorted(render_files(chart, values, namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def of_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, name=FULLNAME):
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def rule_set(role):
    out = set()
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


def container(docs):
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return pod["containers"][0]


def env(docs):
    return {e["name"]: e for e in container(docs)["env"]}


def bindings_of_service_account(docs):
    return [
        b
        for b in of_kind(docs, "ClusterRoleBinding") + of_kind(docs, "RoleBinding")
        if SERVICE_ACCOUNT in b["subjects"]
    ]


# --- lint and metadata -------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"watch": {"scope": "namespace", "namespace": "hr"}},
        {
            **SMTP_VALUES,
            "metrics": {"serviceMonitor": {"enabled": True}},
            "emailTemplates": {"files": {"invitation.subject": "Welcome, {{first_name}}"}},
        },
    ],
    ids=["defaults", "single-namespace", "everything-on"],
)
def test_lint_strict_reports_no_warning_or_error(values):
    result = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
    assert result["errors"] == []
    # Severity 1 is informational (e.g. "icon is recommended"); 2 warning, 3 error.
    assert [m for m in result["messages"] if m["severity"] >= 2] == []


def test_chart_version_and_app_version_matches_cargo(chart):
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    assert chart.metadata["version"] == "0.1.0"
    assert chart.metadata["appVersion"] == cargo["package"]["version"]
    assert container(render(chart))["image"] == f"freshteam-operator:{cargo['package']['version']}"


def test_chart_crds_are_the_generated_crds(chart):
    crds = chart.crds
    assert [c["name"] for c in crds] == ["crds/freshteam.provisioning.dev.yaml"]
    assert crds[0]["data"] == (ROOT / "crds" / "freshteam.provisioning.dev.yaml").read_text()


# --- what an install creates -------------------------------------------------------------


def test_default_install_kinds(chart):
    docs = render(chart)
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == sorted(
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
    )
    for d in docs:
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"]["namespace"] == NAMESPACE, d["kind"]


def test_service_monitor_only_when_enabled(chart):
    assert of_kind(render(chart), "ServiceMonitor") == []
    docs = render(chart, {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}})
    sm = one(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert sm["spec"]["selector"]["matchLabels"] == one(docs, "Service")["spec"]["selector"]


def test_service_and_pdb_select_the_operator_pods(chart):
    docs = render(chart)
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    service = one(docs, "Service")
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    # Never both replicas away at once, and a drain is never blocked.
    assert pdb["spec"]["maxUnavailable"] == 1


# --- RBAC --------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [{}, {"watch": {"scope": "namespace"}}], ids=["cluster", "namespace"])
def test_rbac_has_no_wildcards_and_secrets_are_read_only(chart, values):
    docs = render(chart, values)
    roles = of_kind(docs, "ClusterRole") + of_kind(docs, "Role")
    assert roles
    for role in roles:
        for group, resource, verb in rule_set(role):
            assert "*" not in (group, resource, verb), role["metadata"]["name"]
            if resource == "secrets":
                assert verb in ("get", "list", "watch"), role["metadata"]["name"]
        for rule in role["rules"]:
            assert "nonResourceURLs" not in rule


def test_cluster_scope_grants_exactly_what_the_controller_calls(chart):
    docs = render(chart)
    role = one(docs, "ClusterRole")
    assert rule_set(role) == OPERATOR_RULES
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": FULLNAME,
    }
    assert binding["subjects"] == [SERVICE_ACCOUNT]
    assert one(docs, "ServiceAccount")["metadata"]["namespace"] == NAMESPACE
    assert container(docs)["name"] == "operator"
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == FULLNAME
    assert "WATCH_NAMESPACE" not in env(docs)


@pytest.mark.parametrize("watched", ["hr", ""], ids=["other-namespace", "release-namespace"])
def test_single_namespace_mode_uses_a_role_in_the_watched_namespace(chart, watched):
    docs = render(chart, {"watch": {"scope": "namespace", "namespace": watched}})
    ns = watched or NAMESPACE
    role = one(docs, "Role")
    assert role["metadata"]["namespace"] == ns
    assert rule_set(role) == OPERATOR_RULES
    binding = one(docs, "RoleBinding")
    assert binding["metadata"]["namespace"] == ns
    assert binding["roleRef"]["kind"] == "Role"
    assert binding["subjects"] == [SERVICE_ACCOUNT]
    assert env(docs)["WATCH_NAMESPACE"] == {"name": "WATCH_NAMESPACE", "value": ns}
    # Nothing cluster-wide for the operator itself (the aggregated ClusterRoles are for users).
    assert [b for b in bindings_of_service_account(docs) if b["kind"] == "ClusterRoleBinding"] == []
    assert FULLNAME not in [r["metadata"]["name"] for r in of_kind(docs, "ClusterRole")]


@pytest.mark.parametrize(
    "values", [{}, {"watch": {"scope": "namespace", "namespace": "hr"}}], ids=["cluster", "namespace"]
)
def test_lease_access_is_namespaced_in_the_release_namespace(chart, values):
    docs = render(chart, values)
    name = f"{FULLNAME}-leader-election"
    role = one(docs, "Role", name)
    assert role["metadata"]["namespace"] == NAMESPACE
    assert rule_set(role) == LEASE_RULES
    # Reads and patches only this release's Lease (create cannot be limited by name).
    for rule in role["rules"]:
        if set(rule["verbs"]) != {"create"}:
            assert rule["resourceNames"] == [FULLNAME]
    binding = one(docs, "RoleBinding", name)
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
    assert binding["subjects"] == [SERVICE_ACCOUNT]
    assert f"--lease-name={FULLNAME}" in container(docs)["args"]
    # No other grant mentions leases.
    for r in of_kind(docs, "ClusterRole") + of_kind(docs, "Role"):
        if r is not role:
            assert not any(res == "leases" for _, res, _ in rule_set(r))


def test_operator_account_has_only_its_two_bindings(chart):
    docs = render(chart)
    granted = set()
    for b in bindings_of_service_account(docs):
        granted |= rule_set(one(docs, b["roleRef"]["kind"], b["roleRef"]["name"]))
    assert granted == OPERATOR_RULES | LEASE_RULES


def test_aggregated_user_roles_can_be_turned_off(chart):
    docs = render(chart)
    view = one(docs, "ClusterRole", f"{FULLNAME}-view")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    edit = one(docs, "ClusterRole", f"{FULLNAME}-edit")
    assert ("freshteam.provisioning.dev", "freshteamintegrations/status", "patch") not in rule_set(edit)
    assert not any(res == "secrets" for _, res, _ in rule_set(view) | rule_set(edit))
    docs = render(chart, {"rbac": {"aggregateToDefaultRoles": False}})
    assert [r["metadata"]["name"] for r in of_kind(docs, "ClusterRole")] == [FULLNAME]


# --- the pod -----------------------------------------------------------------------------


def test_deployment_runs_two_hardened_replicas(chart):
    docs = render(chart)
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert isinstance(psc["runAsUser"], int) and psc["runAsUser"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(docs)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] != 0
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc.get("privileged", False) is False
    # Room for the operator's own shutdown grace period (25 s by default).
    assert pod["terminationGracePeriodSeconds"] > 25


def test_probes_port_and_resources(chart):
    c = container(render(chart))
    assert c["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert "--metrics-addr=0.0.0.0:8080" in c["args"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    for kind in ("requests", "limits"):
        assert set(c["resources"][kind]) >= {"cpu", "memory"}, kind


def test_command_line_and_environment(chart):
    docs = render(chart)
    c = container(docs)
    assert c["args"][0] == "run"
    assert "--allow-custom-endpoints" not in c["args"]
    e = env(docs)
    assert e["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert e["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert e["LOG_FORMAT"]["value"] in ("text", "json")
    for absent in ("SMTP_URL", "SMTP_USERNAME", "SMTP_PASSWORD", "MAIL_FROM", "TEMPLATES_DIR"):
        assert absent not in e


def test_custom_endpoints_only_when_allowed(chart):
    args = container(render(chart, {"operator": {"allowCustomEndpoints": True}}))["args"]
    assert "--allow-custom-endpoints" in args
    notes = render_files(chart, {"operator": {"allowCustomEndpoints": True}})
    assert "SSRF" in notes["freshteam-operator/templates/NOTES.txt"]


def test_smtp_settings_come_from_the_secret(chart):
    e = env(render(chart, SMTP_VALUES))
    for var, key in (("SMTP_URL", "url"), ("SMTP_USERNAME", "username"), ("SMTP_PASSWORD", "password")):
        assert e[var] == {"name": var, "valueFrom": {"secretKeyRef": {"name": "operator-smtp", "key": key}}}
    assert e["MAIL_FROM"] == {"name": "MAIL_FROM", "value": "Rewards <rewards@example.com>"}
    # User name and password are optional (they may be part of the URL).
    e = env(render(chart, {"smtp": {"existingSecret": "s", "mailFrom": "r@example.com"}}))
    assert e["SMTP_URL"]["valueFrom"]["secretKeyRef"] == {"name": "s", "key": "url"}
    assert "SMTP_USERNAME" not in e and "SMTP_PASSWORD" not in e


def test_a_watch_namespace_without_namespace_scope_fails_at_install(chart):
    with pytest.raises(helm.HelmError, match="watch.namespace is only used"):
        render(chart, {"watch": {"namespace": "hr"}})


def test_smtp_without_a_sender_fails_at_install(chart):
    with pytest.raises(helm.HelmError, match="smtp.mailFrom is required"):
        render(chart, {"smtp": {"existingSecret": "s"}})


def test_email_templates_from_values_are_mounted(chart):
    files = {"invitation.subject": "Welcome, {{first_name}}", "invitation.txt": "Hello\n"}
    docs = render(chart, {"emailTemplates": {"files": files}})
    cm = one(docs, "ConfigMap", f"{FULLNAME}-templates")
    assert cm["data"] == files
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "email-templates", "configMap": {"name": f"{FULLNAME}-templates"}}]
    c = container(docs)
    mount = "/etc/freshteam-operator/templates"
    assert c["volumeMounts"] == [{"name": "email-templates", "mountPath": mount, "readOnly": True}]
    assert env(docs)["TEMPLATES_DIR"]["value"] == mount
    # Templates are read at start-up: a change must roll the pods.
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    changed = render(chart, {"emailTemplates": {"files": {**files, "invitation.txt": "Hi\n"}}})
    assert (
        one(changed, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/email-templates"]
        != annotations["checksum/email-templates"]
    )


def test_email_templates_from_an_existing_config_map(chart):
    docs = render(chart, {"emailTemplates": {"existingConfigMap": "our-templates"}})
    assert of_kind(docs, "ConfigMap") == []
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["volumes"][0]["configMap"] == {"name": "our-templates"}


def test_notes_tell_the_next_steps(chart):
    notes = render_files(chart)["freshteam-operator/templates/NOTES.txt"]
    for step in (
        "create secret generic freshteam-acme",
        "create secret generic members-scim",
        "integration-unpublished.yaml",
        "get fti",
        "status.preview",
        '"published":true',
        "freshteam.provisioning.dev/import-requested-at",
        "E-mail is off",
    ):
        assert step in notes, step
    notes = render_files(chart, {"watch": {"scope": "namespace", "namespace": "people"}})[
        "freshteam-operator/templates/NOTES.txt"
    ]
    assert "-n people get fti" in notes


# --- values schema -----------------------------------------------------------------------


def test_schema_covers_every_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"

    # Kubernetes objects passed through as they are: typed where it matters, but open.
    passthrough = {"podSecurityContext", "securityContext"}

    def walk(value, node, path):
        assert node is not None, f"{path or 'values'}: not in values.schema.json"
        assert "type" in node or "oneOf" in node, path
        assert node.get("description") or not path or "." in path, f"{path}: no description"
        if isinstance(value, dict) and "properties" in node:
            if path.split(".")[0] in passthrough:
                assert "additionalProperties" not in node, path
            else:
                assert node.get("additionalProperties") is False, f"{path}: additionalProperties"
            for k, v in value.items():
                walk(v, node["properties"].get(k), f"{path}.{k}" if path else k)

    walk(values, schema, "")


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCount": "two"},
        {"replicaCount": 0},
        {"operator": {"allowCustomEndpoints": "yes"}},
        {"operator": {"logFormat": "xml"}},
        {"watch": {"scope": "everything"}},
        {"smtp": {"existingSecret": 3}},
        {"emailTemplates": {"files": {"invitation.subjet": "x"}}},
        {"resources": {"limits": {"memory": "lots"}}},
        {"image": {"pullPolicy": "Sometimes"}},
        {"replicas": 2},
    ],
    ids=lambda v: json.dumps(v),
)
def test_schema_rejects_wrong_values(chart, values):
    with pytest.raises(helm.HelmValuesError):
        render(chart, values)
