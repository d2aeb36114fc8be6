package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// Relative command and dir are relative to config.yml's folder, not to the
// current directory (which, in a test, is the package folder).
func TestRelativePathsFollowTheConfigFile(t *testing.T) {
	home := t.TempDir()
	writeFile(t, filepath.Join(home, "bin/tool"), "#!/bin/sh\n", 0o755)
	writeFile(t, filepath.Join(home, "work/keep"), "", 0o644)
	path := filepath.Join(home, "config.yml")
	writeFile(t, path, "releases-dir: ../shared\nservices:\n  - name: tool\n    command: bin/tool\n    dir: work\n", 0o644)
	if _, err := os.Stat("bin/tool"); err == nil {
		t.Fatal("bin/tool exists in the current directory: the test would prove nothing")
	}

	c := mustLoad(t, path, Overrides{}, Options{})
	s := c.Services[0]
	if s.Command != filepath.Join(home, "bin/tool") || s.Dir != filepath.Join(home, "work") {
		t.Errorf("command %q, dir %q: want them under %s", s.Command, s.Dir, home)
	}
	if c.ReleasesDir != filepath.Join(filepath.Dir(home), "shared") {
		t.Errorf("releases-dir %q", c.ReleasesDir)
	}

	// The same file parsed from bytes with a path elsewhere resolves there.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(data, "config.yml", Overrides{}, Options{})
	want := `config.yml:4: services[0].command: "bin/tool" not found (looked at ` + abs(t, "bin/tool") + ")"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error:\n%v\nwant it to contain:\n%s", err, want)
	}
}

func TestCommandOnPath(t *testing.T) {
	bin := t.TempDir()
	writeFile(t, filepath.Join(bin, "my-exporter"), "#!/bin/sh\n", 0o755)
	t.Setenv("PATH", bin)
	c, err := Parse([]byte("services:\n  - name: x\n    command: my-exporter\n"), "c.yml", Overrides{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Services[0].Command != filepath.Join(bin, "my-exporter") {
		t.Errorf("command = %q", c.Services[0].Command)
	}
}

const brokenServices = `stop-timeout: 3s
services:
  - name: Bad_Name
    args: [lavap]
    colour: blue
`

func TestIgnoreServices(t *testing.T) {
	_, err := Parse([]byte(brokenServices), "c.yml", Overrides{}, Options{})
	if err == nil || strings.Count(err.Error(), "\n") != 2 {
		t.Fatalf("without IgnoreServices, want 3 problems, got: %v", err)
	}
	c, err := Parse([]byte(brokenServices), "c.yml", Overrides{}, Options{IgnoreServices: true})
	if err != nil {
		t.Fatalf("IgnoreServices: %v", err)
	}
	if len(c.Services) != 0 || c.StopTimeout.Std() != 3*time.Second {
		t.Errorf("services %v, stop-timeout %v: want none, and 3s from the file", c.Services, c.StopTimeout)
	}
	// Unknown keys elsewhere are still errors.
	_, err = Parse([]byte("colour: blue\n"+brokenServices), "c.yml", Overrides{}, Options{IgnoreServices: true})
	if err == nil || err.Error() != "c.yml:1: colour: unknown key" {
		t.Errorf("error %v", err)
	}
}

func TestAllowMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yml")
	_, err := Load(path, Overrides{}, Options{IgnoreServices: true})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "read config file: ") {
		t.Errorf("missing file without AllowMissing: %v", err)
	}

	o := Overrides{Restart: ptr("never"), AutoDownload: ptr(true), Link: ptr("none")}
	c, err := Load(path, o, Options{IgnoreServices: true, AllowMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Restart, want.AutoDownload, want.Link = RestartNever, true, LinkNone
	if !reflect.DeepEqual(globals(*c), globals(want)) || c.Path != "" {
		t.Errorf("got %+v (path %q), want the defaults with the overrides", globals(*c), c.Path)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Error("Load created the missing file")
	}

	// A bad override is still an error without a file.
	_, err = Load(path, Overrides{StopSignal: ptr("FOO")}, Options{IgnoreServices: true, AllowMissing: true})
	if err == nil || err.Error() != `--stop-signal: unknown signal "FOO" `+signalRule {
		t.Errorf("error %v", err)
	}
	// An empty file is not a missing one.
	writeFile(t, path, "", 0o644)
	if _, err := Load(path, Overrides{}, Options{IgnoreServices: true, AllowMissing: true}); err == nil ||
		err.Error() != path+": empty config file" {
		t.Errorf("empty file: %v", err)
	}
}

func TestAllowNoServices(t *testing.T) {
	c, err := Load("testdata/no-services.bad.yml", Overrides{}, Options{AllowNoServices: true})
	if err != nil || len(c.Services) != 0 {
		t.Errorf("AllowNoServices: %v", err)
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	c := Default()
	if err := c.Validate(); err == nil || err.Error() != "services: no services: add one to config.yml (see lavavisor create-service)" {
		t.Errorf("Default().Validate() = %v", err)
	}
	c.Services = append(c.Services, c.Effective(Service{Name: "pod", Args: []string{"rpcconsumer", "c.yml"}}))
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	c.KeepReleases = 0
	c.StopSignal = Signal(syscall.SIGSEGV)
	c.Services = append(c.Services, Service{Name: "pod", Args: []string{"rpcprovider"}, Role: RoleProvider, Restart: "sometimes"})
	want := strings.Join([]string{
		"keep-releases: 0: must be at least 1 (the current release is always kept)",
		"stop-signal: unsupported: signal 11 " + signalRule,
		`services[1].name: duplicate name "pod" (first at services[0].name)`,
		`services[1].stop-signal: not set ` + signalRule,
		`services[1].restart: unknown restart policy "sometimes" (want always, on-failure or never)`,
	}, "\n")
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate:\n%v\nwant:\n%s", err, want)
	}
}

func TestEffective(t *testing.T) {
	c := Default()
	c.StopTimeout = Duration(time.Second)
	got := c.Effective(Service{Name: "a", Args: []string{"rpcprovider"}, MinUptime: time.Minute})
	want := Service{Name: "a", Args: []string{"rpcprovider"}, Role: RoleProvider, StopTimeout: time.Second,
		StopSignal: syscall.SIGINT, MinUptime: time.Minute, Restart: RestartAlways}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Effective:\n got %+v\nwant %+v", got, want)
	}
	if got := c.Effective(Service{Command: "/bin/true", Args: []string{"rpcprovider"}}); got.Role != "" {
		t.Errorf("a command service got role %q", got.Role)
	}
}

func TestPodDefaults(t *testing.T) {
	c, err := Parse([]byte("node: file:///v.yml\n"), "config.yml", Overrides{}, Options{IgnoreServices: true, Pod: true})
	if err != nil {
		t.Fatal(err)
	}
	if !c.AutoDownload || c.Link != LinkNone {
		t.Errorf("pod defaults: auto-download %v, link %q", c.AutoDownload, c.Link)
	}
	off := false
	c, err = Parse([]byte("node: file:///v.yml\nlink: /usr/local/bin/lavap\n"), "config.yml", Overrides{AutoDownload: &off}, Options{IgnoreServices: true, Pod: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.AutoDownload || c.Link != "/usr/local/bin/lavap" {
		t.Errorf("file and flag must win over pod defaults: %v %q", c.AutoDownload, c.Link)
	}
}

// pod's --logs-dir, --log-max-size and --log-max-files override the file; a
// relative --logs-dir is relative to where it was typed; bad values name the
// flag and change nothing.
func TestLogFileOverrides(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yml")
	writeFile(t, path, "logs-dir: /var/log/lavavisor\nlog-max-size: 10MiB\nlog-max-files: 3\n", 0o644)
	c, err := Load(path, Overrides{}, Options{IgnoreServices: true})
	if err != nil || c.LogsDir != "/var/log/lavavisor" || c.LogMaxSize != 10<<20 || c.LogMaxFiles != 3 {
		t.Fatalf("file: %+v, %v", c, err)
	}
	wd, _ := os.Getwd()
	c, err = Load(path, Overrides{LogsDir: ptr("logs"), LogMaxSize: ptr("2MiB"), LogMaxFiles: ptr(1)}, Options{IgnoreServices: true})
	if err != nil || c.LogsDir != filepath.Join(wd, "logs") || c.LogMaxSize != 2<<20 || c.LogMaxFiles != 1 {
		t.Fatalf("overrides: %+v, %v", c, err)
	}
	for _, tc := range []struct {
		o    Overrides
		want string
	}{
		{Overrides{LogMaxSize: ptr("big")}, `--log-max-size: invalid size "big": ` + sizeRule},
		{Overrides{LogMaxSize: ptr("100KiB")}, `--log-max-size: 100KiB: must be at least 1MiB (files are rotated in whole MiB)`},
		{Overrides{LogMaxFiles: ptr(0)}, `--log-max-files: 0: must be at least 1 (the rotated files kept)`},
		{Overrides{LogsDir: ptr(path)}, `--logs-dir: ` + path + ` is not a directory`},
	} {
		if _, err := Load(path, tc.o, Options{IgnoreServices: true}); err == nil || err.Error() != tc.want {
			t.Errorf("got %v\nwant %s", err, tc.want)
		}
	}
}
