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
