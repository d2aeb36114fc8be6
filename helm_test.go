package main

// The Helm chart deploy/helm/lavavisor is rendered by scripts/helm-check with
// a real helm into testdata/helm/ (and compared there in CI), so that go test
// never runs helm. These tests read the rendered copies: every container
// goes through the real command-line parser and the Kubernetes checks of
// packaging_test.go, then what belongs to the chart is checked against the
// values it was rendered with: one StatefulSet per provider, the stop-timeout
// passed and the grace period above it, the keyring password from a Secret
// file, window and spread as environment, the shared releases claim, one
// PodDisruptionBudget over every provider, the ServiceMonitor.

import (
	"cmp"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// helmRelease is the release name that scripts/helm-check renders with.
const helmRelease = "lava"

// helmRendering is a rendered copy and the values file it came from.
type helmRendering struct {
	name   string // testdata/helm/<name>.yaml
	values string // "" for the chart's defaults
}

var helmRenderings = []helmRendering{
	{"default", ""},
	{"three-providers", "deploy/helm/lavavisor/ci/three-providers.yaml"},
}

// chartValues is the part of the chart's values that the tests compare the
// rendering with.
type chartValues struct {
	Lavavisor struct {
		StopTimeoutSeconds int `yaml:"stopTimeoutSeconds"`
	} `yaml:"lavavisor"`
	Upgrade struct {
		Window string `yaml:"window"`
		Spread string `yaml:"spread"`
	} `yaml:"upgrade"`
	Health struct {
		Enabled bool `yaml:"enabled"`
	} `yaml:"health"`
	Keyring struct {
		Backend string `yaml:"backend"`
	} `yaml:"keyring"`
	Releases struct {
		Shared bool `yaml:"shared"`
	} `yaml:"releases"`
	ServiceMonitor struct {
		Enabled bool `yaml:"enabled"`
	} `yaml:"serviceMonitor"`
	Providers []chartProvider `yaml:"providers"`
}

type chartProvider struct {
	Name           string `yaml:"name"`
	From           string `yaml:"from"`
	Geolocation    string `yaml:"geolocation"`
	KeyringBackend string `yaml:"keyringBackend"`
	Health         struct {
		TCP string `yaml:"tcp"`
	} `yaml:"health"`
}

// loadChartValues is values.yaml with the values file over it, as helm
// merges them: mappings key by key, lists replaced whole.
func loadChartValues(t *testing.T, file string) chartValues {
	t.Helper()
	var v chartValues
	for _, f := range []string{"deploy/helm/lavavisor/values.yaml", file} {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	return v
}

func loadRendering(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(path.Join("testdata/helm", name+".yaml"))
	if err != nil {
		t.Fatalf("%v: scripts/helm-check -update renders it", err)
	}
	return string(b)
}

func TestHelmChart(t *testing.T) {
	f := loadPackagingFiles(t)
	img, problems := checkDockerfile(t, f.dockerfile, f.goMod)
	for _, p := range problems {
		t.Error(p)
	}
	for _, r := range helmRenderings {
		t.Run(r.name, func(t *testing.T) {
			for _, p := range checkHelm(t, r.name, loadRendering(t, r.name), img, loadChartValues(t, r.values)) {
				t.Error(p)
			}
		})
	}
}

// TestHelmCatchesInconsistentEdits edits the three-provider rendering as a
// hurried change to the chart might, and expects the checks to name it.
func TestHelmCatchesInconsistentEdits(t *testing.T) {
	cases := []struct {
		old, new string
		nth      int // which occurrence of old to replace, from 1
		want     string
	}{
		{"maxUnavailable: 1", "maxUnavailable: 2", 1, "maxUnavailable 2: want 1"},
		{"      app.kubernetes.io/component: provider\n", "      app.kubernetes.io/component: node\n", 1, "does not select the pods of StatefulSet"},
		{"terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: 30", 2, "terminationGracePeriodSeconds 30s: want at least the stop-timeout 30s + 5s"},
		{"value: \"30s\"\n", "value: \"20s\"\n", 2, "--stop-timeout 20s: want the chart's lavavisor.stopTimeoutSeconds 30s"},
		{"            - name: LAVAVISOR_STOP_TIMEOUT\n", "            - name: LAVAVISOR_STOP_TIMEOUTS\n", 3, "no --stop-timeout"},
		{"path: /readyz", "path: /ready", 3, "readinessProbe path /ready"},
		{"path: /healthz", "path: /metrics", 2, "livenessProbe path /metrics"},
		{"runAsNonRoot: true", "runAsNonRoot: false", 1, "runAsNonRoot"},
		{"fsGroup: 1000", "fsGroup: 0", 2, "fsGroup 0"},
		{"  name: lava-lavavisor-near\n", "  name: lava-lavavisor-eth\n", 3, "2 StatefulSets named lava-lavavisor-eth"},
		{"replicas: 1", "replicas: 2", 1, "replicas 2: want 1"},
		{"lavavisor.io/provider: near", "lavavisor.io/provider: eth", 5, "StatefulSet lava-lavavisor-near selects the pods of StatefulSet lava-lavavisor-eth too"},
		{"            - \"op-lava\"\n", "            - \"op-eth\"\n", 1, "--from op-eth: want op-lava"},
		{"            - name: LAVAVISOR_KEYRING_PASSWORD_FILE\n", "            - name: LAVAVISOR_KEYRING_PASSWORD\n", 1, "no --keyring-password-file"},
		{"mountPath: /etc/lava/keyring-password", "mountPath: /etc/lava/password", 1, "is on no Secret volume"},
		{"path: password", "path: keyring-password", 1, "is on no Secret volume"},
		{"value: \"02:00-04:00\"", "value: \"02:00-03:00\"", 2, "LAVAVISOR_UPGRADE_WINDOW \"02:00-03:00\": want \"02:00-04:00\""},
		{"            - name: LAVAVISOR_UPGRADE_SPREAD\n              value: \"10m\"\n", "", 3, "LAVAVISOR_UPGRADE_SPREAD \"\": want \"10m\""},
		{"            - provider.yml\n", "            - provider.yml\n            - --upgrade-window\n            - 02:00-04:00\n", 1, "set window and spread by environment only"},
		{"            - name: LAVAVISOR_RELEASES_DIR\n              value: /releases\n", "", 1, "releases-dir \"\": want /releases"},
		{"claimName: lava-lavavisor-releases", "claimName: lava-lavavisor-releases-2", 3, "claims [lava-lavavisor-releases lava-lavavisor-releases-2] at /releases"},
		{"accessModes: [ReadWriteMany]", "accessModes: [ReadWriteOnce]", 1, "want ReadWriteMany"},
		{"value: \"http://127.0.0.1:7776/metrics/ETH1/jsonrpc/health\"", "value: \"http://127.0.0.1:7777/metrics/ETH1/jsonrpc/health\"", 1, "lavap's --metrics-listen-address is 127.0.0.1:7776"},
		{"    - port: metrics\n      path: /metrics", "    - port: provider\n      path: /metrics", 1, "ServiceMonitor lava-lavavisor: endpoint port provider path /metrics"},
		{"kind: ServiceMonitor", "kind: ServiceMonitorX", 1, "0 ServiceMonitors: want 1"},
	}
	f := loadPackagingFiles(t)
	img, _ := checkDockerfile(t, f.dockerfile, f.goMod)
	r := helmRenderings[1]
	values := loadChartValues(t, r.values)
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			src, ok := replaceNth(loadRendering(t, r.name), c.old, c.new, c.nth)
			if !ok {
				t.Fatalf("occurrence %d of %q not found", c.nth, c.old)
			}
			problems := checkHelm(t, r.name, src, img, values)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, c.want) }) {
				t.Errorf("no problem says %q; got:\n%s", c.want, strings.Join(problems, "\n"))
			}
		})
	}
}

// checkHelm checks a rendering of the chart with values v.
func checkHelm(t *testing.T, name, src string, img image, v chartValues) []string {
	t.Helper()
	dir := "testdata/helm"
	file := name + ".yaml"
	pods, problems := checkKubernetes(t, dir, map[string]string{file: src}, img)
	bad := func(format string, a ...any) {
		problems = append(problems, dir+"/"+file+": "+fmt.Sprintf(format, a...))
	}
	objs, _ := k8sObjects(dir, map[string]string{file: src})

	// One StatefulSet per provider, named for it, of one replica.
	var sets []k8sStatefulSet
	names := map[string]int{}
	for _, n := range objs["StatefulSet"] {
		var ss k8sStatefulSet
		if err := n.Decode(&ss); err == nil {
			sets = append(sets, ss)
			names[ss.Metadata.Name]++
		}
	}
	for n, count := range names {
		if count > 1 {
			bad("%d StatefulSets named %s: one per provider, each its own", count, n)
		}
	}
	if len(sets) != len(v.Providers) {
		bad("%d StatefulSets for %d providers", len(sets), len(v.Providers))
	}
	for _, p := range v.Providers {
		want := helmRelease + "-lavavisor-" + p.Name
		if names[want] == 0 {
			bad("provider %s: no StatefulSet %s", p.Name, want)
		}
	}
	for _, ss := range sets {
		if r := ss.Spec.Replicas; r == nil || *r != 1 {
			bad("StatefulSet %s: replicas %v: want 1 (a key belongs to one process)", ss.Metadata.Name, deref(r))
		}
		// A selector that matched another provider's pods would make the
		// two controllers fight over them.
		for _, other := range sets {
			if other.Metadata.Name != ss.Metadata.Name && selects(ss.Spec.Selector.MatchLabels, other.Spec.Template.Metadata.Labels) {
				bad("StatefulSet %s selects the pods of StatefulSet %s too", ss.Metadata.Name, other.Metadata.Name)
			}
		}
	}
	if len(pods) != len(sets) {
		bad("%d of %d StatefulSets run lavavisor pod", len(pods), len(sets))
	}

	// Each pod against its provider's values.
	claims := map[string]bool{}
	for _, pod := range pods {
		where := "StatefulSet " + pod.ss.Metadata.Name
		fail := func(format string, a ...any) { bad(where+": "+format, a...) }
		i := slices.IndexFunc(v.Providers, func(p chartProvider) bool {
			return pod.ss.Spec.Template.Metadata.Labels["lavavisor.io/provider"] == p.Name
		})
		if i < 0 {
			fail("pods labelled lavavisor.io/provider=%q: no such provider", pod.ss.Spec.Template.Metadata.Labels["lavavisor.io/provider"])
			continue
		}
		p := v.Providers[i]
		ps, env := pod.ps, map[string]string{}
		for _, e := range pod.c.Env {
			env[e.Name] = e.Value
		}
		for flag, want := range map[string]string{"--from": p.From, "--geolocation": p.Geolocation} {
			if got := flagValue(ps.lavap, flag); got != want {
				fail("lavap %s %s: want %s", flag, got, want)
			}
		}

		// The stop-timeout is passed; checkKubernetes compared the grace
		// period with it.
		want := time.Duration(v.Lavavisor.StopTimeoutSeconds) * time.Second
		switch st := ps.cli.Pod.StopTimeout; {
		case st == nil:
			fail("no --stop-timeout (LAVAVISOR_STOP_TIMEOUT): the grace period is computed from lavavisor.stopTimeoutSeconds %v", want)
		case *st != want:
			fail("--stop-timeout %v: want the chart's lavavisor.stopTimeoutSeconds %v", *st, want)
		}

		// The keyring password: a file from a Secret volume, for an
		// encrypted keyring only.
		backend := cmp.Or(p.KeyringBackend, v.Keyring.Backend)
		pwFile := ps.cli.Pod.KeyringPasswordFile
		switch {
		case backend == "file" && pwFile == "":
			fail("keyring-backend file and no --keyring-password-file (LAVAVISOR_KEYRING_PASSWORD_FILE): lavap would wait on its stdin")
		case backend == "file" && !onSecret(pod, pwFile):
			fail("keyring password file %s is on no Secret volume", pwFile)
		case backend != "file" && pwFile != "":
			fail("keyring-backend %s needs no password, but --keyring-password-file %s is given", backend, pwFile)
		}

		// Health: the check talks to the address lavap listens on.
		h, err := ps.cli.Pod.health()
		switch {
		case err != nil:
			fail("health: %v", err)
		case !v.Health.Enabled:
			if h != nil {
				fail("health.enabled false, but a health check is set")
			}
		case h == nil:
			fail("no health check (LAVAVISOR_HEALTH_*)")
		case p.Health.TCP != "" && h.TCP != p.Health.TCP:
			fail("health check %+v: want tcp %s", h, p.Health.TCP)
		case h.HTTP != "":
			u, err := url.Parse(h.HTTP)
			if lavapAddr := flagValue(ps.lavap, "--metrics-listen-address"); err != nil || u.Host != lavapAddr {
				fail("health check %s: lavap's --metrics-listen-address is %s", h.HTTP, lavapAddr)
			}
		}

		// Window and spread by environment only (LAVAVISOR_UPGRADE_*), so
		// that the args parse with and without those flags.
		for k, want := range map[string]string{"LAVAVISOR_UPGRADE_WINDOW": v.Upgrade.Window, "LAVAVISOR_UPGRADE_SPREAD": v.Upgrade.Spread} {
			if env[k] != want {
				fail("%s %q: want %q", k, env[k], want)
			}
		}
		if slices.ContainsFunc(pod.c.Args, func(a string) bool { return strings.HasPrefix(a, "--upgrade-") }) {
			fail("args %q: set window and spread by environment only", pod.c.Args)
		}

		// Releases: in the home, or on the one shared claim.
		rd := ""
		if ps.cli.ReleasesDir != nil {
			rd = *ps.cli.ReleasesDir
		}
		if !v.Releases.Shared {
			if rd != "" {
				fail("releases-dir %q: want none (the home's) with releases.shared false", rd)
			}
			continue
		}
		if rd != "/releases" {
			fail("releases-dir %q: want /releases with releases.shared", rd)
			continue
		}
		for _, m := range pod.c.VolumeMounts {
			if path.Clean(m.MountPath) != rd {
				continue
			}
			for _, vol := range pod.ss.Spec.Template.Spec.Volumes {
				if vol.Name == m.Name && vol.PersistentVolumeClaim != nil {
					claims[vol.PersistentVolumeClaim.ClaimName] = true
				}
			}
		}
	}
	if v.Releases.Shared {
		if len(claims) != 1 {
			bad("claims %v at /releases: want one, shared by every provider", slices.Sorted(maps.Keys(claims)))
		}
		for _, n := range objs["PersistentVolumeClaim"] {
			var pvc struct {
				Metadata struct {
					Name string `yaml:"name"`
				} `yaml:"metadata"`
				Spec struct {
					AccessModes []string `yaml:"accessModes"`
				} `yaml:"spec"`
			}
			if err := n.Decode(&pvc); err == nil && claims[pvc.Metadata.Name] && !slices.Equal(pvc.Spec.AccessModes, []string{"ReadWriteMany"}) {
				bad("PersistentVolumeClaim %s: access modes %v: want ReadWriteMany, to be mounted by every provider", pvc.Metadata.Name, pvc.Spec.AccessModes)
			}
		}
	}

	// One PodDisruptionBudget over every provider: a drain evicts one at a time.
	if n := len(objs["PodDisruptionBudget"]); n != 1 {
		bad("%d PodDisruptionBudgets: want 1 over every provider", n)
	}
	for _, n := range objs["PodDisruptionBudget"] {
		var pdb struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
			Spec struct {
				MaxUnavailable *portRef `yaml:"maxUnavailable"` // IntOrString too
				MinAvailable   *portRef `yaml:"minAvailable"`
				Selector       struct {
					MatchLabels map[string]string `yaml:"matchLabels"`
				} `yaml:"selector"`
			} `yaml:"spec"`
		}
		if err := n.Decode(&pdb); err != nil {
			bad("PodDisruptionBudget: %v", err)
			continue
		}
		where := "PodDisruptionBudget " + pdb.Metadata.Name
		if m := pdb.Spec.MaxUnavailable; m == nil || m.name != "" || m.num != 1 || pdb.Spec.MinAvailable != nil {
			bad("%s: maxUnavailable %v: want 1, and no minAvailable", where, m)
		}
		if len(pdb.Spec.Selector.MatchLabels) == 0 {
			bad("%s: an empty selector", where)
		}
		for _, ss := range sets {
			if !selects(pdb.Spec.Selector.MatchLabels, ss.Spec.Template.Metadata.Labels) {
				bad("%s does not select the pods of StatefulSet %s", where, ss.Metadata.Name)
			}
		}
	}

	// The ServiceMonitor scrapes every provider's /metrics.
	monitors := objs["ServiceMonitor"]
	if want := map[bool]int{true: 1, false: 0}[v.ServiceMonitor.Enabled]; len(monitors) != want {
		bad("%d ServiceMonitors: want %d (serviceMonitor.enabled %v)", len(monitors), want, v.ServiceMonitor.Enabled)
	}
	for _, n := range monitors {
		var sm struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
			Spec struct {
				Selector struct {
					MatchLabels map[string]string `yaml:"matchLabels"`
				} `yaml:"selector"`
				Endpoints []scrapeEndpoint `yaml:"endpoints"`
			} `yaml:"spec"`
		}
		if err := n.Decode(&sm); err != nil {
			bad("ServiceMonitor: %v", err)
			continue
		}
		where := "ServiceMonitor " + sm.Metadata.Name
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Path != "/metrics" {
			bad("%s: endpoint %s: want port metrics path /metrics", where, describeEndpoints(sm.Spec.Endpoints))
		}
		for _, sn := range objs["Service"] {
			var svc k8sService
			if err := sn.Decode(&svc); err == nil && !selects(sm.Spec.Selector.MatchLabels, svc.Metadata.Labels) {
				bad("%s does not select Service %s", where, svc.Metadata.Name)
			}
		}
	}
	return problems
}

// selects says whether a matchLabels selector matches labels.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// onSecret says whether file is a file of a Secret volume mounted in pod.
func onSecret(pod k8sPod, file string) bool {
	for _, m := range pod.c.VolumeMounts {
		rel, ok := strings.CutPrefix(path.Clean(file), path.Clean(m.MountPath)+"/")
		if !ok {
			continue
		}
		for _, vol := range pod.ss.Spec.Template.Spec.Volumes {
			if vol.Name != m.Name || vol.Secret == nil {
				continue
			}
			if len(vol.Secret.Items) == 0 {
				return true // every key of the Secret, each a file
			}
			for _, it := range vol.Secret.Items {
				if it.Path == rel {
					return true
				}
			}
		}
	}
	return false
}

// scrapeEndpoint is one of a ServiceMonitor's endpoints.
type scrapeEndpoint struct {
	Port string `yaml:"port"`
	Path string `yaml:"path"`
}

func describeEndpoints(eps []scrapeEndpoint) string {
	var s []string
	for _, e := range eps {
		s = append(s, "port "+e.Port+" path "+e.Path)
	}
	return strings.Join(s, ", ")
}
