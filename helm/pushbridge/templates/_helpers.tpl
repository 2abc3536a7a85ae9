{{/*
Chart name, truncated to the 63 characters a DNS label allows.
*/}}
{{- define "pushbridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: "<release>-<chart>", or the release name alone when it already contains the chart name.
*/}}
{{- define "pushbridge.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "pushbridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "pushbridge.labels" -}}
helm.sh/chart: {{ include "pushbridge.chart" . }}
{{ include "pushbridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels (immutable once a Deployment exists: never add to these).
*/}}
{{- define "pushbridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pushbridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "pushbridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pushbridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the TLS Secret mounted into pushbridge.
*/}}
{{- define "pushbridge.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "pushbridge.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{/*
pushbridge image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "pushbridge.image" -}}
{{- printf "%s:%s" .Values.pushbridge.image.repository (.Values.pushbridge.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
The pushbridge config file text: pushbridge.config passed through `tpl`.
*/}}
{{- define "pushbridge.configText" -}}
{{- tpl (toYaml .Values.pushbridge.config) . }}
{{- end }}

{{/*
The pushbridge config as a dict, checked against the ports the chart exposes, so a Service or a probe never
points at a port pushbridge does not listen on.
*/}}
{{- define "pushbridge.configDict" -}}
{{- $cfg := include "pushbridge.configText" . | fromYaml }}
{{- if hasKey $cfg "Error" }}
{{- fail (printf "pushbridge.config is not valid YAML after tpl: %s" $cfg.Error) }}
{{- end }}
{{- $ports := .Values.pushbridge.ports }}
{{- $admin := dig "admin" "address" "" $cfg | toString }}
{{- if not (hasSuffix (printf ":%v" $ports.admin) $admin) }}
{{- fail (printf "pushbridge.config.admin.address (%q) must end in :%v (pushbridge.ports.admin)" $admin $ports.admin) }}
{{- end }}
{{- $https := false }}
{{- $http := false }}
{{- range $l := (get $cfg "listen" | default list) }}
{{- $addr := get $l "address" | toString }}
{{- if and (hasSuffix (printf ":%v" $ports.https) $addr) (get $l "tls") }}
{{- $https = true }}
{{- end }}
{{- if and $ports.http (hasSuffix (printf ":%v" $ports.http) $addr) (not (get $l "tls")) }}
{{- $http = true }}
{{- end }}
{{- end }}
{{- if not $https }}
{{- fail (printf "pushbridge.config.listen needs an entry with tls on port %v (pushbridge.ports.https)" $ports.https) }}
{{- end }}
{{- if and $ports.http (not $http) }}
{{- fail (printf "pushbridge.ports.http is %v but pushbridge.config.listen has no plaintext entry on that port" $ports.http) }}
{{- end }}
{{- range $p := list $ports.https $ports.http $ports.admin }}
{{- if and $p (eq (int $p) (int $.Values.app.port)) }}
{{- fail (printf "app.port %v collides with a pushbridge port: containers in a pod share one network namespace" $.Values.app.port) }}
{{- end }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
Seconds in a duration string as pushbridge reads it ("30s", "1m30s", "500ms", "2min"), rounded up.
Usage: include "pushbridge.durationSeconds" "1m30s"
*/}}
{{- define "pushbridge.durationSeconds" -}}
{{- $in := . | toString | trim }}
{{- $parts := regexFindAll "[0-9]+(msec|ms|sec|s|min|m|h)" $in -1 }}
{{- if or (not $parts) (ne (join "" $parts) (replace " " "" $in)) }}
{{- fail (printf "cannot read the duration %q (use e.g. 30s, 1m30s, 500ms)" $in) }}
{{- end }}
{{- $ms := 0 }}
{{- range $parts }}
{{- $n := regexFind "^[0-9]+" . | int }}
{{- $unit := regexReplaceAll "^[0-9]+" . "" }}
{{- if has $unit (list "ms" "msec") }}{{ $ms = add $ms $n }}
{{- else if has $unit (list "s" "sec") }}{{ $ms = add $ms (mul $n 1000) }}
{{- else if has $unit (list "m" "min") }}{{ $ms = add $ms (mul $n 60000) }}
{{- else }}{{ $ms = add $ms (mul $n 3600000) }}
{{- end }}
{{- end }}
{{- div (add $ms 999) 1000 }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the explicit value, or computed. pushbridge needs preStop sleep + shutdown.grace,
the application its preStop sleep + shutdownSeconds. Plain containers stop in parallel (the longer one counts);
a native sidecar is stopped only after the application has exited (the two add up). Plus a margin.
*/}}
{{- define "pushbridge.terminationGracePeriodSeconds" -}}
{{- if not (kindIs "string" .Values.terminationGracePeriodSeconds) }}
{{- .Values.terminationGracePeriodSeconds | int }}
{{- else if .Values.terminationGracePeriodSeconds }}
{{- .Values.terminationGracePeriodSeconds | int }}
{{- else }}
{{- $cfg := include "pushbridge.configDict" . | fromYaml }}
{{- $grace := include "pushbridge.durationSeconds" (dig "shutdown" "grace" "30s" $cfg) | int }}
{{- $pushbridge := add (int .Values.pushbridge.preStopSleepSeconds) $grace }}
{{- $app := add (int .Values.app.preStopSleepSeconds) (int .Values.app.shutdownSeconds) }}
{{- if .Values.nativeSidecar }}
{{- add $app $pushbridge (int .Values.terminationMarginSeconds) }}
{{- else }}
{{- add (max $app $pushbridge) (int .Values.terminationMarginSeconds) }}
{{- end }}
{{- end }}
{{- end }}
