{{- define "swarmer.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "swarmer.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "swarmer.tokenSecret" -}}
{{- if .Values.clusterToken.existingSecret -}}
{{ .Values.clusterToken.existingSecret }}
{{- else -}}
{{ include "swarmer.fullname" . }}-token
{{- end -}}
{{- end -}}

{{- define "swarmer.planConfigMap" -}}
{{- if .Values.plan.existingConfigMap -}}
{{ .Values.plan.existingConfigMap }}
{{- else -}}
{{ include "swarmer.fullname" . }}-plan
{{- end -}}
{{- end -}}
