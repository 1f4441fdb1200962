{{/*
Each service's NATS identity where NATS_CA_FILE, NATS_TLS_*_FILE and NATS_NKEY_SEED_FILE (config.yaml)
look for it: the CA and its client certificate (cert-manager, nats.yaml) and its own nkey seed, in one
read-only folder. "mount" goes into the container's volumeMounts, "volume" into the pod's volumes;
"tls" names the certificate's Secret, "seed" the nkey's, "residueSeed" (crm-sync only) adds the
residue scanner's seed.
*/}}
{{- define "gateway.natsMount" -}}
- name: nats
  mountPath: /etc/gateway/nats
  readOnly: true
{{- end }}

{{- define "gateway.natsVolume" -}}
- name: nats
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ .tls }}
          items:
            - { key: ca.crt, path: ca.crt }
            - { key: tls.crt, path: tls.crt }
            - { key: tls.key, path: tls.key }
      - secret:
          name: {{ .seed }}
          items:
            - { key: seed, path: seed }
{{- if .residueSeed }}
      # The residue scanner's identity, for /residue and gateway_residue_items (CRM_SYNC_RESIDUE_NKEY_SEED_FILE).
      - secret:
          name: {{ .residueSeed }}
          items:
            - { key: seed, path: residue-seed }
{{- end }}
{{- end }}

{{/*
An image: <registry>/gateway/<name>, then @<digest> when one is set (it wins over the tag), else
:<tag> (the image's own, else images.tag). Called with (list $ "<name>" "<key in images>").
*/}}
{{- define "gateway.image" -}}
{{- $root := index . 0 }}{{ $name := index . 1 }}{{ $key := index . 2 }}
{{- $images := $root.Values.images }}
{{- $own := index $images $key | default dict }}
{{- $repository := printf "gateway/%s" $name }}
{{- if $images.registry }}{{ $repository = printf "%s/%s" $images.registry $repository }}{{ end }}
{{- if $own.digest }}{{ printf "%s@%s" $repository $own.digest }}{{ else }}{{ printf "%s:%s" $repository ($own.tag | default $images.tag) }}{{ end }}
{{- end }}

{{/* A pod template's annotation that rolls its pods when their configuration (config.yaml) changes. */}}
{{- define "gateway.configChecksum" -}}
checksum/config: {{ include (print .Template.BasePath "/config.yaml") . | sha256sum }}
{{- end }}

{{/* How strictly the SFUs, signaling, the recorders and crm-sync spread across zones (values: zones.strict). */}}
{{- define "gateway.zoneSpread" -}}
{{ if .Values.zones.strict }}DoNotSchedule{{ else }}ScheduleAnyway{{ end }}
{{- end }}

{{/* The label a kube-prometheus-stack release selects ServiceMonitors and PrometheusRules by. */}}
{{- define "gateway.monitoringLabel" -}}
release: {{ .Values.monitoring.release }}
{{- end }}

{{/* The media nodes' addresses as NetworkPolicy peers (generic and calico CNIs). */}}
{{- define "gateway.nodeBlocks" -}}
{{- range .Values.networkPolicy.nodeCIDRs }}
- ipBlock:
    cidr: {{ . }}
{{- end }}
{{- end }}

{{/* The namespace users' requests come from into the cluster: the ingress controller's, or the Gateway's proxies'. */}}
{{- define "gateway.edgeNamespace" -}}
{{ if eq .Values.edge.kind "ingress" }}{{ .Values.edge.ingress.namespace }}{{ else }}{{ .Values.edge.gateway.proxyNamespace | default .Values.edge.gateway.namespace }}{{ end }}
{{- end }}

{{/* The Gateway the HTTPRoutes attach to (edge.gateway). */}}
{{- define "gateway.parentRef" -}}
- group: gateway.networking.k8s.io
  kind: Gateway
  name: {{ .Values.edge.gateway.name }}
  namespace: {{ .Values.edge.gateway.namespace }}
  {{- with .Values.edge.gateway.sectionName }}
  sectionName: {{ . }}
  {{- end }}
{{- end }}

{{/*
Where the edge's proxies run outside the cluster (GKE's Gateway controller: Google's front ends
send to the pods directly), their address ranges (edge.sourceCIDRs) as NetworkPolicy peers.
*/}}
{{- define "gateway.edgeSourceBlocks" -}}
{{- range .Values.edge.sourceCIDRs }}
- ipBlock:
    cidr: {{ . }}
{{- end }}
{{- end }}

{{/* The ports the media nodes take out of the ephemeral range: the SFU's media ports (room for
64 workers, whatever an overlay sets), its pipes, coturn's relays. */}}
{{- define "gateway.reservedPorts" -}}
40000-40063,42000-42999{{ if .Values.turn.enabled }},49152-65535{{ end }}
{{- end }}

{{/*
gRPC mutual TLS (values: grpcTls): the service's certificate (grpc-tls.yaml) where GRPC_TLS_*_FILE
(config.yaml) look for it. "gateway.grpcTlsMount" goes into the container's volumeMounts,
"gateway.grpcTlsVolume" (called with (list $ "<service>")) into the pod's volumes, last in each.
*/}}
{{- define "gateway.grpcTlsMount" -}}
{{- if .Values.grpcTls.enabled }}
- name: grpc-tls
  mountPath: /etc/gateway/grpc-tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "gateway.grpcTlsVolume" -}}
{{- $root := index . 0 }}
{{- if $root.Values.grpcTls.enabled }}
- name: grpc-tls
  secret:
    secretName: {{ index . 1 }}-grpc-tls
    defaultMode: 0440
{{- end }}
{{- end }}

{{/* The GRPC_TLS_* settings of a service that speaks gRPC, in its ConfigMap (values: grpcTls). */}}
{{- define "gateway.grpcTlsConfig" -}}
{{- if .Values.grpcTls.enabled }}
# Its gRPC certificate (grpc-tls.yaml): ca.crt, tls.crt and tls.key of the mounted Secret.
GRPC_TLS_CA_FILE: /etc/gateway/grpc-tls/ca.crt
GRPC_TLS_CERT_FILE: /etc/gateway/grpc-tls/tls.crt
GRPC_TLS_KEY_FILE: /etc/gateway/grpc-tls/tls.key
{{- end }}
{{- end }}

{{/*
The tenants' KMS aliases (values: kms), last in the environment of a service that wraps or
unwraps data keys: a file of the tenant-keys mount, taken up again when the Secret changes.
*/}}
{{- define "gateway.kmsEnv" -}}
{{- if .Values.kms.enabled }}
- name: GATEWAY_KMS_KEYS_FILE
  value: /etc/gateway/tenant-keys/GATEWAY_KMS_KEYS
{{- end }}
{{- end }}

{{/* The ServiceAccount a service that wraps or unwraps data keys runs as, for its IAM role (kms.yaml). */}}
{{- define "gateway.kmsServiceAccount" -}}
{{- $root := index . 0 }}
{{- if $root.Values.kms.enabled }}
serviceAccountName: {{ index . 1 }}
{{- end }}
{{- end }}

{{/* An ExternalSecret's store and refresh (values: secrets.externalSecrets). */}}
{{- define "gateway.externalSecretSource" -}}
refreshInterval: {{ .refreshInterval }}
secretStoreRef:
  kind: {{ .storeRef.kind }}
  name: {{ .storeRef.name }}
{{- end }}
