"""The Helm chart, linted and rendered with the Helm SDK (helm-python-sdk; no cluster):
what a default install creates, single-namespace mode, least-privilege RBAC, the hardened
pod, e-mail settings, shards, the alert rules and the dashboard, and the values schema."""

import json
import pathlib
import re
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
    # Adopting a user's on-demand run: its owner and integration label.
    ("freshteam.provisioning.dev", "importruns", "patch"),
    ("freshteam.provisioning.dev", "importruns", "delete"),
    ("freshteam.provisioning.dev", "importruns/status", "patch"),
    ("freshteam.provisioning.dev", "integrationstates", "get"),
    ("freshteam.provisioning.dev", "integrationstates", "create"),
    ("freshteam.provisioning.dev", "integrationstates", "update"),
    ("", "configmaps", "get"),
    ("", "configmaps", "create"),
    ("", "secrets", "get"),
    ("", "secrets", "list"),
    ("", "secrets", "watch"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
}
# Leader election: get, create, then updates at the resourceVersion read.
LEASE_RULES = {
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
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


# Shared-cluster mode: a Role in each listed namespace, nothing cluster-wide.
NAMESPACED = {"watch": {"scope": "namespaces", "namespaces": ["hr-acme", "hr-globex"]}}


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
        {
            "sharding": {"shards": ["s1", {"name": "s2", "replicaCount": 3}]},
            "metrics": {"serviceMonitor": {"enabled": True}},
            "alerts": {"prometheusRule": {"enabled": True, "alertLabels": {"team": "hr"}}},
            "dashboard": {"enabled": True},
        },
        {"sharding": {"shards": ["s1"], "defaultShard": False}, "watch": {"scope": "namespace"}},
        NAMESPACED,
        {"networkPolicy": {"enabled": True, "metricsFrom": [{"podSelector": {}}]}},
    ],
    ids=[
        "defaults",
        "single-namespace",
        "everything-on",
        "shards-alerts-dashboard",
        "named-shards-only",
        "listed-namespaces",
        "network-policy",
    ],
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


@pytest.mark.parametrize("values", [{}, NAMESPACED], ids=["cluster", "listed-namespaces"])
def test_no_rule_lets_the_operator_update_configmaps(chart, values):
    # Its state lives in its own group (integrationstates); ConfigMaps are only created
    # (run reports) and read.
    docs = render(chart, values)
    bound = bindings_of_service_account(docs)
    assert bound
    for b in bound:
        [role] = [
            r
            for r in of_kind(docs, b["roleRef"]["kind"])
            if r["metadata"]["name"] == b["roleRef"]["name"]
            and r["metadata"].get("namespace") == b["metadata"].get("namespace")
        ]
        rules = rule_set(role)
        assert not any(res == "configmaps" and verb in ("update", "patch", "delete") for _, res, verb in rules)
        # The operator updates nothing of its own group but its state, statuses and the
        # metadata of the on-demand runs it adopts.
        for group, res, verb in rules:
            if group == "freshteam.provisioning.dev" and verb in ("update", "patch"):
                assert res in ("integrationstates", "freshteamintegrations/status", "importruns/status", "importruns"), (res, verb)


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
    # Users with "edit" provision on demand: they create ImportRuns, never write their status.
    assert ("freshteam.provisioning.dev", "importruns", "create") in rule_set(edit)
    assert ("freshteam.provisioning.dev", "importruns/status", "patch") not in rule_set(edit)
    assert not any(res == "secrets" for _, res, _ in rule_set(view) | rule_set(edit))
    # The operator's state (e-mail addresses, the ledger) is not for users' roles.
    assert not any(res == "integrationstates" for _, res, _ in rule_set(view) | rule_set(edit))
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


def test_destinations_are_paced_by_the_default_rate_limit_when_set(chart):
    assert not any(a.startswith("--default-rate-limit") for a in container(render(chart))["args"])
    args = container(render(chart, {"operator": {"defaultRateLimit": "180/15m"}}))["args"]
    assert "--default-rate-limit=180/15m" in args


def test_authorizations_are_paced_at_the_configured_rate(chart):
    assert "--authorizations-per-second=10" in container(render(chart))["args"]
    args = container(render(chart, {"operator": {"authorizationsPerSecond": 2.5}}))["args"]
    assert "--authorizations-per-second=2.5" in args


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


def test_namespaces_mode_grants_roles_in_the_listed_namespaces_only(chart):
    docs = render(chart, NAMESPACED)
    roles = [r for r in of_kind(docs, "Role") if r["metadata"]["name"] == FULLNAME]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["hr-acme", "hr-globex"]
    for role in roles:
        assert rule_set(role) == OPERATOR_RULES
    bindings = [b for b in of_kind(docs, "RoleBinding") if b["metadata"]["name"] == FULLNAME]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["hr-acme", "hr-globex"]
    for b in bindings:
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": FULLNAME}
        assert b["subjects"] == [SERVICE_ACCOUNT]
    # Nothing cluster-wide for the operator: no ClusterRoleBinding of its account, and no
    # ClusterRole that reaches Secrets, ConfigMaps or its state. The only ClusterRoles are
    # the aggregated ones for users, bound to nobody here. The operator needs nothing
    # cluster-scoped (it reads no CRD, Namespace or Node), so the Roles are all it has.
    assert [b for b in bindings_of_service_account(docs) if b["kind"] == "ClusterRoleBinding"] == []
    assert of_kind(docs, "ClusterRoleBinding") == []
    assert sorted(r["metadata"]["name"] for r in of_kind(docs, "ClusterRole")) == [
        f"{FULLNAME}-edit",
        f"{FULLNAME}-view",
    ]
    for r in of_kind(docs, "ClusterRole"):
        assert any(k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in r["metadata"]["labels"])
        assert not any(
            res in ("secrets", "configmaps", "integrationstates") for _, res, _ in rule_set(r)
        ), r["metadata"]["name"]
    assert of_kind(render(chart, {**NAMESPACED, "rbac": {"aggregateToDefaultRoles": False}}), "ClusterRole") == []
    assert env(docs)["WATCH_NAMESPACE"] == {"name": "WATCH_NAMESPACE", "value": "hr-acme,hr-globex"}
    # Everything the account may do, added up: the operator's rules and its Lease.
    granted = set()
    for b in bindings_of_service_account(docs):
        [role] = [
            r
            for r in of_kind(docs, b["roleRef"]["kind"])
            if r["metadata"]["name"] == b["roleRef"]["name"]
            and r["metadata"].get("namespace") == b["metadata"]["namespace"]
        ]
        granted |= rule_set(role)
    assert granted == OPERATOR_RULES | LEASE_RULES


def test_namespaces_mode_refuses_an_empty_or_repeated_list(chart):
    with pytest.raises(helm.HelmError, match="needs watch.namespaces"):
        render(chart, {"watch": {"scope": "namespaces"}})
    with pytest.raises(helm.HelmError, match="lists a namespace twice"):
        render(chart, {"watch": {"scope": "namespaces", "namespaces": ["a", "a"]}})
    with pytest.raises(helm.HelmError, match="watch.namespaces is only used"):
        render(chart, {"watch": {"namespaces": ["a"]}})


def test_network_policy_only_when_enabled_and_it_limits_both_directions(chart):
    assert of_kind(render(chart), "NetworkPolicy") == []
    docs = render(chart, {"networkPolicy": {"enabled": True}})
    policy = one(docs, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == []
    [egress] = spec["egress"]
    assert "to" not in egress
    assert sorted((p["port"], p["protocol"]) for p in egress["ports"]) == [
        (25, "TCP"), (53, "TCP"), (53, "UDP"), (443, "TCP"), (465, "TCP"), (587, "TCP"), (6443, "TCP")
    ]
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    blocks = [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32", "10.0.0.0/8"]}}]
    spec = one(
        render(
            chart,
            {"networkPolicy": {"enabled": True, "metricsFrom": monitoring, "egressTo": blocks, "egressPorts": [{"port": 443}]}},
        ),
        "NetworkPolicy",
    )["spec"]
    assert spec["ingress"] == [{"from": monitoring, "ports": [{"port": "metrics", "protocol": "TCP"}]}]
    assert spec["egress"] == [{"ports": [{"port": 443, "protocol": "TCP"}], "to": blocks}]
    with pytest.raises(helm.HelmError):
        render(chart, {"networkPolicy": {"enabled": True, "egressPorts": [{"port": 0}]}})


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


# --- shards ------------------------------------------------------------------------------

SHARD_KEY = "sharding.freshteam.provisioning.dev/key"
SHARD_POD_LABEL = "sharding.freshteam.provisioning.dev/shard"
SHARDED = {"sharding": {"shards": ["s1", "s2"]}}


def deployments(docs):
    return {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}


def args_of(deployment):
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c["args"]


def flag(deployment, name):
    """The value of --name=value in the container's arguments; None when absent."""
    found = [a.split("=", 1)[1] for a in args_of(deployment) if a.startswith(f"--{name}=")]
    assert len(found) <= 1, found
    return found[0] if found else None


def test_default_install_is_one_unsharded_deployment(chart):
    docs = render(chart)
    (deployment,) = of_kind(docs, "Deployment")
    assert deployment["metadata"]["name"] == FULLNAME
    assert flag(deployment, "shard-selector") is None
    assert flag(deployment, "lease-name") == FULLNAME
    for labels in (
        deployment["metadata"]["labels"],
        deployment["spec"]["selector"]["matchLabels"],
        deployment["spec"]["template"]["metadata"]["labels"],
        one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ):
        assert SHARD_POD_LABEL not in labels


def test_named_shards_each_get_a_deployment_lease_and_selector(chart):
    docs = render(chart, SHARDED)
    by_name = deployments(docs)
    assert set(by_name) == {f"{FULLNAME}-default", f"{FULLNAME}-s1", f"{FULLNAME}-s2"}
    expected = {
        "default": (FULLNAME, f"{SHARD_KEY} notin (s1,s2)"),
        "s1": (f"{FULLNAME}-s1", f"{SHARD_KEY}=s1"),
        "s2": (f"{FULLNAME}-s2", f"{SHARD_KEY}=s2"),
    }
    for shard, (lease, selector) in expected.items():
        d = by_name[f"{FULLNAME}-{shard}"]
        # The default shard keeps the unsharded Lease, so it takes over from an unsharded leader.
        assert flag(d, "lease-name") == lease, shard
        assert flag(d, "shard-selector") == selector, shard
        assert d["spec"]["replicas"] == 2
        match = d["spec"]["selector"]["matchLabels"]
        assert match[SHARD_POD_LABEL] == shard
        assert d["metadata"]["labels"][SHARD_POD_LABEL] == shard
        pod_labels = d["spec"]["template"]["metadata"]["labels"]
        assert match.items() <= pod_labels.items()
    # No Deployment selects another shard's pods.
    for a in by_name.values():
        for b in by_name.values():
            if a is not b:
                sel = a["spec"]["selector"]["matchLabels"]
                assert not sel.items() <= b["spec"]["template"]["metadata"]["labels"].items()
    assert len({flag(d, "lease-name") for d in by_name.values()}) == 3


def test_every_shard_may_use_its_lease_and_nothing_else(chart):
    docs = render(chart, SHARDED)
    role = one(docs, "Role", f"{FULLNAME}-leader-election")
    assert rule_set(role) == LEASE_RULES
    leases = {flag(d, "lease-name") for d in of_kind(docs, "Deployment")}
    for rule in role["rules"]:
        if set(rule["verbs"]) == {"create"}:
            assert "resourceNames" not in rule
        else:
            assert sorted(rule["resourceNames"]) == sorted(leases)
            assert rule["resourceNames"] == [FULLNAME, f"{FULLNAME}-s1", f"{FULLNAME}-s2"]


def test_one_pdb_per_shard_and_one_service_for_all(chart):
    docs = render(chart, SHARDED)
    pdbs = {p["metadata"]["name"]: p for p in of_kind(docs, "PodDisruptionBudget")}
    by_name = deployments(docs)
    assert set(pdbs) == set(by_name)
    for name, d in by_name.items():
        assert pdbs[name]["spec"]["selector"] == d["spec"]["selector"]
        assert pdbs[name]["spec"]["maxUnavailable"] == 1
    # The metrics Service (and so the ServiceMonitor) reaches the pods of every shard.
    service = one(docs, "Service")
    for d in by_name.values():
        assert service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
    assert not of_kind(render(chart, {**SHARDED, "podDisruptionBudget": {"enabled": False}}), "PodDisruptionBudget")


def test_without_the_default_shard_only_named_shards_run(chart):
    docs = render(chart, {"sharding": {"shards": ["s1", "s2"], "defaultShard": False}})
    by_name = deployments(docs)
    assert set(by_name) == {f"{FULLNAME}-s1", f"{FULLNAME}-s2"}
    assert {flag(d, "shard-selector") for d in by_name.values()} == {f"{SHARD_KEY}=s1", f"{SHARD_KEY}=s2"}
    role = one(docs, "Role", f"{FULLNAME}-leader-election")
    named = [r for r in role["rules"] if "resourceNames" in r]
    assert named and all(r["resourceNames"] == [f"{FULLNAME}-s1", f"{FULLNAME}-s2"] for r in named)
    assert {p["metadata"]["name"] for p in of_kind(docs, "PodDisruptionBudget")} == set(by_name)
    notes = render_files(chart, {"sharding": {"shards": ["s1"], "defaultShard": False}})
    assert "There is no default shard" in notes["freshteam-operator/templates/NOTES.txt"]


def test_nothing_to_run_fails_at_install(chart):
    with pytest.raises(helm.HelmError, match="no operator would run"):
        render(chart, {"sharding": {"defaultShard": False}})


def test_a_shard_listed_twice_fails_at_install(chart):
    with pytest.raises(helm.HelmError, match="listed twice"):
        render(chart, {"sharding": {"shards": ["s1", {"name": "s1", "replicaCount": 3}]}})


def test_a_shard_name_too_long_for_the_deployment_fails_at_install(chart):
    with pytest.raises(helm.HelmError, match="longer than 63 characters"):
        render(chart, {"fullnameOverride": "f" * 40, "sharding": {"shards": ["s" * 30]}})


def test_per_shard_replicas_and_resources(chart):
    big = {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}}
    docs = render(
        chart,
        {
            "replicaCount": 3,
            "sharding": {"shards": ["s1", {"name": "s2", "replicaCount": 1, "resources": big}]},
        },
    )
    by_name = deployments(docs)
    assert by_name[f"{FULLNAME}-default"]["spec"]["replicas"] == 3
    assert by_name[f"{FULLNAME}-s1"]["spec"]["replicas"] == 3
    assert by_name[f"{FULLNAME}-s2"]["spec"]["replicas"] == 1
    default_resources = container(render(chart))["resources"]
    for name, resources in (("default", default_resources), ("s1", default_resources), ("s2", big)):
        (c,) = by_name[f"{FULLNAME}-{name}"]["spec"]["template"]["spec"]["containers"]
        assert c["resources"] == resources, name


def test_shards_share_the_rest_of_the_pod(chart):
    values = {**SHARDED, **SMTP_VALUES, "watch": {"scope": "namespace", "namespace": "hr"}}
    by_name = deployments(render(chart, values))
    pods = [d["spec"]["template"]["spec"] for d in by_name.values()]
    for pod in pods:
        (c,) = pod["containers"]
        assert {e["name"]: e for e in c["env"]}["WATCH_NAMESPACE"]["value"] == "hr"
        assert {e["name"] for e in c["env"]} >= {"SMTP_URL", "MAIL_FROM", "POD_NAME", "POD_NAMESPACE"}
        assert pod["serviceAccountName"] == FULLNAME
        assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_notes_list_the_shards(chart):
    notes = render_files(chart, SHARDED)["freshteam-operator/templates/NOTES.txt"]
    for text in (
        f"Deployment {FULLNAME}-s1",
        f"Lease {FULLNAME}-s2",
        f"labelled {SHARD_KEY}=s1",
        f"kubectl -n hr label fti acme {SHARD_KEY}=s1 --overwrite",
    ):
        assert text in notes, text
    assert "shard" not in render_files(chart)["freshteam-operator/templates/NOTES.txt"]


def test_service_monitor_labels_series_with_their_shard(chart):
    docs = render(chart, {**SHARDED, "metrics": {"serviceMonitor": {"enabled": True}}})
    endpoint = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    # The operator's "namespace" label (the integration's) wins over the target's.
    assert endpoint["honorLabels"] is True
    meta = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", SHARD_POD_LABEL)
    assert endpoint["relabelings"] == [
        {"targetLabel": "shard", "replacement": "default"},
        {"sourceLabels": [meta], "regex": "(.+)", "targetLabel": "shard", "replacement": "$1"},
    ]


# --- alert rules and dashboard -----------------------------------------------------------

METRICS_RS = ROOT / "src" / "telemetry" / "metrics.rs"
RULES = {"alerts": {"prometheusRule": {"enabled": True}}}
DASHBOARD = {"dashboard": {"enabled": True}}
ALERTS = {
    "FreshteamImportFailing",
    "FreshteamNoRecentSuccessfulImport",
    "FreshteamLeaversAwaitingApproval",
    "FreshteamAuthorizationLost",
    "FreshteamThrottlingSustained",
    "FreshteamReconcileErrors",
}


def exported_families():
    """{exposed family name: kind}, read from the registrations in src/telemetry/metrics.rs
    as prometheus-client names them: prefix, name, unit, and _total for counters."""
    src = METRICS_RS.read_text()
    prefix = re.search(r'Registry::with_prefix\("(\w+)"\)', src).group(1)
    aliases = dict(re.findall(r"\btype (\w+)\s*=\s*([^;]+);", src))
    bindings = {name: ann + rhs for name, ann, rhs in re.findall(r"\blet (\w+)([^=;]*)=([^;]+);", src)}
    families = {}
    for name, unit, var in re.findall(
        r'registry\.register(?:_with_unit)?\(\s*"(\w+)",\s*"(?:[^"\\]|\\.)*",\s*(?:Unit::(\w+),\s*)?(\w+)\.clone\(\)',
        src,
    ):
        binding = bindings[var]
        for alias, definition in aliases.items():
            binding = re.sub(rf"\b{alias}\b", definition, binding)
        kind = next(k for k in ("Histogram", "Counter", "Gauge") if k in binding)
        family = f"{prefix}_{name}" + (f"_{unit.lower()}" if unit else "")
        families[family + ("_total" if kind == "Counter" else "")] = kind
    return families


def exported_series_names():
    names = set()
    for family, kind in exported_families().items():
        if kind == "Histogram":
            names |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
        else:
            names.add(family)
    return names


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def metric_names(expr):
    """The metric names a PromQL expression (or a Grafana label_values query) selects."""
    e = re.sub(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", r"\1", expr, flags=re.S)
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)  # strings
    e = re.sub(r"\{[^}]*\}", " ", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)  # ranges
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)  # label lists
    e = re.sub(r"\$\{?\w+\}?", " ", e)  # Grafana variables
    names = set()
    for m in re.finditer(r"\d[\w.]*|[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        if word[0].isdigit() or word in PROMQL_WORDS or e[m.end() :].lstrip().startswith("("):
            continue  # a number or duration, a keyword, a function
        names.add(word)
    return names


def test_exported_metric_names_are_read_from_the_source():
    families = exported_families()
    # A guard for the parser itself: these are the families of src/telemetry/metrics.rs.
    assert families == {
        "freshteam_imports_total": "Counter",
        "freshteam_import_duration_seconds": "Histogram",
        "freshteam_members_changed_total": "Counter",
        "freshteam_api_requests_total": "Counter",
        "freshteam_api_throttled_total": "Counter",
        "freshteam_api_retries_total": "Counter",
        "freshteam_reconcile_errors_total": "Counter",
        "freshteam_reconciliations_total": "Counter",
        "freshteam_imports_running": "Gauge",
        "freshteam_import_queue_depth": "Gauge",
        "freshteam_last_successful_import_timestamp_seconds": "Gauge",
        "freshteam_leavers_awaiting_approval": "Gauge",
        "freshteam_authorized": "Gauge",
        "freshteam_destination_requests_total": "Counter",
        "freshteam_destination_throttled_total": "Counter",
        "freshteam_destination_budget_wait_seconds_total": "Counter",
    }
    # The reference's table of metrics names the same families.
    readme = (ROOT / "docs" / "reference.md").read_text()
    table = readme.split("### Metrics", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"`(freshteam_\w+)`", table)) == set(families)


def test_metric_name_extraction():
    assert metric_names('sum by (phase) (increase(freshteam_imports_total{phase="Failed", job=~"$job"}[$__interval]))') == {
        "freshteam_imports_total"
    }
    assert metric_names("time() - max(x_seconds offset 1h) > 172800 or vector(0)") == {"x_seconds"}
    assert metric_names('label_values(freshteam_authorized{job=~"$job"}, namespace)') == {"freshteam_authorized"}
    assert metric_names("histogram_quantile(0.95, sum by (le) (rate(a_bucket[5m]))) / on (x) b") == {"a_bucket", "b"}


def prometheus_rules(docs):
    (rule,) = of_kind(docs, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def dashboard_of(docs):
    (cm,) = [c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"] == f"{FULLNAME}-dashboard"]
    (text,) = cm["data"].values()
    return cm, json.loads(text)


def dashboard_queries(dashboard):
    """Every PromQL expression of the dashboard: panel targets and variable queries."""
    queries = []

    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dashboard["panels"]):
        queries += [(p["title"], t["expr"]) for t in p.get("targets", [])]
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            queries.append((f"${v['name']}", q))
    return queries


def test_rules_and_dashboard_only_when_enabled(chart):
    docs = render(chart)
    assert of_kind(docs, "PrometheusRule") == []
    assert [c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")] == []
    docs = render(chart, {**RULES, **DASHBOARD})
    assert len(of_kind(docs, "PrometheusRule")) == 1
    dashboard_of(docs)


def test_alert_rules(chart):
    docs = render(
        chart,
        {
            "alerts": {
                "prometheusRule": {
                    "enabled": True,
                    "labels": {"release": "prom"},
                    # The per-alert severity wins over a severity here.
                    "alertLabels": {"team": "hr", "severity": "page"},
                },
                "noRecentSuccessfulImport": {"expectedIntervalSeconds": 3600},
                "authorizationLost": {"severity": "critical", "for": "20m"},
                "throttlingSustained": {"ratePerSecond": 0.5},
            }
        },
    )
    (rule,) = of_kind(docs, "PrometheusRule")
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "prom"
    rules = {r["alert"]: r for r in prometheus_rules(docs)}
    assert set(rules) == ALERTS
    for name, r in rules.items():
        assert r["annotations"]["summary"] and r["annotations"]["description"], name
        assert r["labels"]["team"] == "hr", name
        assert r["labels"]["severity"] in ("warning", "critical"), name
    assert "freshteam_imports_total" in rules["FreshteamImportFailing"]["expr"]
    assert 'phase="Failed"' in rules["FreshteamImportFailing"]["expr"]
    # Twice the expected interval; the schedule is not a metric, so the interval is a value.
    no_success = rules["FreshteamNoRecentSuccessfulImport"]["expr"]
    assert "freshteam_last_successful_import_timestamp_seconds" in no_success
    assert no_success.rstrip().endswith("> 7200")
    assert "expectedIntervalSeconds" in rules["FreshteamNoRecentSuccessfulImport"]["annotations"]["description"]
    assert rules["FreshteamLeaversAwaitingApproval"]["for"] == "15m"
    assert "freshteam_leavers_awaiting_approval" in rules["FreshteamLeaversAwaitingApproval"]["expr"]
    assert rules["FreshteamAuthorizationLost"]["for"] == "20m"
    assert rules["FreshteamAuthorizationLost"]["labels"]["severity"] == "critical"
    assert rules["FreshteamAuthorizationLost"]["expr"].rstrip().endswith("== 0")
    assert rules["FreshteamThrottlingSustained"]["for"] == "30m"
    assert rules["FreshteamThrottlingSustained"]["expr"].rstrip().endswith("> 0.5")
    # The alert text templates reach Prometheus as they are, not expanded by Helm.
    assert "{{ $labels.integration }}" in rules["FreshteamImportFailing"]["annotations"]["summary"]


def test_default_alert_thresholds(chart):
    rules = {r["alert"]: r for r in prometheus_rules(render(chart, RULES))}
    assert rules["FreshteamNoRecentSuccessfulImport"]["expr"].rstrip().endswith("> 172800")
    assert rules["FreshteamAuthorizationLost"]["for"] == "10m"
    assert "[1h]" in rules["FreshteamImportFailing"]["expr"]


def test_alerts_can_be_turned_off_one_by_one_and_scoped(chart):
    values = {
        "alerts": {
            "prometheusRule": {"enabled": True, "matchers": 'job="fto-freshteam-operator"'},
            "throttlingSustained": {"enabled": False},
            "reconcileErrors": {"enabled": False},
        }
    }
    rules = prometheus_rules(render(chart, values))
    assert {r["alert"] for r in rules} == ALERTS - {"FreshteamThrottlingSustained", "FreshteamReconcileErrors"}
    for r in rules:
        selectors = re.findall(r"freshteam_\w+(\{[^}]*\})?", r["expr"])
        assert selectors and all('job="fto-freshteam-operator"' in s for s in selectors), r["expr"]


def test_every_promql_names_an_exported_metric(chart):
    allowed = exported_series_names()
    docs = render(chart, {**RULES, **DASHBOARD, **SHARDED})
    queries = [(r["alert"], r["expr"]) for r in prometheus_rules(docs)]
    queries += dashboard_queries(dashboard_of(docs)[1])
    assert len(queries) > 20
    used = set()
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= allowed, f"{where}: {sorted(names - allowed)} not exported by the operator"
        used |= names
    # The dashboard and the rules read the histogram the way it is exposed.
    assert "freshteam_import_duration_seconds_bucket" in used


def test_dashboard_config_map(chart):
    docs = render(chart, {"dashboard": {"enabled": True, "annotations": {"grafana_folder": "HR"}}})
    cm, dashboard = dashboard_of(docs)
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "HR"}
    assert cm["metadata"]["namespace"] == NAMESPACE
    assert dashboard == json.loads((CHART / "dashboards" / "freshteam.json").read_text())
    assert dashboard["uid"] and dashboard["title"]
    titles = {p["title"] for p in dashboard["panels"]}
    for title in (
        "Runs by phase",
        "Import duration",
        "Members changed by kind",
        "Throttling and retries",
        "Queue depth per shard",
        "Running imports per shard",
    ):
        assert title in titles, title
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "job", "shard", "namespace", "integration"} <= variables
    # Per-shard panels split by the ServiceMonitor's shard label.
    for p in dashboard["panels"]:
        if p["title"].endswith("per shard"):
            assert all("by (shard)" in t["expr"] for t in p["targets"]), p["title"]
    # Another sidecar label instead of the default one (null drops a default key).
    labels = {"grafana_dashboard": None, "dash": "yes"}
    docs = render(chart, {"dashboard": {"enabled": True, "labels": labels, "namespace": "monitoring"}})
    cm, _ = dashboard_of(docs)
    assert cm["metadata"]["labels"]["dash"] == "yes" and "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["namespace"] == "monitoring"


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
        {"sharding": {"shards": ["default"]}},
        {"sharding": {"shards": ["S1"]}},
        {"sharding": {"shards": ["s1", "s1"]}},
        {"sharding": {"shards": [{"name": "s1", "replicas": 2}]}},
        {"sharding": {"shards": [{"name": "s1", "resources": {"limits": {"memory": "lots"}}}]}},
        {"sharding": {"defaultShard": "yes"}},
        {"alerts": {"importFailing": {"window": "1 hour"}}},
        {"alerts": {"noRecentSuccessfulImport": {"expectedIntervalSeconds": "1d"}}},
        {"alerts": {"prometheusRule": {"enable": True}}},
        {"dashboard": {"enabled": "yes"}},
    ],
    ids=lambda v: json.dumps(v),
)
def test_schema_rejects_wrong_values(chart, values):
    with pytest.raises(helm.HelmValuesError):
        render(chart, values)
