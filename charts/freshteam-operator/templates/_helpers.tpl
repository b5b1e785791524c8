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
