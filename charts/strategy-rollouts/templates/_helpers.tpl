{{/* Names and labels. */}}
{{- define "strategy-rollouts.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "strategy-rollouts.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "strategy-rollouts.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "strategy-rollouts.selectorLabels" -}}
app.kubernetes.io/name: {{ include "strategy-rollouts.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "strategy-rollouts.labels" -}}
helm.sh/chart: {{ include "strategy-rollouts.chart" . }}
{{ include "strategy-rollouts.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: strategy-rollouts
app.kubernetes.io/component: operator
{{- end }}

{{- define "strategy-rollouts.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "strategy-rollouts.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "strategy-rollouts.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "strategy-rollouts.metricsJob" -}}
{{- printf "%s-metrics" (include "strategy-rollouts.fullname" .) }}
{{- end }}

{{/*
Namespaced permissions: what the operator reads and writes in every watched namespace.
Shared by the ClusterRole (all namespaces) and the per-namespace Roles (watchNamespaces).
*/}}
{{- define "strategy-rollouts.namespacedRules" -}}
# Its own custom resources, and their status subresource (manual requests, progress).
- apiGroups: ["strategyrollouts.io"]
  resources: ["strategyrollouts", "shadowruns", "paritychecks"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["strategyrollouts.io"]
  resources: ["strategyrollouts/status", "shadowruns/status", "paritychecks/status"]
  verbs: ["get", "patch", "update"]
# Gate templates (spec.gates[].templateRef): read only.
- apiGroups: ["strategyrollouts.io"]
  resources: ["gatetemplates"]
  verbs: ["get", "list", "watch"]
# The stable and canary deployments: observed (read + kopf's watch), and scaled through the scale
# subresource only, by a replace carrying the resourceVersion (kube.py scale: a conditional write; its
# version read from the scale subresource when no watch holds the Deployment). The Deployment itself is
# patched only to record its rollout's claim, the metadata annotation strategyrollouts.io/claimed-by,
# guarded by its resourceVersion (kube.py annotate_deployment; docs/safety.md "Tenancy"): never its spec.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["get", "update"]
# Routing (<rollout>-routing), ShadowRun reports (<shadowrun>-report), latency budgets: read, created and
# replaced (kube.py), deleted when their rollout goes (orphans.py); never patched.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "update", "delete"]
# ShadowRun egress isolation: watched (handlers.py: the shadow cache's index, so a pass needs no GET),
# read by name until listed, created, replaced, deleted (shadow_world.py); never patched.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "update", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Cluster-scoped permissions kopf itself needs. */}}
{{- define "strategy-rollouts.clusterRules" -}}
# kopf: runtime observation of CRDs (resource discovery).
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
# Cluster-wide gate templates (spec.gates[].templateRef kind ClusterGateTemplate): read only.
- apiGroups: ["strategyrollouts.io"]
  resources: ["clustergatetemplates"]
  verbs: ["get", "list", "watch"]
# kopf: runtime observation of namespaces, in both modes (namespaced: whether the watched ones exist;
# without it kopf's probe is a 403 at every start, seen in the e2e audit log). Read by name: whether a
# stage's namespace lets the rollout's namespace in (annotation strategyrollouts.io/allow-rollouts-from).
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- if .Values.operator.peering }}
# kopf peering (operator.peering): the ClusterKopfPeering / KopfPeering objects.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["list", "watch", "patch", "get"]
{{- end }}
{{- end }}

{{/*
The API token as the kubelet would mount it by default (a bound, rotated token: 3607 s is the API
server's default for these; the cluster CA; the namespace), but explicitly, into one container only:
the pods set automountServiceAccountToken: false. Mounted at the in-cluster config's path.
*/}}
{{- define "strategy-rollouts.apiTokenVolume" -}}
- name: kube-api-access
  projected:
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3607
      - configMap:
          name: kube-root-ca.crt
          items: [{key: ca.crt, path: ca.crt}]
      - downwardAPI:
          items:
            - path: namespace
              fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}  # as defaulted: re-applies stay no-ops
{{- end }}

{{- define "strategy-rollouts.apiTokenMount" -}}
- name: kube-api-access
  mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  readOnly: true
{{- end }}

{{/*
Secrets named by specs (spec.prometheus.*SecretRef, webhook and notification credentials, a ShadowRun's
Redis address): read by name only, and only those labelled strategyrollouts.io/credentials: "true" are
used. Granted per namespace (rbac.secretNamespaces), cluster-wide only when rbac.clusterWideSecrets.
*/}}
{{- define "strategy-rollouts.secretRules" -}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
