{{/* Chart name, overridable. */}}
{{- define "flow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Prefix of every object's name: <release>-<chart>, or just the release name when it already holds
the chart name. Kept to 50 characters so that "-<component>" suffixes stay within 63.
*/}}
{{- define "flow.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | lower | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "flow.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | lower | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | lower | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects: <fullname>-<component>. Takes (dict "root" $ "component" "ingest"). */}}
{{- define "flow.componentName" -}}
{{- printf "%s-%s" (include "flow.fullname" .root) .component -}}
{{- end -}}

{{/* Selector labels; stable across upgrades. Takes (dict "root" $ "component" "ingest"). */}}
{{- define "flow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* All labels. Takes (dict "root" $ "component" "ingest"); component may be empty. */}}
{{- define "flow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "flow.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: flow
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{/* The ServiceAccount a workload runs as: its own. Takes (dict "root" $ "component" "ingest"). */}}
{{- define "flow.serviceAccountName" -}}
{{- $sa := (index .root.Values .component).serviceAccount -}}
{{- if $sa.create -}}
{{- default (include "flow.componentName" .) $sa.name -}}
{{- else -}}
{{- required (printf "%s.serviceAccount.name must name an existing ServiceAccount when %s.serviceAccount.create is false" .component .component) $sa.name -}}
{{- end -}}
{{- end -}}

{{/* repository[:tag][@digest]; the tag defaults to appVersion. Takes (dict "root" $ "image" .Values.ingest.image). */}}
{{- define "flow.image" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag -}}
{{- if .image.digest -}}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
The database env of a service. Takes (dict "root" $ "prefix" "FLOW_INGEST_" "target" "primary"),
target primary (ingest, engine) or replica (query). In secret mode the URL, credentials included,
is a Secret key reference; in secretsManager mode it is a plain, credential-free value and the
credentials come from the Secrets Manager secret the service reads itself.
*/}}
{{- define "flow.databaseEnv" -}}
{{- $db := .root.Values.database -}}
{{- $primary := eq .target "primary" -}}
{{- if eq $db.mode "secretsManager" -}}
{{- $urlKey := ternary "primaryUrl" "replicaUrl" $primary -}}
{{- $url := required (printf "database.%s (without credentials) is required in secretsManager mode" $urlKey) (ternary $db.primaryUrl $db.replicaUrl $primary) -}}
{{- include "flow.checkCredentialFree" (dict "key" (printf "database.%s" $urlKey) "url" $url) -}}
{{- $primaryId := required "database.primarySecretId (the Secrets Manager secret's name or ARN) is required in secretsManager mode" $db.primarySecretId -}}
{{- $secretId := ternary $primaryId (default $primaryId $db.replicaSecretId) $primary -}}
- name: {{ .prefix }}DATABASE_URL
  value: {{ $url | quote }}
- name: {{ .prefix }}DATABASE_SECRET_ID
  value: {{ $secretId | quote }}
- name: {{ .prefix }}DATABASE_SECRET_REFRESH_SECONDS
  value: {{ $db.secretRefreshSeconds | quote }}
{{- if not $primary }}
{{- /* replicaUrl names the replica; the secret (flow_app's names the primary) gives the login only */}}
- name: {{ .prefix }}DATABASE_SERVER_FROM_SECRET
  value: "false"
{{- end }}
{{- else -}}
{{- $name := required "database.secretName must name the Secret holding the database URLs" $db.secretName -}}
- name: {{ .prefix }}DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ ternary $name (default $name $db.replicaSecretName) $primary }}
      key: {{ ternary $db.primaryKey $db.replicaKey $primary }}
{{- end }}
{{ include "flow.databaseTlsEnv" (dict "root" .root "prefix" .prefix) }}
{{- end -}}

{{/*
The URL, with credentials, that flow-migrate (key database.migrationKey: the schema owner's) or the
reconciliation (database.primaryKey: the application's, reading is all it does) takes from the
Kubernetes Secret, in either mode: a Secret key reference, never a plain value, never on a command
line. Takes (dict "root" $ "key" "migrationKey"|"primaryKey").
*/}}
{{- define "flow.jobDatabaseUrl" -}}
{{- $db := .root.Values.database -}}
{{- $message := "database.secretName must name the Secret holding the database URLs" -}}
{{- if eq $db.mode "secretsManager" -}}
{{- $message = printf "database.secretName must name a Secret holding a URL with credentials (key database.%s), also in secretsManager mode: flow-migrate and the reconciliation read only FLOW_DATABASE_URL (or disable migrations and reconcile)" .key -}}
{{- end -}}
{{- if eq $db.migrationKey $db.primaryKey -}}
{{- fail "database.migrationKey must differ from database.primaryKey: the migrations log in as the schema's owner, the services as a role that owns nothing" -}}
{{- end -}}
valueFrom:
  secretKeyRef:
    name: {{ required $message $db.secretName }}
    key: {{ index $db .key }}
{{- end -}}

{{/*
TLS to the database: the sslmode and, when the server is verified, the CA bundle's path. Takes
(dict "root" $ "prefix" "FLOW_INGEST_"), prefix "FLOW_" for flow-migrate and the reconciliation.
*/}}
{{- define "flow.databaseTlsEnv" -}}
{{- $tls := .root.Values.database.tls -}}
- name: {{ .prefix }}DATABASE_SSLMODE
  value: {{ $tls.mode | quote }}
{{- if include "flow.databaseCa" .root }}
- name: {{ .prefix }}DATABASE_SSLROOTCERT
  value: {{ printf "/etc/flow/database-ca/%s" $tls.caKey | quote }}
{{- end }}
{{- end -}}

{{/* The ConfigMap holding the database's CA bundle, when the server is verified; else empty. */}}
{{- define "flow.databaseCa" -}}
{{- $tls := .Values.database.tls -}}
{{- if has $tls.mode (list "verify-ca" "verify-full") -}}
{{- if and $tls.caBundle $tls.caConfigMap -}}
{{- fail "database.tls: give caBundle or caConfigMap, not both" -}}
{{- end -}}
{{- if $tls.caBundle -}}
{{- include "flow.componentName" (dict "root" . "component" "database-ca") -}}
{{- else -}}
{{- required (printf "database.tls.mode %s needs the CA bundle the server's certificate chains to: database.tls.caConfigMap (an existing ConfigMap) or database.tls.caBundle (e.g. --set-file database.tls.caBundle=global-bundle.pem, RDS's from https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem)" $tls.mode) $tls.caConfigMap -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Fails when a plain-value URL carries credentials (the schema refuses them too). Takes (dict "key" "database.primaryUrl" "url" ...). */}}
{{- define "flow.checkCredentialFree" -}}
{{- if regexMatch "^[a-z0-9+.-]+://[^/?#]*@" .url -}}
{{- fail (printf "%s must not hold a user or password in secretsManager mode: the credentials come from the secret" .key) -}}
{{- end -}}
{{- end -}}

{{/* FLOW_AUTH_* of the ingest and query APIs (the engine serves no API). */}}
{{- define "flow.authEnv" -}}
{{- $a := .Values.auth -}}
- name: FLOW_AUTH_ENABLED
  value: {{ $a.enabled | quote }}
{{- if $a.enabled }}
{{- $issuer := required "auth.issuer (the tokens' issuer, e.g. https://login.microsoftonline.com/<tenant-id>/v2.0) is required when auth.enabled" $a.issuer }}
{{- $audience := $a.audience }}
{{- if kindIs "slice" $audience }}{{ $audience = join " " $audience }}{{ end }}
{{- $audience = regexReplaceAll "[\\s,]+" (toString $audience) " " | trim }}
{{- if and (not $a.discoveryUrl) (not (regexMatch "^(https://[^/?#\\s]+|http://(localhost|127\\.[0-9]+\\.[0-9]+\\.[0-9]+|\\[::1\\])([:/?#]|$))" $issuer)) }}
{{- fail "auth.issuer must be an https URL for OIDC discovery (plain http only to localhost); or set auth.discoveryUrl" }}
{{- end }}
- name: FLOW_AUTH_ISSUER
  value: {{ $issuer | quote }}
- name: FLOW_AUTH_AUDIENCE
  value: {{ required "auth.audience (one or more accepted audiences, e.g. \"api://flow <client-id>\") is required when auth.enabled" $audience | quote }}
{{- with $a.discoveryUrl }}
- name: FLOW_AUTH_DISCOVERY_URL
  value: {{ . | quote }}
{{- end }}
{{- with $a.algorithms }}
- name: FLOW_AUTH_ALGORITHMS
  value: {{ join " " . | quote }}
{{- end }}
- name: FLOW_AUTH_JWKS_CACHE_SECONDS
  value: {{ $a.jwksCacheSeconds | quote }}
- name: FLOW_AUTH_LEEWAY_SECONDS
  value: {{ $a.leewaySeconds | quote }}
{{- end }}
{{- end -}}

{{/* AWS env of a service; takes (dict "root" $ "prefix" "FLOW_INGEST_"). */}}
{{- define "flow.awsEnv" -}}
- name: {{ .prefix }}AWS_REGION
  value: {{ .root.Values.aws.region | quote }}
{{- with .root.Values.aws.endpointUrl }}
- name: {{ $.prefix }}AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Hardened pod and container security contexts, the same for every FLOW pod. */}}
{{- define "flow.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "flow.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Pod-spec fields every FLOW pod shares: scheduling, pull secrets, security context, /tmp. Takes the
root context, or (dict "root" $ "tmpMi" N) for a /tmp larger than 64Mi.
*/}}
{{- define "flow.podCommon" -}}
{{- $root := .root | default . -}}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
securityContext: {{- include "flow.podSecurityContext" $root | nindent 2 }}
volumes:
  # The root filesystem is read-only; Python's tempfile and friends write here.
  - name: tmp
    emptyDir:
      sizeLimit: {{ .tmpMi | default 64 }}Mi
  {{- with include "flow.databaseCa" $root }}
  # The CA bundle the database server's certificate must chain to (database.tls).
  - name: database-ca
    configMap:
      name: {{ . }}
      items:
        - key: {{ $root.Values.database.tls.caKey }}
          path: {{ $root.Values.database.tls.caKey }}
      defaultMode: 0444
  {{- end }}
{{- end -}}

{{/* The container's mounts: /tmp, and the database's CA bundle (read-only) when the server is verified. */}}
{{- define "flow.tmpMount" -}}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  {{- if include "flow.databaseCa" . }}
  - name: database-ca
    mountPath: /etc/flow/database-ca
    readOnly: true
  {{- end }}
{{- end -}}

{{/*
A long-running service: its Deployment and the Service in front of it. Takes a dict:
  root        the chart's root context ($)
  component   ingest, engine or query
  values      the component's values (.Values.ingest, ...)
  env         the container's env list, as YAML
  autoscaled  true when something else (KEDA) owns the replica count
  readyTimeout seconds the readiness check may take (its dependency checks run one after another)
/healthz, /readyz and /metrics are served on the container port `health` (values.healthPort,
FLOW_<SERVICE>_HEALTH_PORT), apart from the API's `http`: probes and scraping use it, the Service
exposes it only for the ServiceMonitor.
*/}}
{{- define "flow.service" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $name := include "flow.componentName" . -}}
{{- if eq (int $v.healthPort) (int $v.port) }}
{{- fail (printf "%s.healthPort must differ from %s.port" .component .component) }}
{{- end }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels: {{- include "flow.labels" . | nindent 4 }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels: {{- include "flow.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  template:
    metadata:
      labels: {{- include "flow.labels" . | nindent 8 }}
      {{- $annotations := dict }}
      {{- if $root.Values.metricsAnnotations }}
      {{- $_ := set $annotations "prometheus.io/scrape" "true" }}
      {{- $_ := set $annotations "prometheus.io/port" (toString $v.healthPort) }}
      {{- $_ := set $annotations "prometheus.io/path" "/metrics" }}
      {{- end }}
      {{- $annotations = merge (deepCopy ($v.podAnnotations | default dict)) $annotations }}
      {{- with $annotations }}
      annotations: {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "flow.serviceAccountName" . }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      {{- $tmpMi := 64 }}
      {{- if and (eq .component "query") $root.Values.archive.enabled }}
      {{- /* query keeps archive files in /tmp: room for its cache on top */}}
      {{- $tmpMi = add 64 (div (add (int64 $root.Values.archive.queryCacheBytes) 1048575) 1048576) }}
      {{- end }}
      {{- include "flow.podCommon" (dict "root" $root "tmpMi" $tmpMi) | nindent 6 }}
      {{- with $root.Values.topologySpreadKey }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: {{ . }}
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels: {{- include "flow.selectorLabels" $ | nindent 14 }}
          matchLabelKeys: [pod-template-hash]
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "flow.image" (dict "root" $root "image" $v.image) | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ $v.port }}
              protocol: TCP
            - name: health
              containerPort: {{ $v.healthPort }}
              protocol: TCP
          env: {{- .env | nindent 12 }}
            - name: {{ printf "FLOW_%s_HEALTH_PORT" (upper .component) }}
              value: {{ $v.healthPort | quote }}
            {{- include "flow.tracingEnv" $root | trim | nindent 12 }}
          startupProbe:
            httpGet:
              path: /healthz
              port: health
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 24
          livenessProbe:
            httpGet:
              path: /healthz
              port: health
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /readyz
              port: health
            periodSeconds: 10
            timeoutSeconds: {{ .readyTimeout }}
            failureThreshold: 2
          {{- with $v.preStopSleepSeconds }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ . }}
          {{- end }}
          resources: {{- toYaml $v.resources | nindent 12 }}
          securityContext: {{- include "flow.containerSecurityContext" $root | nindent 12 }}
          {{- include "flow.tmpMount" $root | nindent 10 }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels: {{- include "flow.labels" . | nindent 4 }}
spec:
  type: {{ $v.service.type }}
  selector: {{- include "flow.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ $v.service.port }}
      targetPort: http
      protocol: TCP
    {{- if $root.Values.monitoring.serviceMonitor.enabled }}
    - name: health  # for the ServiceMonitor only; the NetworkPolicy admits the monitoring namespace alone
      port: {{ $v.healthPort }}
      targetPort: health
      protocol: TCP
    {{- end }}
{{- if $v.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  labels: {{- include "flow.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ $v.pdb.maxUnavailable }}
  selector:
    matchLabels: {{- include "flow.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* OpenTelemetry traces (flow_kit.tracing): off unless an OTLP endpoint is given. */}}
{{- define "flow.tracingEnv" -}}
{{- with .Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $.Values.tracing.sampler | quote }}
{{- with $.Values.tracing.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end -}}
