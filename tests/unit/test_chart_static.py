"""The Helm chart without a cluster: lint, render, schema, security, RBAC, alerts, dashboard, CRD copy.

Needs the cached `helm` binary (`make binaries`); promtool (Debian prometheus) checks the alert rules.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from strategy_rollouts.dashboard import server
from strategy_rollouts.engine.allowlist import AllowList, allowed
from strategy_rollouts.main import operator_settings
from strategy_rollouts.main import parser as operator_parser
from strategy_rollouts.read.prometheus import Connection

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "strategy-rollouts"
ALL_ON = [
    "--set",
    "prometheusRule.enabled=true",
    "--set",
    "grafanaDashboard.enabled=true",
    "--set",
    "metrics.serviceMonitor.enabled=true",
]


@cache
def helm_binary() -> str:
    from devcluster.cluster import expected_bin_dir

    path = expected_bin_dir() / "helm"
    assert path.exists(), f"{path} missing: run `make binaries` (make test does)"
    return str(path)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, check=check)


@cache
def _render(args: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    out = helm("template", "sr", str(CHART), "--namespace", "ops", *args).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def render(*args: str) -> list[dict[str, Any]]:
    return list(_render(tuple(args)))


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{kind}: {len(found)}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


@pytest.mark.parametrize(
    "values",
    [[], ALL_ON, ["--set", "watchNamespaces={trading,trading-staging}", *ALL_ON]],
    ids=["defaults", "all-features", "namespaced"],
)
def test_helm_lint_strict(values: list[str]) -> None:
    result = helm("lint", "--strict", str(CHART), *values, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "leaderElection.enabled=false"], "leaderElection.enabled"),
        (["--set", "podAntiAffinity=required"], "podAntiAffinity"),
        (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (["--set", "surprise=1"], "surprise"),
        (["--set", "watchNamespaces={Not_A_Namespace}"], "watchNamespaces"),
        (["--set", "prometheus.url=prometheus:9090"], "url"),
        (["--set", "prometheusRule.alerts.heldTooLong.for=half an hour"], "for"),
    ],
)
def test_bad_values_are_rejected_with_a_message(values: list[str], message: str) -> None:
    result = helm("template", "sr", str(CHART), *values, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_default_render_is_minimal() -> None:
    docs = render()
    assert kinds(docs) == sorted(
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Service",
            "Deployment",
            # the status admission policies, one per kind with a status, and their parameter
            *["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"] * 3,
            "ConfigMap",
            *["ClusterRole"] * 3,  # strategy-rollouts-operate, -approve, -risk
            "Role",  # leader election: the Lease, its Role and binding
            "RoleBinding",
            "Lease",
            "PodDisruptionBudget",
            "Secret",  # the admission webhook's TLS, its Service and configuration
            "Service",
            "ValidatingWebhookConfiguration",
        ]
    )
    assert all(d["metadata"].get("namespace", "ops") == "ops" for d in docs)


STATUS_KINDS = ("paritychecks", "shadowruns", "strategyrollouts")  # the CRDs with a status subresource


def status_schema(plural: str) -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "crds" / f"{plural}.yaml").read_text())
    props: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    return props["properties"]  # type: ignore[no-any-return]


def status_fields(plural: str) -> list[str]:
    return sorted(status_schema(plural))


def status_defaults(plural: str) -> dict[str, Any]:
    return {f: p["default"] for f, p in status_schema(plural).items() if "default" in p}


def test_status_admission_policies() -> None:
    docs = render()
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"}
    bindings = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"}
    assert sorted(policies) == sorted(bindings) == [f"sr-strategy-rollouts-status-{p}" for p in STATUS_KINDS]
    params = one(docs, "ConfigMap")
    assert (params["metadata"]["name"], params["metadata"]["namespace"]) == (
        "sr-strategy-rollouts-status-writers",
        "ops",
    )
    assert params["data"]["users"].splitlines() == ["system:serviceaccount:ops:sr-strategy-rollouts"]
    assert params["data"]["groups"].strip() == ""
    for plural in STATUS_KINDS:
        name = f"sr-strategy-rollouts-status-{plural}"
        policy, binding = policies[name], bindings[name]
        assert policy["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
        assert "namespace" not in policy["metadata"] and "namespace" not in binding["metadata"]
        spec = policy["spec"]
        assert spec["failurePolicy"] == "Fail" and spec["paramKind"] == {"apiVersion": "v1", "kind": "ConfigMap"}
        (rule,) = spec["matchConstraints"]["resourceRules"]
        assert rule["operations"] == ["UPDATE"] and rule["resources"] == [f"{plural}/status"]
        assert binding["spec"]["policyName"] == name and binding["spec"]["validationActions"] == ["Deny"]
        assert binding["spec"]["paramRef"] == {
            "name": "sr-strategy-rollouts-status-writers",
            "namespace": "ops",
            "parameterNotFoundAction": "Deny",
        }
        assert "matchResources" not in binding["spec"]  # every namespace
        # Every status field but requests is compared, generated from the CRD (a new field is covered).
        variables = {v["name"]: v["expression"] for v in spec["variables"]}
        fields = status_fields(plural)
        pair = r"object\.\?status\.\?(\w+)(\.orValue\([^)]*\))? == oldObject\.\?status\.\?(\w+)(\.orValue\([^)]*\))?"
        compared = re.findall(pair, variables["changed"])
        assert [a for a, _, b, _ in compared if a == b] == [f for f in fields if f != "requests"]
        # absent = the schema default (the API server fills it in as soon as there is a status)
        defaults = status_defaults(plural)
        assert {a: o for a, o, _, o2 in compared if o and o == o2} == {
            f: f".orValue({json.dumps(d)})" for f, d in defaults.items()
        }
        expressions = " ".join(v["expression"] for v in spec["validations"])
        if "requests" in fields:
            authorizer = f"authorizer.group('strategyrollouts.io').resource('{plural}').subresource('actions')"
            assert authorizer in variables["missing"]
            assert "size(variables.forged) == 0" in expressions and "size(variables.dropped) == 0" in expressions
        else:
            assert "missing" not in variables and "forged" not in expressions
    rollout_policy = policies["sr-strategy-rollouts-status-strategyrollouts"]
    rollouts = {v["name"]: v["expression"] for v in rollout_policy["spec"]["variables"]}
    assert "'liftStop'" in rollouts["verbs"] and "tradingStopped" in rollouts["stopped"]
    off = render("--set", "admissionPolicy.enabled=false")
    assert not {"ValidatingAdmissionPolicy", "ConfigMap"} & set(kinds(off))
    assert not [d for d in off if d["metadata"]["name"] in ACTION_ROLES], "no action verbs without the policy"


def test_status_admission_policy_parameters_and_namespaces() -> None:
    docs = render(
        "--set", "watchNamespaces={trading,trading-staging}",
        "--set", "admissionPolicy.operatorIdentity.users={dev@example.com}",
        "--set", "admissionPolicy.operatorIdentity.groups={ops:operators}",
    )  # fmt: skip
    params = one(docs, "ConfigMap")
    assert params["data"]["users"].splitlines() == ["system:serviceaccount:ops:sr-strategy-rollouts", "dev@example.com"]
    assert params["data"]["groups"].split() == ["ops:operators"]
    for binding in (d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"):
        (expr,) = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
        assert expr == {
            "key": "kubernetes.io/metadata.name",
            "operator": "In",
            "values": ["trading", "trading-staging"],
        }
    bad = helm(
        "template", "sr", str(CHART), "--set-json", 'admissionPolicy.operatorIdentity.users=["a\\nb"]', check=False
    )
    assert bad.returncode != 0 and "users" in bad.stderr


ACTION_ROLES = {
    "strategy-rollouts-operate": ({"promote", "pause", "resume", "retry", "abort"}, {"edit", "admin"}),
    "strategy-rollouts-approve": ({"approve"}, {"admin"}),
    "strategy-rollouts-risk": ({"stopTrading", "liftStop", "abort", "revert", "releaseKey"}, set()),
}


def test_action_roles() -> None:
    docs = render()
    roles = {d["metadata"]["name"]: d for d in docs if d["metadata"]["name"] in ACTION_ROLES}
    assert sorted(roles) == sorted(ACTION_ROLES)
    for name, (actions, folded_into) in ACTION_ROLES.items():
        role = roles[name]
        assert role["kind"] == "ClusterRole" and "aggregationRule" not in role
        labels = role["metadata"]["labels"]
        into = {k.rsplit("aggregate-to-", 1)[1] for k, v in labels.items() if "aggregate-to-" in k and v == "true"}
        assert into == folded_into, name
        granted = verbs([role], "ClusterRole")
        assert granted[("strategyrollouts.io", "strategyrollouts/actions")] == actions
        assert granted[("strategyrollouts.io", "strategyrollouts/status")] == {"get", "list", "watch", "patch"}
        assert granted[("strategyrollouts.io", "strategyrollouts")] == {"get", "list", "watch"}
        # nothing else that changes anything, apart from trading halts for the risk desk
        for (_, resource), v in granted.items():
            writes = v - {"get", "list", "watch"}
            if resource.endswith("/actions") or resource.endswith("/status"):
                continue
            assert not writes or (name == "strategy-rollouts-risk" and resource.endswith("tradinghalts")), resource
    operate = verbs([roles["strategy-rollouts-operate"]], "ClusterRole")
    assert operate[("strategyrollouts.io", "paritychecks/actions")] == {"run"}
    risk = verbs([roles["strategy-rollouts-risk"]], "ClusterRole")
    for halts in ("tradinghalts", "clustertradinghalts"):
        assert {"create", "delete"} <= risk[("strategyrollouts.io", halts)]
    assert not [d for d in render("--set", "rbac.actionRoles=false") if d["metadata"]["name"] in ACTION_ROLES]


def test_argocd_cm_patch_only_on_request_with_the_user_from_values() -> None:
    assert "argocd-cm" not in [d["metadata"]["name"] for d in render()]
    user = "system:serviceaccount:gitops:argocd-server"
    docs = render("--set", "argocd.cmPatch=true", "--set", "argocd.namespace=gitops", "--set", f"argocd.user={user}")
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "argocd-cm"]
    assert cm["metadata"] == {
        "name": "argocd-cm",
        "namespace": "gitops",
        "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"},
    }
    shipped = yaml.safe_load((ROOT / "manifests" / "argocd" / "argocd-cm-patch.yaml").read_text())["data"]
    default_user = "system:serviceaccount:argocd:argocd-server"
    assert cm["data"] == {k: v.replace(default_user, user) for k, v in shipped.items()}


def test_optional_features_render() -> None:
    docs = render(*ALL_ON)
    assert {"ServiceMonitor", "PrometheusRule", "ConfigMap"} <= set(kinds(docs))
    monitor = one(docs, "ServiceMonitor")
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    webhook_service = services.pop("sr-strategy-rollouts-webhook")
    (service,) = services.values()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    for key, value in monitor["spec"]["selector"]["matchLabels"].items():
        assert service["metadata"]["labels"][key] == value
    # The admission webhook's Service has no metrics port: the ServiceMonitor does not select it.
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= webhook_service["metadata"]["labels"].items()


def test_network_policy_selects_the_operator_pod_and_opens_only_its_ports() -> None:
    assert "NetworkPolicy" not in kinds(render())
    docs = render("-f", str(CHART / "ci/hardened-values.yaml"))
    policy, deployment = one(docs, "NetworkPolicy"), one(docs, "Deployment")
    assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert {p["port"] for p in policy["spec"]["ingress"][0]["ports"]} == {8080, 8081, 9102}
    assert policy["spec"]["ingress"][1]["ports"] == [{"port": 9443, "protocol": "TCP"}]  # the admission webhook
    egress = {tuple(sorted(p["port"] for p in rule["ports"])) for rule in policy["spec"]["egress"]}
    assert egress == {(53, 53), (443, 6443), (9090,), (6379,), (443,)}
    assert all(rule.get("to") for rule in policy["spec"]["egress"]), "hardened: every egress names its peers"


def test_the_api_token_is_mounted_only_into_the_operator_container() -> None:
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    mounts = {m["mountPath"]: m for m in container(render())["volumeMounts"]}
    token = mounts["/var/run/secrets/kubernetes.io/serviceaccount"]
    assert token["readOnly"] is True
    sources = {k for s in {v["name"]: v for v in pod["volumes"]}[token["name"]]["projected"]["sources"] for k in s}
    assert sources == {"serviceAccountToken", "configMap", "downwardAPI"}


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    c: dict[str, Any] = pod["containers"][0]
    return c


def test_restricted_security_context() -> None:
    deployment = one(render(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(render())["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    mounts = {m["mountPath"]: m["name"] for m in container(render())["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "the only writable path"
    # Two replicas, only the Lease holder acts: upgrades may overlap (a Ready standby before an old pod goes).
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert deployment["spec"]["replicas"] == 2


def test_probe_ports_resources() -> None:
    c = container(render())
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"healthz": 8080, "readyz": 8081, "metrics": 9102, "webhook": 9443}
    probe = c["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz" and ports[probe["port"]] == 8080
    ready = c["readinessProbe"]["httpGet"]
    assert ready["path"] == "/readyz" and ports[ready["port"]] == 8081
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"] and c["resources"]["limits"]["cpu"]
    assert c["image"] == "ghcr.io/strategy-rollouts/strategy-rollouts:0.1.0"
    (service,) = [d for d in render() if d["kind"] == "Service" and not d["metadata"]["name"].endswith("-webhook")]
    assert service["spec"]["ports"][0]["port"] == 9102


@pytest.mark.parametrize(
    "values",
    [
        [],
        [
            "--set",
            "watchNamespaces={a,b}",
            "--set",
            "operator.peering=sr",
            "--set",
            "operator.verbose=true",
            "--set",
            "replicaCount=2",
        ],
    ],
)
def test_args_are_accepted_by_the_operator_cli(values: list[str]) -> None:
    c = container(render(*values))
    assert "command" not in c, "the image ENTRYPOINT is strategy-rollouts"
    args = operator_parser().parse_args(c["args"])
    assert args.command == "run"
    assert args.metrics_port == 9102 and args.liveness_port == 8080 and args.readiness_port == 8081
    assert args.leader_elect and args.leader_elect_lease_name == "sr-strategy-rollouts"
    assert (args.leader_elect_lease_duration, args.leader_elect_renew_deadline) == (15, 10)
    assert args.leader_elect_retry_period == 2 and args.leader_elect_namespace is None  # the pod's (POD_NAMESPACE)
    assert args.prometheus_url == "http://prometheus-operated.monitoring.svc:9090"
    if values:
        assert args.namespace == ["a", "b"] and args.peering == "sr" and args.verbose


def rules_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = doc["rules"]
    return rules


def rbac_rules(docs: list[dict[str, Any]], kind: str) -> Iterator[tuple[str, str, set[str]]]:
    """The rules of the operator's own roles in `docs` (the action roles people are bound to: test_action_roles),
    unless only action roles are given."""
    mine = [d for d in docs if d["metadata"]["name"] not in ACTION_ROLES] or docs
    for doc in mine:
        if doc["kind"] == kind:
            for rule in rules_of(doc):
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        yield group, resource, set(rule["verbs"])


def verbs(docs: list[dict[str, Any]], kind: str) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for group, resource, v in rbac_rules(docs, kind):
        out.setdefault((group, resource), set()).update(v)
    return out


NAMESPACED = {
    ("strategyrollouts.io", "strategyrollouts"): {"get", "list", "watch", "patch", "update"},
    ("strategyrollouts.io", "strategyrollouts/status"): {"get", "patch", "update"},
    ("strategyrollouts.io", "shadowruns/status"): {"get", "patch", "update"},
    ("strategyrollouts.io", "paritychecks/status"): {"get", "patch", "update"},
    ("strategyrollouts.io", "gatetemplates"): {"get", "list", "watch"},
    # patch: the claim annotation only (docs/safety.md "Tenancy"); replicas through deployments/scale
    ("apps", "deployments"): {"get", "list", "watch", "patch"},
    ("apps", "deployments/scale"): {"get", "update"},
    ("", "configmaps"): {"get", "list", "watch", "create", "update", "delete"},
    ("networking.k8s.io", "networkpolicies"): {"get", "list", "watch", "create", "update", "delete"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}


def test_admission_webhook() -> None:
    docs = render()
    vwc = one(docs, "ValidatingWebhookConfiguration")
    secret = one(docs, "Secret")
    service = next(
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "sr-strategy-rollouts-webhook"
    )
    plurals = ["strategyrollouts", "shadowruns", "paritychecks"]
    assert [w["name"] for w in vwc["webhooks"]] == [f"validate-{p}.strategyrollouts.io" for p in plurals]
    for plural, hook in zip(plurals, vwc["webhooks"], strict=True):
        assert hook["failurePolicy"] == "Ignore" and hook["timeoutSeconds"] == 5 and hook["sideEffects"] == "None"
        assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
        svc = hook["clientConfig"]["service"]
        assert (svc["name"], svc["namespace"], svc["port"]) == ("sr-strategy-rollouts-webhook", "ops", 443)
        assert svc["path"] == f"/validate-{plural}"  # kopf routes by handler id (operator/admission.py)
        (rule,) = hook["rules"]
        assert rule["resources"] == [plural] and rule["operations"] == ["CREATE", "UPDATE"]  # not /status
    assert secret["type"] == "kubernetes.io/tls" and {"tls.crt", "tls.key", "ca.crt"} <= set(secret["data"])
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"
    c = container(docs)
    args = operator_parser().parse_args(c["args"])
    assert (args.admission_webhook, args.admission_addr) == (9443, "0.0.0.0") and args.admission_managed is None
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert args.admission_cert == mounts["webhook-tls"] + "/tls.crt"
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "webhook-tls")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    managed = render("--set", "admission.certManager.enabled=true")
    assert not [d for d in managed if d["kind"] == "Secret"]
    cert = one(managed, "Certificate")
    assert cert["spec"]["secretName"] == secret["metadata"]["name"]
    assert cert["spec"]["dnsNames"][0] == "sr-strategy-rollouts-webhook.ops.svc"
    assert one(managed, "Issuer")["spec"] == {"selfSigned": {}}
    vwc = one(managed, "ValidatingWebhookConfiguration")
    assert vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "ops/sr-strategy-rollouts-webhook"
    assert all("caBundle" not in w["clientConfig"] for w in vwc["webhooks"])
    scoped = one(render("--set", "watchNamespaces={a,b}"), "ValidatingWebhookConfiguration")
    (expr,) = scoped["webhooks"][0]["namespaceSelector"]["matchExpressions"]
    assert expr == {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "b"]}
    assert "namespaceSelector" not in vwc["webhooks"][0]
    off = render("--set", "admission.enabled=false")
    assert not [d for d in off if d["kind"] in {"ValidatingWebhookConfiguration", "Secret"}]
    assert operator_parser().parse_args(container(off)["args"]).admission_webhook == 0


def is_lease_rbac(doc: dict[str, Any]) -> bool:
    return bool(doc["metadata"]["name"].endswith("-leader-election"))


def test_high_availability() -> None:
    docs = render()
    role = next(d for d in docs if d["kind"] == "Role" and is_lease_rbac(d))
    assert role["metadata"]["namespace"] == "ops"
    assert verbs([role], "Role") == {("coordination.k8s.io", "leases"): {"get", "create", "update"}}
    binding = next(d for d in docs if d["kind"] == "RoleBinding" and is_lease_rbac(d))
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sr-strategy-rollouts", "namespace": "ops"}]
    pdb = one(docs, "PodDisruptionBudget")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == pdb["spec"]["selector"]["matchLabels"]
    env = {e["name"] for e in container(docs)["env"]}
    assert {"POD_NAME", "POD_NAMESPACE"} <= env  # the Lease holder's identity and the Lease's namespace
    # One replica without leader election: no Lease, no PDB, no overlap during upgrades.
    single = render("--set", "replicaCount=1", "--set", "leaderElection.enabled=false")
    assert not [d for d in single if d["kind"] in {"Role", "RoleBinding", "PodDisruptionBudget"}]
    dep = one(single, "Deployment")
    assert dep["spec"]["strategy"] == {"type": "Recreate"} and "affinity" not in dep["spec"]["template"]["spec"]
    assert "--leader-elect" not in container(single)["args"]
    term = "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
    term += ".matchExpressions[0]"
    custom = render("--set", f"{term}.key=x", "--set", f"{term}.operator=Exists")
    assert set(one(custom, "Deployment")["spec"]["template"]["spec"]["affinity"]) == {"nodeAffinity"}


def test_cluster_wide_rbac_is_exactly_what_the_operator_needs() -> None:
    docs = render()
    granted = verbs(docs, "ClusterRole")
    for key, wanted in NAMESPACED.items():
        assert granted[key] == wanted, key
    assert granted[("apiextensions.k8s.io", "customresourcedefinitions")] == {"list", "watch"}
    assert granted[("", "namespaces")] == {"get", "list", "watch"}
    assert not [d for d in docs if d["kind"] in {"Role", "RoleBinding"} and not is_lease_rbac(d)]
    for (group, resource), v in granted.items():
        assert "*" not in v and resource != "*" and group != "*"
        assert "delete" not in v or resource in {"configmaps", "networkpolicies"}
    binding = one(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sr-strategy-rollouts", "namespace": "ops"}]
    assert ("", "secrets") not in granted  # no Secret anywhere unless granted per namespace


def test_secrets_are_readable_only_in_the_namespaces_granted() -> None:
    for mode in ((), ("--set", "watchNamespaces={trading}")):
        docs = render(*mode, "--set", "rbac.secretNamespaces={trading,research}")
        assert ("", "secrets") not in verbs(docs, "ClusterRole")
        roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "sr-strategy-rollouts-secrets"]
        assert sorted(r["metadata"]["namespace"] for r in roles) == ["research", "trading"]
        assert all(verbs([r], "Role") == {("", "secrets"): {"get"}} for r in roles)  # get by name, never list
        bound = [d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"].endswith("-secrets")]
        assert sorted(b["metadata"]["namespace"] for b in bound) == ["research", "trading"]
        assert all(b["roleRef"]["name"] == "sr-strategy-rollouts-secrets" for b in bound)
        assert all(b["subjects"][0] == {"kind": "ServiceAccount", "name": "sr-strategy-rollouts", "namespace": "ops"}
                   for b in bound)  # fmt: skip
        # the namespaced operator's own Roles do not carry Secrets either
        assert all(("", "secrets") not in verbs([d], "Role") for d in docs if d["kind"] == "Role" and d not in roles)
    wide = render("--set", "rbac.clusterWideSecrets=true", "--set", "rbac.secretNamespaces={trading}")
    assert verbs(wide, "ClusterRole")[("", "secrets")] == {"get"}
    assert not [d for d in wide if d["metadata"]["name"].endswith("-secrets")]


def test_watch_namespaces_gets_a_role_per_namespace_and_a_tiny_cluster_role() -> None:
    docs = render("--set", "watchNamespaces={trading,trading-staging}")
    roles = [d for d in docs if d["kind"] == "Role" and not is_lease_rbac(d)]
    bindings = [d for d in docs if d["kind"] == "RoleBinding" and not is_lease_rbac(d)]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["trading", "trading-staging"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["trading", "trading-staging"]
    for role in roles:
        granted = verbs([role], "Role")
        assert granted == NAMESPACED | {
            ("strategyrollouts.io", r): NAMESPACED[("strategyrollouts.io", "strategyrollouts")]
            for r in ("shadowruns", "paritychecks")
        }
    assert verbs(docs, "ClusterRole") == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
        ("strategyrollouts.io", "clustergatetemplates"): {"get", "list", "watch"},
        # kopf probes the watched namespaces (a 403 otherwise: tests/e2e/test_in_cluster.py reads the audit log);
        # get: a stage namespace's strategyrollouts.io/allow-rollouts-from annotation
        ("", "namespaces"): {"get", "list", "watch"},
    }
    for b in bindings:
        assert b["subjects"][0]["namespace"] == "ops" and b["roleRef"]["kind"] == "Role"


REQUIRED_ALERTS = {
    "StrategyRolloutRolledBack",
    "StrategyRolloutHeldTooLong",
    "ShadowRunVerdictFail",
    "ShadowRunVerdictHold",
    "ShadowLatencyHigh",
    "ShadowMatchRateLow",
    "StrategyDecisionsSilent",
    "ShadowDecisionsStalled",
    "ParityCritical",
    "ParityEmergency",
    "StrategyRolloutsOperatorDown",
}


def prometheus_rule() -> dict[str, Any]:
    return one(render(*ALL_ON), "PrometheusRule")


def test_prometheus_rule_has_every_alert_with_summary_and_severity() -> None:
    rules = [r for g in prometheus_rule()["spec"]["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= REQUIRED_ALERTS
    for r in rules:
        assert r["labels"]["severity"] in {"warning", "critical"}
        assert r["annotations"]["summary"] and r["annotations"]["description"]


def test_alert_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool missing: `make system-deps` installs Debian's prometheus"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(prometheus_rule()["spec"]))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# Metric names the alerts and dashboard may use: the operator's and the reference app's (examples/quoter).
OPERATOR_METRICS = {
    "strategy_rollout_phase",
    "canary_traffic_percent",
    "version_activations_total",
    "rollout_gate_evaluations_total",
    "rollbacks_total",
    "strategy_reconcile_duration_seconds_bucket",
    "strategy_reconcile_errors_total",
    "shadow_match_rate",
    "shadow_verdict",
    "shadow_decisions_compared",
    "parity_tracking_error_bps",
    "parity_level",
    "parity_actions_total",
    "up",
}
APP_METRICS = {
    "tick_duration_seconds_bucket",
    "tick_duration_seconds_count",
    "strategy_stage_duration_seconds_bucket",
    "decisions_total",
    "deadline_misses_total",
    "partial_fills_total",
    "ticks_total",
    "orders_total",
    "assigned_keys",
}
PROMQL_WORDS = {
    "sum", "max", "min", "by", "on", "and", "unless", "rate", "increase", "delta", "histogram_quantile",
    "absent", "le", "label_values", "offset", "or", "bool", "ignoring", "group_left", "avg", "count",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\(\s*[a-z_, ]+\)\s*\(", "(", expr)  # by (a, b) (
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {n for n in names if n not in PROMQL_WORDS and not n.startswith("$") and not n.isdigit()}


def test_alerts_and_dashboard_only_use_metrics_that_exist() -> None:
    exprs = [r["expr"] for g in prometheus_rule()["spec"]["groups"] for r in g["rules"]]
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    exprs += [t["expr"] for p in panels for t in p["targets"]]
    known = OPERATOR_METRICS | APP_METRICS
    for expr in exprs:
        names = {n for n in metric_names(expr) if not re.fullmatch(r"[a-z]+", n) or n in known}
        assert names <= known | {"namespace", "rollout", "strategy", "version", "phase", "gate", "result",
                                 "kind", "shadowrun", "paritycheck", "level", "action", "reason", "stage",
                                 "instance", "verdict"}, (expr, names - known)  # fmt: skip


def test_operator_metric_names_match_the_operator() -> None:
    source = (ROOT / "strategy_rollouts" / "operator" / "runtime" / "metrics.py").read_text()
    declared = set(re.findall(r'(?:Gauge|Counter|Histogram)\(\s*"([a-z_]+)"', source))
    exposed = {n for n in OPERATOR_METRICS if n != "up"}
    exposed = {n.removesuffix("_bucket") for n in exposed}
    assert exposed <= declared, exposed - declared


def test_dashboard_configmap_holds_valid_grafana_json() -> None:
    cm = next(d for d in render(*ALL_ON) if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"])
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["strategy-rollouts.json"])
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for wanted in ("phase", "weight", "gate", "match rate", "tracking error"):
        assert wanted in titles, wanted
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24


def test_chart_crds_are_byte_copies_of_the_generated_ones() -> None:
    chart = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    source = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    assert chart == source and source
    for name in source:
        assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), name


def test_kustomize_install_is_rendered_from_the_chart() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "manifests" / "install" / "render.py"), "--check", "--helm", helm_binary()],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    kustomization = yaml.safe_load((ROOT / "manifests" / "install" / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (ROOT / "manifests" / "install" / resource).exists(), resource
    crds = {f"crds/{p.name}" for p in (ROOT / "crds").glob("*.yaml")}
    assert crds <= set(kustomization["resources"])


def test_web_dashboard_is_a_restricted_read_only_deployment_with_probes_and_review_rbac() -> None:
    docs = [d for d in render("--set", "dashboard.enabled=true") if "dashboard" in d["metadata"]["name"]]
    assert sorted(kinds(docs)) == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["command"] == ["python", "-m", "strategy_rollouts.dashboard"] and "--in-cluster" in c["args"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    rules = {
        (g, r): set(rule["verbs"])
        for rule in one(docs, "ClusterRole")["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert rules[("authentication.k8s.io", "tokenreviews")] == {"create"}
    assert rules[("authorization.k8s.io", "subjectaccessreviews")] == {"create"}
    assert rules[("strategyrollouts.io", "strategyrollouts")] == {"get", "list", "watch"}
    assert all(v <= {"get", "list", "watch", "create"} for v in rules.values()), "read-only apart from reviews"
    # The operator's Service must not select the dashboard's pods, nor the other way round.
    operator = next(
        d
        for d in render("--set", "dashboard.enabled=true")
        if d["kind"] == "Service" and "dashboard" not in d["metadata"]["name"]
    )
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not set(operator["spec"]["selector"].items()) <= set(labels.items())
    assert set(one(docs, "Service")["spec"]["selector"].items()) <= set(labels.items())


def dashboard_allow(docs: list[dict[str, Any]]) -> tuple[str, AllowList]:
    """The in-cluster dashboard's Prometheus and allow-list, as its own command line parses them."""
    from strategy_rollouts.dashboard.app import Dashboard

    pods = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-dashboard")]
    (c,) = pods[0]["spec"]["template"]["spec"]["containers"]
    p = argparse.ArgumentParser()
    p.add_argument("--in-cluster", action="store_true")
    p.add_argument("--address")
    p.add_argument("--port")
    p.add_argument("--prometheus-url")
    server.allow_options(p)
    args = p.parse_args(c["args"])
    dash = Dashboard(None, None, Connection(args.prometheus_url), allow=server.allow_list(args))  # type: ignore[arg-type]
    return args.prometheus_url, dash.allow


@pytest.mark.parametrize("cluster_services", [True, False])
def test_the_default_allow_list_is_what_the_chart_names_and_in_cluster_services(cluster_services: bool) -> None:
    """Never "empty = any": the operator and the dashboard allow prometheus.url, in-cluster Service names
    (security.allowClusterServices, on by default) and what security.allowed* lists, nothing else."""
    values = ["--set", "dashboard.enabled=true", "--set", "prometheus.url=http://prom.example:9090"]
    values += [] if cluster_services else ["--set", "security.allowClusterServices=false"]
    docs = render(*values)
    operator = next(d for d in docs if d["kind"] == "Deployment" and not d["metadata"]["name"].endswith("-dashboard"))
    s = operator_settings(operator_parser().parse_args(operator["spec"]["template"]["spec"]["containers"][0]["args"]))
    prometheus_url, dash = dashboard_allow(docs)
    assert s.restricted and prometheus_url == "http://prom.example:9090"
    for allow in (s.prometheus_allow, dash):
        assert allowed("http://prom.example:9090/api/v1/query", allow)
        assert allowed("http://thanos.monitoring.svc:9090", allow) is cluster_services
        assert allowed("http://thanos.monitoring.svc.cluster.local:9090", allow) is cluster_services
        assert not allowed("http://metrics.evil.example:9090", allow)
        assert not allowed("http://169.254.169.254/latest/meta-data", allow)
    assert allowed("http://risk.trading.svc/hook", s.webhook_allow) is cluster_services
    assert not allowed("https://risk.example/hook", s.webhook_allow), "the chart names no webhook target"
    listed = render(
        *values,
        "--set",
        "security.allowedPrometheus={http://thanos.example:9090}",
        "--set",
        "security.allowedWebhooks={https://risk.example/}",
    )
    operator = next(d for d in listed if d["kind"] == "Deployment" and not d["metadata"]["name"].endswith("-dashboard"))
    s = operator_settings(operator_parser().parse_args(operator["spec"]["template"]["spec"]["containers"][0]["args"]))
    assert allowed("https://risk.example/hook", s.webhook_allow)
    for allow in (s.prometheus_allow, dashboard_allow(listed)[1]):
        assert allowed("http://thanos.example:9090/api", allow) and allowed("http://prom.example:9090", allow)
        assert not allowed("http://other.example:9090", allow)
