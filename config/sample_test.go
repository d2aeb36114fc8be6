package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// yamlKeys lists the yaml keys of a struct type, "-" and services excepted.
func yamlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("yaml")
		if tag == "" || tag == "-" || tag == "services" {
			continue
		}
		if t.Field(i).Type.Kind() == reflect.Struct && t.Field(i).Type != reflect.TypeOf(Window{}) {
			keys = append(keys, yamlKeys(t.Field(i).Type, prefix+tag+".")...)
			continue
		}
		keys = append(keys, prefix+tag)
	}
	return keys
}

func TestSampleConfigIsTheDefaults(t *testing.T) {
	c, err := Parse([]byte(SampleConfig()), "config.yml", Overrides{}, Options{AllowNoServices: true})
	if err != nil {
		t.Fatalf("the sample does not parse: %v", err)
	}
	if got, want := globals(*c), globals(Default()); !reflect.DeepEqual(got, want) {
		t.Errorf("sample and Default() disagree:\n sample  %+v\n default %+v", got, want)
	}
	keys := yamlKeys(reflect.TypeOf(Config{}), "")
	if len(keys) != 31 {
		t.Errorf("found %d keys: the reflection walk is broken", len(keys))
	}
	for _, k := range keys {
		if !c.src.given[k] {
			t.Errorf("the sample does not show %s with its default", k)
		}
	}

	// As written by `init`, `start` refuses it with a clear message.
	_, err = Parse([]byte(SampleConfig()), "config.yml", Overrides{}, Options{})
	want := "config.yml:83: services: no services: add one to config.yml (see lavavisor create-service)"
	if err == nil || err.Error() != want {
		t.Errorf("start on the sample:\n%v\nwant:\n%s", err, want)
	}
}

// The commented-out example services are valid once uncommented as the sample
// says, next to the folders they name.
func TestSampleConfigExampleServices(t *testing.T) {
	var out []string
	inExample := false
	for _, line := range strings.Split(SampleConfig(), "\n") {
		switch {
		case line == "services: []":
			line, inExample = "services:", true
		case inExample && strings.HasPrefix(line, "#"):
			line = strings.TrimPrefix(line, "#")
		}
		out = append(out, line)
	}
	home := t.TempDir()
	writeFile(t, filepath.Join(home, "services/provider-eth/provider.yml"), "", 0o644)
	writeFile(t, filepath.Join(home, "bin/exporter"), "#!/bin/sh\n", 0o755)
	path := filepath.Join(home, "config.yml")
	writeFile(t, path, strings.Join(out, "\n"), 0o644)

	c := mustLoad(t, path, Overrides{}, Options{})
	if len(c.Services) != 2 {
		t.Fatalf("%d services, want the 2 of the example", len(c.Services))
	}
	p, e := c.Services[0], c.Services[1]
	if p.Name != "provider-eth" || p.Role != RoleProvider || p.Dir != filepath.Join(home, "services/provider-eth") {
		t.Errorf("example provider: %+v", p)
	}
	if e.Name != "exporter" || e.Command != filepath.Join(home, "bin/exporter") {
		t.Errorf("example exporter: %+v", e)
	}
	// The health example shows every key at its default, and asks the
	// metrics listener that the example's args open.
	if p.Health == nil {
		t.Fatal("example provider has no health")
	}
	want := DefaultHealth()
	want.HTTP, want.Line = "http://127.0.0.1:7776/metrics/ETH1/jsonrpc/health", p.Health.Line
	if !reflect.DeepEqual(*p.Health, want) {
		t.Errorf("example health: %+v, want %+v", p.Health, want)
	}
	for i, key := range []string{"http", "insecure-tls", "interval", "start-interval", "timeout", "start-period", "failures", "restart-after"} {
		if !c.src.given["services[0].health."+key] {
			t.Errorf("the example health does not show %s (key %d)", key, i)
		}
	}
	if addr := p.Args[len(p.Args)-1]; p.Args[len(p.Args)-2] != "--metrics-listen-address" || !strings.Contains(p.Health.HTTP, "//"+addr+"/") {
		t.Errorf("example args %q do not open the listener that health %s asks", p.Args, p.Health.HTTP)
	}
	if e.Health != nil {
		t.Errorf("example exporter has health %+v", e.Health)
	}
}
