{{/* The chart's name. */}}
{{- define "lavavisor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every object: <release>-lavavisor, or the release name when it
already says lavavisor. At most 40 characters, so that a StatefulSet
<prefix>-<provider> fits in 52 (its pods' controller-revision-hash label
must fit in 63).
*/}}
{{- define "lavavisor.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "lavavisor.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "lavavisor.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels that every provider of the release carries: the PDB and the
ServiceMonitor select on these. */}}
{{- define "lavavisor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lavavisor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: provider
{{- end -}}

{{- define "lavavisor.labels" -}}
{{ include "lavavisor.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* One provider's labels; call with (dict "root" $ "p" $provider). */}}
{{- define "lavavisor.providerSelectorLabels" -}}
{{ include "lavavisor.selectorLabels" .root }}
lavavisor.io/provider: {{ .p.name }}
{{- end -}}

{{- define "lavavisor.providerLabels" -}}
{{ include "lavavisor.labels" .root }}
lavavisor.io/provider: {{ .p.name }}
{{- end -}}

{{/* The name of a provider's objects: StatefulSet, Service, ConfigMap. */}}
{{- define "lavavisor.providerFullname" -}}
{{- printf "%s-%s" (include "lavavisor.fullname" .root) .p.name -}}
{{- end -}}

{{/* The distinct ports of a provider's endpoints, comma-separated. */}}
{{- define "lavavisor.ports" -}}
{{- $ports := list -}}
{{- range .p.endpoints -}}
{{- $addr := (index . "network-address" | default dict).address | default "" | toString -}}
{{- $port := regexFind "[0-9]+$" $addr -}}
{{- if not (regexMatch "^.+:[0-9]+$" $addr) -}}
{{- fail (printf "providers[%s]: endpoint network-address.address %q: want host:port" $.p.name $addr) -}}
{{- end -}}
{{- $ports = append $ports $port -}}
{{- end -}}
{{- $ports | uniq | join "," -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: given, or stop-timeout + 15s. */}}
{{- define "lavavisor.grace" -}}
{{- $stop := int .Values.lavavisor.stopTimeoutSeconds -}}
{{- if kindIs "invalid" .Values.lavavisor.terminationGracePeriodSeconds -}}
{{- add $stop 15 -}}
{{- else -}}
{{- int .Values.lavavisor.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/*
Checks that fail the rendering with a message naming the value, for what
would otherwise fail later in the cluster, or worse, work badly.
*/}}
{{- define "lavavisor.validate" -}}
{{- if not .Values.chain.id -}}
{{- fail "chain.id: required (e.g. lava-mainnet-1): LavaVisor checks it against the node, and lavap gets it as --chain-id" -}}
{{- end -}}
{{- if not .Values.chain.node -}}
{{- fail "chain.node: required: the Lava node LavaVisor reads versions from, and lavap's --node" -}}
{{- end -}}
{{- $stop := .Values.lavavisor.stopTimeoutSeconds -}}
{{- if or (not (regexMatch "^[0-9]+$" (toString $stop))) (eq (int $stop) 0) -}}
{{- fail (printf "lavavisor.stopTimeoutSeconds %v: want a whole number of seconds above 0" $stop) -}}
{{- end -}}
{{- $grace := .Values.lavavisor.terminationGracePeriodSeconds -}}
{{- if and (not (kindIs "invalid" $grace)) (not (regexMatch "^[0-9]+$" (toString $grace))) -}}
{{- fail (printf "lavavisor.terminationGracePeriodSeconds %v: want a number of seconds, or null to compute it" $grace) -}}
{{- end -}}
{{- if le (int (include "lavavisor.grace" .)) (add (int $stop) 5) -}}
{{- fail (printf "lavavisor.terminationGracePeriodSeconds %s must exceed lavavisor.stopTimeoutSeconds %d + 5: the kubelet would SIGKILL lavap before LavaVisor's clean stop ends" (include "lavavisor.grace" .) (int $stop)) -}}
{{- end -}}
{{- $sc := .Values.podSecurityContext -}}
{{- if or (not $sc.runAsNonRoot) (not $sc.runAsUser) (eq (int $sc.runAsUser) 0) -}}
{{- fail "podSecurityContext: want runAsNonRoot: true and a runAsUser other than 0 (the image's lava is 1000): run as root, LavaVisor refuses the group-writable folders that fsGroup makes (SPEC §2)" -}}
{{- end -}}
{{- if not $sc.fsGroup -}}
{{- fail "podSecurityContext.fsGroup: required (the image's gid 1000): it makes the volumes writable by LavaVisor's user" -}}
{{- end -}}
{{- if not (has .Values.keyring.backend (list "file" "test")) -}}
{{- fail (printf "keyring.backend %q: want file or test (os has no keyring service in a container)" .Values.keyring.backend) -}}
{{- end -}}
{{- if and .Values.releases.shared (not .Values.releases.existingClaim) (not .Values.releases.size) -}}
{{- fail "releases.size: required with releases.shared and no releases.existingClaim" -}}
{{- end -}}
{{- if not .Values.providers -}}
{{- fail "providers: empty: list at least one provider (name, from, geolocation, endpoints)" -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $i, $p := .Values.providers -}}
{{- if not (regexMatch "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$" (toString $p.name)) -}}
{{- fail (printf "providers[%d].name %q: want lowercase letters, digits and dashes" $i (toString $p.name)) -}}
{{- end -}}
{{- if hasKey $seen $p.name -}}
{{- fail (printf "providers[%d].name %s: already used by providers[%v]: each provider is a StatefulSet of its own" $i $p.name (get $seen $p.name)) -}}
{{- end -}}
{{- $_ := set $seen $p.name $i -}}
{{- $full := include "lavavisor.providerFullname" (dict "root" $ "p" $p) -}}
{{- if gt (len $full) 52 -}}
{{- fail (printf "providers[%d].name %s: the StatefulSet name %s is longer than 52 characters: shorten the name or the release's" $i $p.name $full) -}}
{{- end -}}
{{- if not $p.from -}}
{{- fail (printf "providers[%d] (%s): from: required, the key's name in its keyring (lavap --from)" $i $p.name) -}}
{{- end -}}
{{- if kindIs "invalid" $p.geolocation -}}
{{- fail (printf "providers[%d] (%s): geolocation: required (lavap --geolocation)" $i $p.name) -}}
{{- end -}}
{{- if not $p.endpoints -}}
{{- fail (printf "providers[%d] (%s): endpoints: required, provider.yml's endpoints" $i $p.name) -}}
{{- end -}}
{{- range $j, $e := $p.endpoints -}}
{{- if not (and (kindIs "map" $e) (get $e "api-interface") (get $e "chain-id")) -}}
{{- fail (printf "providers[%d] (%s): endpoints[%d]: want api-interface and chain-id, as in provider.yml" $i $p.name $j) -}}
{{- end -}}
{{- end -}}
{{- $backend := $p.keyringBackend | default $.Values.keyring.backend -}}
{{- if not (has $backend (list "file" "test")) -}}
{{- fail (printf "providers[%d] (%s): keyringBackend %q: want file or test" $i $p.name $backend) -}}
{{- end -}}
{{- $h := $p.health | default dict -}}
{{- $kinds := 0 -}}
{{- range $k := list "http" "tcp" "exec" -}}
{{- if hasKey $h $k -}}{{- $kinds = add1 $kinds -}}{{- end -}}
{{- end -}}
{{- if gt $kinds 1 -}}
{{- fail (printf "providers[%d] (%s): health: give one of http, tcp and exec" $i $p.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A provider's provider.yml: its endpoints. */}}
{{- define "lavavisor.providerConfig" -}}
{{ toYaml (dict "endpoints" .p.endpoints) }}
{{- end -}}
