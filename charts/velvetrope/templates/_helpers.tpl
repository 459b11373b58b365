{{- define "velvetrope.labels" -}}
app.kubernetes.io/name: velvetrope-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}
{{- define "velvetrope.selector" -}}
app.kubernetes.io/name: velvetrope-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- define "velvetrope.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
