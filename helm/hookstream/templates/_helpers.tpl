{{- define "hookstream.name" -}}{{ .Chart.Name }}{{- end -}}

{{- define "hookstream.labels" -}}
app.kubernetes.io/name: {{ include "hookstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "hookstream.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag }}{{- end -}}

{{/* Environment every container gets: the ConfigMap, the database URL from its Secret, extras. */}}
{{- define "hookstream.env" -}}
envFrom:
  - configMapRef:
      name: {{ .Release.Name }}-config
env:
  - name: HOOKSTREAM_DATABASE__URL
    valueFrom:
      secretKeyRef:
        name: {{ .Values.database.existingSecret }}
        key: {{ .Values.database.urlKey }}
{{- with .Values.extraEnv }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
