{{/* Names, labels and shared snippets of the gatehouse chart. */}}

{{/* The chart's name (nameOverride wins). */}}
{{- define "gatehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name for every object (at most 40 characters, so that suffixes such as -origin-<region>-headless stay within 63). */}}
{{- define "gatehouse.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else if contains (include "gatehouse.name" .) .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "gatehouse.name" .) | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "gatehouse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gatehouse
{{- end }}

{{/* Selector labels of one component: include "gatehouse.selectorLabels" (list . "gateway"). */}}
{{- define "gatehouse.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "gatehouse.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* The image reference (tag defaults to the chart's appVersion). */}}
{{- define "gatehouse.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding keys and tokens. */}}
{{- define "gatehouse.secretName" -}}
{{- default (printf "%s-keys" (include "gatehouse.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{/* The ServiceAccount of every pod. */}}
{{- define "gatehouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gatehouse.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Object name of one region's origin: include "gatehouse.originName" (list . "eu-west"). */}}
{{- define "gatehouse.originName" -}}
{{- printf "%s-origin-%s" (include "gatehouse.fullname" (index . 0)) (index . 1) | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/* The region whose bundle the gateway and the authorization service pull. */}}
{{- define "gatehouse.edgeRegion" -}}
{{- if .Values.edge.region }}
{{- .Values.edge.region }}
{{- else if .Values.origin.regions }}
{{- (index .Values.origin.regions 0).name }}
{{- else }}
{{- fail "edge.region: set it, or list at least one region in origin.regions" }}
{{- end }}
{{- end }}

{{/* In-cluster URL of the origin that serves the edges' bundle. */}}
{{- define "gatehouse.edgeOriginUrl" -}}
{{- if .Values.edge.originUrl }}
{{- .Values.edge.originUrl | trimSuffix "/" }}
{{- else }}
{{- printf "http://%s.%s.svc:%d" (include "gatehouse.originName" (list . (include "gatehouse.edgeRegion" .))) .Release.Namespace (int .Values.origin.ports.http) }}
{{- end }}
{{- end }}

{{/* The [bundle], [filters] and [limits] sections shared by the gateway's and the authorization service's configuration. */}}
{{- define "gatehouse.edgeConfig" -}}
[bundle]
origin_url = {{ printf "%s/v1/bundles/%s" (include "gatehouse.edgeOriginUrl" .) (include "gatehouse.edgeRegion" .) | quote }}
# origin_token: GATEHOUSE_GATEWAY__BUNDLE__ORIGIN_TOKEN, from the Secret (never in a ConfigMap).
poll_secs = {{ int .Values.edge.pollSecs }}
public_key = "/var/run/gatehouse/keys/bundle-signing.pub.pem"
secrets = "/var/run/gatehouse/keys/edge-secrets.toml"

[filters]
cache_dir = "/var/cache/gatehouse/cwasm"
max_call_ms = {{ int .Values.edge.filters.maxCallMs }}
max_memory_mib = {{ int .Values.edge.filters.maxMemoryMib }}
pool_size = {{ int .Values.edge.filters.poolSize }}

[limits]
max_body_bytes = {{ int64 .Values.edge.limits.maxBodyBytes }}
header_timeout_secs = {{ int .Values.edge.limits.headerTimeoutSecs }}
upstream_timeout_secs = {{ int .Values.edge.limits.upstreamTimeoutSecs }}
body_timeout_secs = {{ int .Values.edge.limits.bodyTimeoutSecs }}
drain_secs = {{ int .Values.edge.limits.drainSecs }}
{{- if .Values.edge.audit }}

[audit]
url = {{ printf "%s/v1/audit/edge" (include "gatehouse.edgeOriginUrl" .) | quote }}
# token: GATEHOUSE_GATEWAY__AUDIT__TOKEN, from the Secret.
{{- end }}
{{- end }}

{{/* [[routes]] tables from a list of routes: include "gatehouse.routes" (list $routes $withUpstream). */}}
{{- define "gatehouse.routes" -}}
{{- $withUpstream := index . 1 -}}
{{- range $i, $r := index . 0 }}

[[routes]]
{{- if $r.host }}
host = {{ $r.host | quote }}
{{- end }}
{{- if $r.pathPrefix }}
path_prefix = {{ $r.pathPrefix | quote }}
{{- end }}
{{- if $withUpstream }}
upstream = {{ required (printf "routes[%d].upstream: the gateway needs an upstream per route" $i) $r.upstream | quote }}
{{- end }}
filters = [{{ range $j, $f := (default (list "gatehouse") $r.filters) }}{{ if $j }}, {{ end }}{{ $f | quote }}{{ end }}]
{{- end }}
{{- end }}

{{/* The edge's environment: its log level, and the edge token from the Secret as the settings GATEHOUSE_GATEWAY__BUNDLE__ORIGIN_TOKEN and __AUDIT__TOKEN (environment over file, as every setting; see the README's configuration section). */}}
{{- define "gatehouse.edgeEnv" -}}
- name: GATEHOUSE_LOG
  value: {{ .Values.edge.logLevel | quote }}
- name: GATEHOUSE_GATEWAY__BUNDLE__ORIGIN_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ include "gatehouse.secretName" . }}, key: edge.token}
{{- if .Values.edge.audit }}
- name: GATEHOUSE_GATEWAY__AUDIT__TOKEN
  valueFrom:
    secretKeyRef: {name: {{ include "gatehouse.secretName" . }}, key: edge.token}
{{- end }}
{{- end }}

{{/* The Secret's keys an edge (gateway, authz) mounts. */}}
{{- define "gatehouse.edgeKeyItems" -}}
- {key: bundle-signing.pub.pem, path: bundle-signing.pub.pem}
- {key: edge-secrets.toml, path: edge-secrets.toml}
{{- end }}
