{{/*
The values every template renders from. The platform-dependent values (files/platform-defaults.yaml) come from
the user when set (not ''), else from the chosen profile (files/profile-<name>.yaml), else from the built-in
defaults; all the others are plain values. Use: include "meshcni.values" . | fromYaml
*/}}
{{- define "meshcni.values" -}}
{{- $v := deepCopy .Values -}}
{{- $platform := .Files.Get "files/platform-defaults.yaml" | fromYaml -}}
{{- with .Values.profile -}}
{{- $file := $.Files.Get (printf "files/profile-%s.yaml" .) -}}
{{- if not $file -}}
{{- fail (printf "profile %q: no such profile (gke, k3s, k3d, microk8s, minikube, openshift)" .) -}}
{{- end -}}
{{- $platform = mustMergeOverwrite $platform (fromYaml $file) -}}
{{- end -}}
{{- range $key, $value := $platform -}}
{{- if has (toJson (get $v $key)) (list "null" "\"\"") -}}
{{- $_ := set $v $key $value -}}
{{- end -}}
{{- end -}}
{{- include "meshcni.validate" $v -}}
{{- toYaml $v -}}
{{- end -}}

{{/* Refuses values the agent cannot honour, naming the value; nothing is rendered then. */}}
{{- define "meshcni.validate" -}}
{{- range $key := list "cniBinDir" "cniConfDir" "cniNetnsDir" -}}
{{- $path := toString (get $ $key) -}}
{{- if not (hasPrefix "/" $path) -}}
{{- fail (printf "%s %q: want an absolute host path" $key $path) -}}
{{- end -}}
{{- end -}}
{{- if contains "/" (toString .cniConfFileName) -}}
{{- fail (printf "cniConfFileName %q: want a file name inside cniConfDir, not a path" .cniConfFileName) -}}
{{- end -}}
{{- if not (has .provider (list "default" "multus")) -}}
{{- fail (printf "provider %q: want default or multus" .provider) -}}
{{- end -}}
{{- $chained := eq (toString .chained) "true" -}}
{{- if ne $chained (eq .provider "default") -}}
{{- $want := "want chained: true with provider: default, or chained: false with provider: multus" -}}
{{- fail (printf "chained %v with provider %q: %s" .chained .provider $want) -}}
{{- end -}}
{{- if and (not $chained) (not (regexMatch "^[A-Za-z0-9][A-Za-z0-9_.-]*\\.conf$" (toString .cniConfFileName))) -}}
{{- $want := "chained: false needs the name of meshcni's own .conf (e.g. meshcni.conf)" -}}
{{- fail (printf "cniConfFileName %q: %s" .cniConfFileName $want) -}}
{{- end -}}
{{- if and (not $chained) .ownedConfig -}}
{{- fail "ownedConfig true with chained: false: an owned conflist is for the chained mode only" -}}
{{- end -}}
{{- if and .ownedConfig (not (regexMatch "^[A-Za-z0-9][A-Za-z0-9_.-]*\\.conflist$" (toString .ownedConfigFileName))) -}}
{{- fail (printf "ownedConfigFileName %q: want a .conflist file name inside cniConfDir" .ownedConfigFileName) -}}
{{- end -}}
{{- if not (has .layout (list "iptables" "nft")) -}}
{{- fail (printf "layout %q: want iptables or nft" .layout) -}}
{{- end -}}
{{- if not (has (toString .istioVersion) (list "1.17" "1.30" "auto")) -}}
{{- fail (printf "istioVersion %q: want '1.17', '1.30' or 'auto', quoted (an unquoted 1.30 is the number 1.3)" (toString .istioVersion)) -}}
{{- end -}}
{{- if not (has .repairPolicy (list "capture" "repair" "delete" "report")) -}}
{{- fail (printf "repairPolicy %q: want capture, repair, delete or report" .repairPolicy) -}}
{{- end -}}
{{- if not (has .logLevel (list "trace" "debug" "info" "warn" "error" "fatal")) -}}
{{- fail (printf "logLevel %q: want trace, debug, info, warn, error or fatal" .logLevel) -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "meshcni.labels" -}}
app.kubernetes.io/name: meshcni
{{- end -}}

{{/* The agent's selector labels (immutable once a DaemonSet exists). */}}
{{- define "meshcni.selectorLabels" -}}
app.kubernetes.io/name: meshcni
app.kubernetes.io/component: agent
{{- end -}}
