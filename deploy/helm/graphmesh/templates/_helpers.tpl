{{/* Names, labels and the pieces every graphmesh pod shares. */}}

{{- define "graphmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "graphmesh.fullname" -}}
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

{{/* <fullname>-<component>, e.g. graphmesh-api. Call with (dict "root" $ "component" "api"). */}}
{{- define "graphmesh.componentName" -}}
{{- printf "%s-%s" (include "graphmesh.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "graphmesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Kubernetes recommended labels. Call with (dict "root" $ "component" "api"). */}}
{{- define "graphmesh.labels" -}}
helm.sh/chart: {{ include "graphmesh.chart" .root }}
{{ include "graphmesh.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: graphmesh
{{- end }}

{{- define "graphmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "graphmesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every pod of this release (any component). */}}
{{- define "graphmesh.releasePodLabels" -}}
app.kubernetes.io/name: {{ include "graphmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The components that hold the database URL and the NATS servers: the only pods of this
release allowed to reach Postgres and NATS (the gateway speaks gRPC to the api and review only). */}}
{{- define "graphmesh.backendClients" -}}
- api
- migrate
- review
- worker
{{- end }}

{{- define "graphmesh.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "graphmesh.natsNamespace" -}}
{{- .Values.nats.namespace | default .Release.Namespace }}
{{- end }}

{{/* The NATS servers' own pods, as the official chart labels them. */}}
{{- define "graphmesh.natsServerLabels" -}}
app.kubernetes.io/name: nats
app.kubernetes.io/instance: {{ .Values.nats.release }}
app.kubernetes.io/component: nats
{{- end }}

{{/* host:port of the NATS monitoring endpoint through the headless service (KEDA finds the
consumer leader through it). */}}
{{- define "graphmesh.natsMonitoringEndpoint" -}}
{{- printf "%s-headless.%s.svc.%s:%v" .Values.nats.release (include "graphmesh.natsNamespace" .) .Values.clusterDomain .Values.nats.monitorPort }}
{{- end }}

{{/* Every NATS server by its pod address, comma-separated. */}}
{{- define "graphmesh.natsUrl" -}}
{{- if .Values.nats.url }}
{{- .Values.nats.url }}
{{- else }}
{{- $urls := list }}
{{- range $i := until (int .Values.nats.replicas) }}
{{- $urls = append $urls (printf "nats://%s-%d.%s-headless.%s.svc.%s:%v" $.Values.nats.release $i $.Values.nats.release (include "graphmesh.natsNamespace" $) $.Values.clusterDomain $.Values.nats.clientPort) }}
{{- end }}
{{- join "," $urls }}
{{- end }}
{{- end }}

{{- define "graphmesh.cnpgClusterName" -}}
{{- .Values.postgres.cnpg.clusterName | default (printf "%s-pg" (include "graphmesh.fullname" .)) | trunc 50 | trimSuffix "-" }}
{{- end }}

{{/* The env every graphmesh container gets: dependencies, auth, telemetry. Secrets only by
secretKeyRef. */}}
{{- define "graphmesh.commonEnv" -}}
- name: GRAPHMESH_DATABASE_URL
  valueFrom:
    secretKeyRef:
{{- if .Values.postgres.cnpg.enabled }}
      name: {{ include "graphmesh.cnpgClusterName" . }}-app
      key: uri
{{- else }}
      name: {{ required "postgres.external.existingSecret is required when postgres.cnpg.enabled is false" .Values.postgres.external.existingSecret }}
      key: {{ .Values.postgres.external.key }}
{{- end }}
{{- if .Values.nats.existingSecret }}
- name: GRAPHMESH_NATS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.nats.existingSecret }}
      key: {{ .Values.nats.key }}
{{- else }}
- name: GRAPHMESH_NATS_URL
  value: {{ include "graphmesh.natsUrl" . | quote }}
{{- end }}
- name: GRAPHMESH_AUTH
  value: {{ .Values.auth.mode | quote }}
{{- if .Values.auth.jwt.existingSecret }}
- name: GRAPHMESH_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.jwt.existingSecret }}
      key: {{ .Values.auth.jwt.key }}
{{- end }}
{{- if .Values.webhooks.existingSecret }}
- name: GRAPHMESH_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.webhooks.existingSecret }}
      key: {{ .Values.webhooks.key }}
{{- end }}
{{- with .Values.config.manifestPath }}
- name: GRAPHMESH_CONFIG
  value: {{ . | quote }}
{{- end }}
- name: GRAPHMESH_LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
{{- with .Values.config.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.config.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "graphmesh.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "graphmesh.containerSecurityContext" -}}
{{- toYaml .Values.securityContext }}
{{- end }}

{{/* When the migration runs. Before install and upgrade, so that new pods find their
schema and streams; but a CNPG Cluster made by this release does not exist before install,
so then the first migration runs after install (the services retry until it is done). */}}
{{- define "graphmesh.migrateHooks" -}}
{{- if .Values.postgres.cnpg.enabled -}}
post-install,pre-upgrade
{{- else -}}
pre-install,pre-upgrade
{{- end -}}
{{- end }}

{{/* A NetworkPolicy peer for Postgres and NATS: the pods of this release that use them
(graphmesh.backendClients), from any namespace the policy lives in. */}}
{{- define "graphmesh.releasePeer" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .Release.Namespace }}
  podSelector:
    matchLabels:
      {{- include "graphmesh.releasePodLabels" . | nindent 6 }}
    matchExpressions:
      - key: app.kubernetes.io/component
        operator: In
        values:
          {{- include "graphmesh.backendClients" . | nindent 10 }}
{{- end }}

{{/* The metrics scrapers as a NetworkPolicy `from` list (empty output: nobody). */}}
{{- define "graphmesh.metricsPeers" -}}
{{- $m := .Values.metrics }}
{{- $peer := dict }}
{{- with $m.namespaceSelector }}{{ $_ := set $peer "namespaceSelector" (dict "matchLabels" .) }}{{ end }}
{{- with $m.podSelector }}{{ $_ := set $peer "podSelector" (dict "matchLabels" .) }}{{ end }}
{{- if $peer }}
{{- toYaml (list $peer) }}
{{- end }}
{{- end }}
