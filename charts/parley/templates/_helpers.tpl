{{/*
Names, labels and the per-service wiring every template shares.
*/}}

{{- define "parley.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>", or just the release name when it already contains the chart name. */}}
{{- define "parley.fullname" -}}
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

{{- define "parley.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The services this chart deploys: the values key that configures each, its HTTP port (the one its image exposes and
its settings default to), what its image runs, and for the Kafka consumers the topic (a key of .Values.topics) whose
lag KEDA reads. Used as: include "parley.components" . | fromYaml
*/}}
{{- define "parley.components" -}}
engine:
  valuesKey: engine
  port: 8700
  module: parley_engine
ingest:
  valuesKey: ingest
  port: 8701
  factory: parley_ingest.app:create_app
  topic: requests
job-watcher:
  valuesKey: jobWatcher
  port: 8702
  factory: parley_job_watcher.app:create_app
  topic: jobs
insight-fetcher:
  valuesKey: insightFetcher
  port: 8703
  factory: parley_insight_fetcher.app:create_app
  topic: completions
{{- end }}

{{/* The Kafka consumers, in pipeline order. */}}
{{- define "parley.pipelineServices" -}}
- ingest
- job-watcher
- insight-fetcher
{{- end }}

{{/* A service's resource name. Argument: dict "root" $ "component" "<service>". */}}
{{- define "parley.componentName" -}}
{{- printf "%s-%s" (include "parley.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Argument: dict "root" $ "component" "<service>". */}}
{{- define "parley.selectorLabels" -}}
app.kubernetes.io/name: {{ include "parley.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Argument: dict "root" $ "component" "<service>" (component may be empty for release-wide objects). */}}
{{- define "parley.labels" -}}
helm.sh/chart: {{ include "parley.chart" .root }}
{{- if .component }}
{{ include "parley.selectorLabels" . }}
{{- else }}
app.kubernetes.io/name: {{ include "parley.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: parley
{{- end }}

{{/* Argument: dict "root" $ "component" "<service>". */}}
{{- define "parley.image" -}}
{{- $values := get .root.Values (get (include "parley.components" .root | fromYaml) .component).valuesKey }}
{{- $tag := $values.imageTag | default .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- if .root.Values.image.registry }}
{{- printf "%s/parley-%s:%s" (trimSuffix "/" .root.Values.image.registry) .component $tag }}
{{- else }}
{{- printf "parley-%s:%s" .component $tag }}
{{- end }}
{{- end }}

{{- define "parley.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "parley.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret the pods read: the user's own, or the one this chart creates. */}}
{{- define "parley.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "parley.fullname" .) }}
{{- end }}

{{/*
A generated secret value: the one already stored in this release's Secret (so upgrades keep it), or a new random
one. Argument: dict "root" $ "key" "<key in the Secret>".
*/}}
{{- define "parley.generatedSecret" -}}
{{- $stored := lookup "v1" "Secret" .root.Release.Namespace (include "parley.fullname" .root) }}
{{- if and $stored $stored.data (hasKey $stored.data .key) }}
{{- index $stored.data .key | b64dec }}
{{- else }}
{{- randAlphaNum 48 }}
{{- end }}
{{- end }}

{{/* The provider the pipeline calls: provider.url, or this release's engine. */}}
{{- define "parley.providerUrl" -}}
{{- if .Values.provider.url }}
{{- .Values.provider.url }}
{{- else }}
{{- printf "http://%s:8700" (include "parley.componentName" (dict "root" . "component" "engine")) }}
{{- end }}
{{- end }}

{{/* The callback URL ingest passes to the provider, or nothing. */}}
{{- define "parley.webhookUrl" -}}
{{- if .Values.ingest.webhookUrl }}
{{- .Values.ingest.webhookUrl }}
{{- else if and .Values.engine.enabled .Values.jobWatcher.enabled }}
{{- printf "http://%s:8702/webhooks/jobs" (include "parley.componentName" (dict "root" . "component" "job-watcher")) }}
{{- end }}
{{- end }}

{{/* Seconds uvicorn gives open HTTP requests on SIGTERM before the app's own shutdown starts (as `parley run`). */}}
{{- define "parley.httpGraceSeconds" -}}
{{- add .Values.shutdown.graceSeconds 5 }}
{{- end }}

{{/*
terminationGracePeriodSeconds of a pipeline pod. uvicorn first waits for HTTP requests (httpGraceSeconds), then runs
the app's shutdown, where the broker drains in-flight batches (graceSeconds) before the producer closes: the pod
must outlast both, or the kubelet's SIGKILL cuts the drain short.
*/}}
{{- define "parley.terminationGracePeriodSeconds" -}}
{{- add (include "parley.httpGraceSeconds" .) .Values.shutdown.graceSeconds .Values.shutdown.marginSeconds }}
{{- end }}

{{/* Whether the brokers are reached over TLS. */}}
{{- define "parley.kafkaTls" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") }}true{{- end }}
{{- end }}

{{- define "parley.kafkaTlsDir" -}}/etc/parley/kafka-tls{{- end }}

{{/*
The non-secret PARLEY_* settings (and OTEL_* variables) of one service, as ConfigMap data. The ConfigMap and the
pods' checksum/config annotation both render it, so a pod rolls exactly when its own settings change.
Argument: dict "root" $ "component" "<service>".
*/}}
{{- define "parley.configData" -}}
{{- $root := .root }}
{{- $components := include "parley.components" $root | fromYaml }}
{{- $component := get $components .component }}
{{- $values := get $root.Values $component.valuesKey }}
{{- $data := dict }}
{{- $_ := set $data "PARLEY_HTTP_HOST" "0.0.0.0" }}
{{- $_ := set $data "PARLEY_HTTP_PORT" (toString $component.port) }}
{{- $_ := set $data "PARLEY_LOG_LEVEL" $root.Values.logLevel }}
{{- if eq .component "engine" }}
{{- $_ := set $data "PARLEY_APP_ID" $root.Values.provider.appId }}
{{- $_ := set $data "PARLEY_ENGINE_DATA_DIR" "/var/lib/parley/engine" }}
{{- $_ := set $data "PARLEY_WORKERS" (toString $values.workers) }}
{{- /* The engine calls back only public addresses, and this release's job-watcher. */}}
{{- with include "parley.webhookUrl" $root }}
{{- $_ := set $data "PARLEY_TRUSTED_WEBHOOK_URLS" . }}
{{- end }}
{{- else }}
{{- $kafka := $root.Values.kafka }}
{{- $_ := set $data "PARLEY_KAFKA__BOOTSTRAP_SERVERS" $kafka.bootstrapServers }}
{{- $_ := set $data "PARLEY_KAFKA__SECURITY_PROTOCOL" $kafka.securityProtocol }}
{{- $_ := set $data "PARLEY_KAFKA__TOPIC_PARTITIONS" (toString $kafka.topicPartitions) }}
{{- $_ := set $data "PARLEY_KAFKA__TOPIC_REPLICATION_FACTOR" (toString $kafka.topicReplicationFactor) }}
{{- if $kafka.sasl.mechanism }}
{{- $_ := set $data "PARLEY_KAFKA__SASL_MECHANISM" $kafka.sasl.mechanism }}
{{- $_ := set $data "PARLEY_KAFKA__SASL_USERNAME" $kafka.sasl.username }}
{{- end }}
{{- if $kafka.tls.secretName }}
{{- $dir := include "parley.kafkaTlsDir" $root }}
{{- $_ := set $data "PARLEY_KAFKA__SSL_CAFILE" (printf "%s/%s" $dir $kafka.tls.caKey) }}
{{- if $kafka.tls.certKey }}
{{- $_ := set $data "PARLEY_KAFKA__SSL_CERTFILE" (printf "%s/%s" $dir $kafka.tls.certKey) }}
{{- $_ := set $data "PARLEY_KAFKA__SSL_KEYFILE" (printf "%s/%s" $dir $kafka.tls.keyKey) }}
{{- end }}
{{- end }}
{{- $topics := $root.Values.topics }}
{{- $_ := set $data "PARLEY_TOPICS__REQUESTS" $topics.requests }}
{{- $_ := set $data "PARLEY_TOPICS__JOBS" $topics.jobs }}
{{- $_ := set $data "PARLEY_TOPICS__COMPLETIONS" $topics.completions }}
{{- $_ := set $data "PARLEY_TOPICS__INSIGHTS" $topics.insights }}
{{- $_ := set $data "PARLEY_TOPICS__LIVE" $topics.live }}
{{- $_ := set $data "PARLEY_TOPICS__DEAD_LETTERS" $topics.deadLetters }}
{{- $_ := set $data "PARLEY_PROVIDER__URL" (include "parley.providerUrl" $root) }}
{{- $_ := set $data "PARLEY_PROVIDER__APP_ID" $root.Values.provider.appId }}
{{- $_ := set $data "PARLEY_SHUTDOWN_GRACE_SECONDS" (toString $root.Values.shutdown.graceSeconds) }}
{{- $_ := set $data "PARLEY_CONSUMER_STALL_SECONDS" (toString $root.Values.consumerStallSeconds) }}
{{- $_ := set $data "PARLEY_GROUP_ID" $values.groupId }}
{{- if eq .component "ingest" }}
{{- with include "parley.webhookUrl" $root }}
{{- $_ := set $data "PARLEY_WEBHOOK_URL" . }}
{{- end }}
{{- end }}
{{- range $name, $value := $root.Values.config }}
{{- $_ := set $data $name (toString $value) }}
{{- end }}
{{- end }}
{{- if $root.Values.otel.endpoint }}
{{- $_ := set $data "OTEL_EXPORTER_OTLP_ENDPOINT" $root.Values.otel.endpoint }}
{{- $_ := set $data "OTEL_SERVICE_NAME" (printf "parley-%s" .component) }}
{{- end }}
{{- range $name, $value := $values.config }}
{{- $_ := set $data $name (toString $value) }}
{{- end }}
{{- toYaml $data }}
{{- end }}

{{/*
Pod annotations that roll a service's pods when what they read changes: its ConfigMap data, and the secret values
given in the chart's values (a Secret you manage yourself is not seen: restart the deployments after changing it).
Argument: dict "root" $ "component" "<service>".
*/}}
{{- define "parley.checksumAnnotations" -}}
checksum/config: {{ include "parley.configData" . | sha256sum }}
checksum/secret: {{ toJson .root.Values.secrets | sha256sum }}
{{- end }}

{{/* Argument: dict "root" $ "component" "<service>". */}}
{{- define "parley.podAnnotations" -}}
{{- $components := include "parley.components" .root | fromYaml }}
{{- $component := get $components .component }}
{{- include "parley.checksumAnnotations" . }}
{{- if .root.Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ $component.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .root.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
secretKeyRef environment entries. Argument: dict "root" $ "entries" (list of dict "name" "key" "optional").
*/}}
{{- define "parley.secretEnv" -}}
{{- $secret := include "parley.secretName" .root }}
{{- range .entries }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}

{{/*
Everything wrong with the values that the schema cannot say, each with the fix. Rendered by validate.yaml.
*/}}
{{- define "parley.validate" -}}
{{- $v := .Values }}
{{- if and $v.keda.enabled $v.autoscaling.enabled }}
{{- fail "keda.enabled and autoscaling.enabled both scale the pipeline services: enable one of them" }}
{{- end }}
{{- if and (not $v.engine.enabled) (not $v.provider.url) }}
{{- fail "provider.url is required when engine.enabled is false: the base URL of the Symbl-compatible API to call" }}
{{- end }}
{{- if and (not $v.engine.enabled) (not $v.secrets.existingSecret) (not $v.secrets.appSecret) }}
{{- fail "secrets.appSecret is required with an external provider: its appSecret (or use secrets.existingSecret)" }}
{{- end }}
{{- $sasl := hasPrefix "SASL_" $v.kafka.securityProtocol }}
{{- if and $sasl (not $v.kafka.sasl.mechanism) }}
{{- fail (printf "kafka.sasl.mechanism is required with kafka.securityProtocol %s" $v.kafka.securityProtocol) }}
{{- end }}
{{- if and $v.kafka.sasl.mechanism (not $sasl) }}
{{- fail "kafka.sasl.mechanism needs kafka.securityProtocol SASL_SSL or SASL_PLAINTEXT" }}
{{- end }}
{{- if and $v.kafka.sasl.mechanism (not $v.kafka.sasl.username) }}
{{- fail "kafka.sasl.username is required with kafka.sasl.mechanism" }}
{{- end }}
{{- if and $v.kafka.sasl.mechanism (not $v.secrets.existingSecret) (not $v.secrets.kafkaSaslPassword) }}
{{- fail "secrets.kafkaSaslPassword is required with kafka.sasl.mechanism (or put kafka-sasl-password into secrets.existingSecret)" }}
{{- end }}
{{- if and $v.kafka.tls.secretName (not (include "parley.kafkaTls" .)) }}
{{- fail "kafka.tls.secretName needs kafka.securityProtocol SSL or SASL_SSL" }}
{{- end }}
{{- if ne (empty $v.kafka.tls.certKey) (empty $v.kafka.tls.keyKey) }}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey go together (mutual TLS)" }}
{{- end }}
{{- if and $v.engine.enabled (eq $v.engine.database.type "postgres") (not $v.secrets.existingSecret) (not $v.secrets.databaseUrl) }}
{{- fail "secrets.databaseUrl is required with engine.database.type postgres (postgresql+asyncpg://user:password@host:5432/db)" }}
{{- end }}
{{- if and $v.engine.enabled (gt (int $v.engine.replicas) 1) }}
{{- if ne $v.engine.database.type "postgres" }}
{{- fail "engine.replicas > 1 needs engine.database.type postgres: one SQLite file serves one replica" }}
{{- end }}
{{- $shared := and $v.engine.persistence.enabled (or $v.engine.persistence.existingClaim (has "ReadWriteMany" $v.engine.persistence.accessModes)) }}
{{- if not $shared }}
{{- fail "engine.replicas > 1 needs a shared media volume: engine.persistence with accessModes [ReadWriteMany] or an existingClaim that is" }}
{{- end }}
{{- end }}
{{- range $name := include "parley.pipelineServices" . | fromYamlArray }}
{{- $key := get (get (include "parley.components" $ | fromYaml) $name) "valuesKey" }}
{{- $service := get $v $key }}
{{- if gt (int $service.minReplicas) (int $service.maxReplicas) }}
{{- fail (printf "%s.minReplicas is above %s.maxReplicas" $key $key) }}
{{- end }}
{{- end }}
{{- end }}
