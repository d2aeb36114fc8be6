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
		if t.Field(i).Type.Kind() == reflect.Struct {
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
	if len(keys) != 25 {
		t.Errorf("found %d keys: the reflection walk is broken", len(keys))
	}
	for _, k := range keys {
		if !c.src.given[k] {
			t.Errorf("the sample does not show %s with its default", k)
		}
	}

	// As written by `init`, `start` refuses it with a clear message.
	_, err = Parse([]byte(SampleConfig()), "config.yml", Overrides{}, Options{})
	want := "config.yml:65: services: no services: add one to config.yml (see lavavisor create-service)"
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
}
