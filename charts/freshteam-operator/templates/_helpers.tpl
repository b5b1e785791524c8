{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "freshteam-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, with the chart name unless the release already has it. */}}
{{- define "freshteam-operator.fullname" -}}
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

{{- define "freshteam-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "freshteam-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "freshteam-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "freshteam-operator.labels" -}}
helm.sh/chart: {{ include "freshteam-operator.chart" . }}
{{ include "freshteam-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "freshteam-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "freshteam-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "freshteam-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The namespace watched in single-namespace mode. */}}
{{- define "freshteam-operator.watchNamespace" -}}
{{- default .Release.Namespace .Values.watch.namespace }}
{{- end }}

{{- /* The watched namespaces as {"namespaces": [...]}: empty for scope cluster. */}}
{{- define "freshteam-operator.watchNamespaces" -}}
{{- $list := list }}
{{- if eq .Values.watch.scope "namespace" }}
{{- $list = list (include "freshteam-operator.watchNamespace" .) }}
{{- else if eq .Values.watch.scope "namespaces" }}
{{- if not .Values.watch.namespaces }}
{{- fail "watch.scope=namespaces needs watch.namespaces: the namespaces whose integrations the operator serves" }}
{{- end }}
{{- if ne (len .Values.watch.namespaces) (len (uniq .Values.watch.namespaces)) }}
{{- fail "watch.namespaces lists a namespace twice" }}
{{- end }}
{{- $list = .Values.watch.namespaces }}
{{- end }}
{{- dict "namespaces" $list | toJson }}
{{- end }}

{{- define "freshteam-operator.leaseName" -}}
{{- default (include "freshteam-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "freshteam-operator.templatesConfigMap" -}}
{{- if .Values.emailTemplates.existingConfigMap }}
{{- .Values.emailTemplates.existingConfigMap }}
{{- else if .Values.emailTemplates.files }}
{{- printf "%s-templates" (include "freshteam-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The label that puts an integration in a shard (the operator's --shard-selector uses it). */}}
{{- define "freshteam-operator.shardKeyLabel" -}}
sharding.freshteam.provisioning.dev/key
{{- end }}

{{/* The label that names the shard of an operator pod (Deployment, PDB and scrape selectors). */}}
{{- define "freshteam-operator.shardPodLabel" -}}
sharding.freshteam.provisioning.dev/shard
{{- end }}

{{/*
The shards to deploy, as JSON {"shards": [...]}; each has name, deployment (the name of its
Deployment and PDB), lease, selector (the --shard-selector; empty: none), labelled (whether
its objects carry the shard label), replicaCount and resources.

Without named shards there is one entry that renders exactly like an unsharded install:
Deployment <fullname>, no selector, no shard label. With named shards, the default shard is
the Deployment <fullname>-default (a new name, because a Deployment's selector cannot
change) that still holds the Lease <fullname>, so it takes over from the unsharded leader.
*/}}
{{- define "freshteam-operator.shards" -}}
{{- $fullname := include "freshteam-operator.fullname" . }}
{{- $lease := include "freshteam-operator.leaseName" . }}
{{- $key := include "freshteam-operator.shardKeyLabel" . }}
{{- $names := list }}
{{- $shards := list }}
{{- range .Values.sharding.shards }}
{{- $s := kindIs "string" . | ternary (dict "name" .) . }}
{{- $name := $s.name }}
{{- if eq $name "default" }}
{{- fail "sharding.shards: \"default\" is the name of the default shard (sharding.defaultShard); choose another name" }}
{{- end }}
{{- if has $name $names }}
{{- fail (printf "sharding.shards: %q is listed twice" $name) }}
{{- end }}
{{- $names = append $names $name }}
{{- $deployment := printf "%s-%s" $fullname $name }}
{{- if gt (len $deployment) 63 }}
{{- fail (printf "sharding.shards: %q makes the Deployment name %s longer than 63 characters; use a shorter shard name or fullnameOverride" $name $deployment) }}
{{- end }}
{{- $shards = append $shards (dict
  "name" $name
  "deployment" $deployment
  "lease" (printf "%s-%s" $lease $name)
  "selector" (printf "%s=%s" $key $name)
  "labelled" true
  "replicaCount" (hasKey $s "replicaCount" | ternary $s.replicaCount $.Values.replicaCount)
  "resources" (hasKey $s "resources" | ternary $s.resources $.Values.resources)) }}
{{- end }}
{{- if .Values.sharding.defaultShard }}
{{- $default := dict "name" "default" "lease" $lease "replicaCount" .Values.replicaCount "resources" .Values.resources }}
{{- if $names }}
{{- $_ := set $default "deployment" (printf "%s-default" $fullname | trunc 63 | trimSuffix "-") }}
{{- $_ := set $default "selector" (printf "%s notin (%s)" $key (join "," $names)) }}
{{- $_ := set $default "labelled" true }}
{{- else }}
{{- $_ := set $default "deployment" $fullname }}
{{- $_ := set $default "selector" "" }}
{{- $_ := set $default "labelled" false }}
{{- end }}
{{- $shards = prepend $shards $default }}
{{- else if not $names }}
{{- fail "sharding.defaultShard is false and sharding.shards is empty: no operator would run" }}
{{- end }}
{{- toJson (dict "shards" $shards) }}
{{- end }}

{{/* Selector labels of one shard's pods: call with (dict "root" $ "shard" $shard). */}}
{{- define "freshteam-operator.shardSelectorLabels" -}}
{{ include "freshteam-operator.selectorLabels" .root }}
{{- if .shard.labelled }}
{{ include "freshteam-operator.shardPodLabel" .root }}: {{ .shard.name }}
{{- end }}
{{- end }}

{{/* Labels of one shard's objects: call with (dict "root" $ "shard" $shard). */}}
{{- define "freshteam-operator.shardLabels" -}}
{{ include "freshteam-operator.labels" .root }}
{{- if .shard.labelled }}
{{ include "freshteam-operator.shardPodLabel" .root }}: {{ .shard.name }}
{{- end }}
{{- end }}

{{/*
A PromQL label selector: the given matchers plus alerts.prometheusRule.matchers, in braces,
or nothing when both are empty. Call with (dict "root" $ "m" `phase="Failed"`).
*/}}
{{- define "freshteam-operator.promSelector" -}}
{{- $parts := compact (list .m .root.Values.alerts.prometheusRule.matchers) }}
{{- if $parts }}{{ printf "{%s}" (join ", " $parts) }}{{ end }}
{{- end }}

{{- /*
The operator's own rules: exactly the calls the controller makes. Nothing cluster-scoped:
it reads no CustomResourceDefinition, Namespace or Node, so in namespaced modes Roles
carry all of it.
*/}}
{{- define "freshteam-operator.operatorRules" }}
rules:
  # The watched resource; only its status is written.
  - apiGroups: ["freshteam.provisioning.dev"]
    resources: ["freshteamintegrations"]
    verbs: ["get", "list", "watch"]
  - apiGroups: ["freshteam.provisioning.dev"]
    resources: ["freshteamintegrations/status"]
    verbs: ["patch"]
  # One ImportRun per run: created, progress in status, pruned to the history limits;
  # patch only adopts a user's on-demand run (owner and integration label).
  - apiGroups: ["freshteam.provisioning.dev"]
    resources: ["importruns"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  - apiGroups: ["freshteam.provisioning.dev"]
    resources: ["importruns/status"]
    verbs: ["patch"]
  # The integration's state (ledger, invitation outbox, convergence notes): objects of
  # the operator's own group, the only kind it updates. Owned by the integration.
  - apiGroups: ["freshteam.provisioning.dev"]
    resources: ["integrationstates"]
    verbs: ["get", "create", "update"]
  # Run reports (<run>-errors), created once and never updated. get: a name clash is
  # checked against the run, and state an earlier version kept in ConfigMaps is read
  # once to move it into IntegrationStates.
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get", "create"]
  # API keys and SCIM tokens; watched so that a rotated key re-authorizes at once.
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["get", "list", "watch"]
  # Events on integrations (kube-runtime's Recorder creates, then patches a series).
  - apiGroups: ["events.k8s.io"]
    resources: ["events"]
    verbs: ["create", "patch"]
{{- end }}
