{{- define "dodai.labels" -}}
app.kubernetes.io/name: dodai
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "dodai.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{/* The cluster directory: cluster.yaml from the ConfigMap, secrets.yaml
     from the Secret, read-only. */}}
{{- define "dodai.clusterVolume" -}}
- name: cluster
  projected:
    sources:
    - configMap:
        name: {{ .Values.clusterConfigMap }}
        items: [{key: cluster.yaml, path: cluster.yaml}]
    - secret:
        name: {{ .Values.clusterSecret }}
        items: [{key: secrets.yaml, path: secrets.yaml, mode: 0400}]
{{- end -}}

{{- define "dodai.podEnv" -}}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
{{- end -}}
