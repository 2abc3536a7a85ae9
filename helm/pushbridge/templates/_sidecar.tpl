{{/*
The pushbridge container. Rendered into initContainers (with restartPolicy: Always) for a native sidecar, or
into containers otherwise; everything else is identical.
*/}}
{{- define "pushbridge.sidecarContainer" -}}
- name: {{ .Values.pushbridge.name }}
  image: {{ include "pushbridge.image" . }}
  imagePullPolicy: {{ .Values.pushbridge.image.pullPolicy }}
  {{- if .Values.nativeSidecar }}
  restartPolicy: Always
  {{- end }}
  args:
    - run
    - -c
    - /etc/pushbridge/config/config.yaml
    {{- with .Values.pushbridge.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: https
      containerPort: {{ .Values.pushbridge.ports.https }}
      protocol: TCP
    {{- with .Values.pushbridge.ports.http }}
    - name: http
      containerPort: {{ . }}
      protocol: TCP
    {{- end }}
    - name: admin
      containerPort: {{ .Values.pushbridge.ports.admin }}
      protocol: TCP
  {{- if or .Values.pushbridge.env .Values.redis.existingSecret }}
  env:
    {{- with .Values.redis.existingSecret }}
    - name: {{ $.Values.redis.envName }}
      valueFrom:
        secretKeyRef:
          name: {{ . }}
          key: {{ $.Values.redis.secretKey }}
    {{- end }}
    {{- with .Values.pushbridge.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  {{- with .Values.pushbridge.envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.pushbridge.startupProbe }}
  startupProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.pushbridge.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.pushbridge.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if gt (int .Values.pushbridge.preStopSleepSeconds) 0 }}
  lifecycle:
    preStop:
      # Keep serving while endpoints and load balancers forget this pod; SIGTERM (drain) comes after.
      sleep:
        seconds: {{ .Values.pushbridge.preStopSleepSeconds | int }}
  {{- end }}
  {{- with .Values.pushbridge.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.pushbridge.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    # A directory mount, not subPath: ConfigMap updates swap the ..data symlink and pushbridge reloads.
    - name: config
      mountPath: /etc/pushbridge/config
      readOnly: true
    # Rotated certificates land here the same way; pushbridge reloads them.
    - name: tls
      mountPath: /etc/pushbridge/tls
      readOnly: true
    {{- with .Values.pushbridge.volumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
