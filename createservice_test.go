package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/lavavisor/lavavisor/config"
)

// csBlock is the entry create-service renders for a service, with its dash
// and its keys after dash and key spaces (TestCreateServiceRender pins the text).
func csBlock(dash, key int, name string, args ...string) string {
	return serviceItem{name: name, args: args, dir: "services/" + name}.render(dash, key)
}

func TestCreateServiceRender(t *testing.T) {
	item := serviceItem{name: "007", args: []string{"rpcprovider", "p.yml", "--geolocation", "1"}, dir: "services/007"}
	for _, tc := range []struct {
		dash, key int
		want      string
	}{
		{0, 2, "- name: \"007\"\n  args: [rpcprovider, p.yml, --geolocation, \"1\"]\n  dir: services/007\n"},
		{2, 4, "  - name: \"007\"\n    args: [rpcprovider, p.yml, --geolocation, \"1\"]\n    dir: services/007\n"},
		{3, 8, "   -    name: \"007\"\n        args: [rpcprovider, p.yml, --geolocation, \"1\"]\n        dir: services/007\n"},
		{2, 2, "  - name: \"007\"\n    args: [rpcprovider, p.yml, --geolocation, \"1\"]\n    dir: services/007\n"},
	} {
		if got := item.render(tc.dash, tc.key); got != tc.want {
			t.Errorf("render(%d, %d):\n%s\nwant:\n%s", tc.dash, tc.key, got, tc.want)
		}
	}
}

func TestCreateServiceAppend(t *testing.T) {
	args := []string{"rpcprovider", "provider.yml", "--from", "op", "--geolocation", "1"}
	svc := func(name string) string {
		return "  - name: " + name + "\n    args: [rpcprovider, " + name + ".yml]\n"
	}
	// "@" marks where the block goes; want is the whole result when the
	// file itself changes (an empty value dropped).
	cases := []struct {
		name       string
		in         string
		dash, key  int
		want       string
		wantPrefix string // when in has no "@"
	}{
		{name: "last key, two-space items", in: "node: tcp://n:1\nservices:\n" + svc("a") + svc("b") + "@", dash: 2, key: 4},
		{name: "no trailing newline", in: "node: tcp://n:1\nservices:\n" + strings.TrimSuffix(svc("a"), "\n") + "@", dash: 2, key: 4},
		{name: "indentless list, then a key", in: "services:\n- name: a\n  args: [rpcprovider, a.yml]\n@restart: never\n", dash: 0, key: 2},
		{name: "blank line and comments after the list", in: "services:\n" + svc("a") + "    # inside a\n@\n  # about pin\npin: \"\"\n", dash: 2, key: 4},
		{name: "block scalar in the last entry", in: "services:\n" + svc("a") + "    env:\n      NOTE: |\n        one\n\n        three\n@\nrolling: false\n", dash: 2, key: 4},
		{name: "flow entry", in: "services:\n  - {name: a, args: [rpcprovider, a.yml]}\n@pin: \"\"\n", dash: 2, key: 4},
		{name: "wide dash", in: "services:\n   -    name: a\n        args: [rpcprovider, a.yml]\n@", dash: 3, key: 8},
		{name: "no services key", in: "node: tcp://n:1", want: "node: tcp://n:1\nservices:\n" + csBlock(2, 4, "provider", args...)},
		{name: "empty flow list with a comment", in: "services: []  # none yet\npin: \"\"\n",
			want: "services:  # none yet\n" + csBlock(2, 4, "provider", args...) + "pin: \"\"\n"},
		{name: "empty flow list with spaces, last line", in: "pin: \"\"\nservices: [ ]",
			want: "pin: \"\"\nservices:\n" + csBlock(2, 4, "provider", args...)},
		{name: "no value", in: "services:\n# later\npin: \"\"\n",
			want: "services:\n" + csBlock(2, 4, "provider", args...) + "# later\npin: \"\"\n"},
		{name: "tilde", in: "services: ~ # none\n",
			want: "services: # none\n" + csBlock(2, 4, "provider", args...)},
		{name: "non-ASCII before the value", in: "# é\nservices: []\n",
			want: "# é\nservices:\n" + csBlock(2, 4, "provider", args...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, at := tc.in, strings.Index(tc.in, "@")
			item := serviceItem{name: "provider", args: args, dir: "services/provider"}
			if at >= 0 {
				in = strings.Replace(in, "@", "", 1)
			}
			got, err := appendService([]byte(in), item)
			if err != nil {
				t.Fatal(err)
			}
			if at >= 0 {
				block := csBlock(tc.dash, tc.key, "provider", args...)
				if at > 0 && in[at-1] != '\n' {
					block = "\n" + block
				}
				if len(got) != len(in)+len(block) || !bytes.Equal(got[:at], []byte(in[:at])) ||
					!bytes.Equal(got[at+len(block):], []byte(in[at:])) || string(got[at:at+len(block)]) != block {
					t.Fatalf("got:\n%s\nwant %q inserted at byte %d of:\n%s", got, block, at, in)
				}
			} else if string(got) != tc.want {
				t.Fatalf("got:\n%s\nwant:\n%s", got, tc.want)
			}
			dir := t.TempDir()
			if err := checkAppended([]byte(in), got, item, filepath.Join(dir, "config.yml"), config.Overrides{}, strings.Count(in, "name:")); err != nil {
				t.Fatalf("check: %v\n%s", err, got)
			}
		})
	}
}

func TestCreateServiceAppendRefuses(t *testing.T) {
	item := serviceItem{name: "p", args: []string{"rpcprovider", "p.yml"}, dir: "services/p"}
	for in, want := range map[string]string{
		"services: [{name: a, args: [rpcprovider]}]\n": `line 1: services is a flow list ([...]): create-service appends to a block list`,
		"x: &l []\nservices: *l\n":                     `line 2: services is an alias (*l)`,
		"{services: []}\n":                             `flow mapping`,
		"services: [ # c\n]\n":                         `holds a comment`,
	} {
		_, err := appendService([]byte(in), item)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", in, err, want)
		}
	}
}

// A splice that would change another entry is caught before anything is written.
func TestCreateServiceCheckCatchesChanges(t *testing.T) {
	item := serviceItem{name: "p", args: []string{"rpcprovider", "p.yml"}, dir: "services/p"}
	path := filepath.Join(t.TempDir(), "config.yml")
	old := "services:\n  - name: a\n    args: [rpcprovider, a.yml]\n    env:\n      K: |\n        v\n\n"
	good, err := appendService([]byte(old), item)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkAppended([]byte(old), good, item, path, config.Overrides{}, 1); err != nil {
		t.Errorf("the real splice: %v\n%s", err, good)
	}
	for _, updated := range []string{
		strings.Replace(string(good), "a.yml", "b.yml", 1),
		strings.Replace(string(good), "p.yml", "q.yml", 1),
		strings.Replace(string(good), "name: p", "name: a", 1),
		strings.Replace(string(good), "        v\n", "        w\n", 1),
		string(good) + "pin: 6.2.5\n",
	} {
		err := checkAppended([]byte(old), []byte(updated), item, path, config.Overrides{}, 1)
		if err == nil || !strings.Contains(err.Error(), "would make the new entry change other entries") {
			t.Errorf("got %v for:\n%s", err, updated)
		}
	}
	if err := checkAppended([]byte(old), append(good, "---\nx: 1\n"...), item, path, config.Overrides{}, 1); err == nil ||
		!strings.Contains(err.Error(), "more than one YAML document") {
		t.Errorf("two documents: got %v", err)
	}
	if err := checkAppended([]byte(old), append(good, "bogus: 1\n"...), item, path, config.Overrides{}, 1); err == nil {
		t.Error("an unknown key passed")
	}

	// After a keep-chomped scalar the entry would steal its trailing blank
	// line: the check refuses what the splice made.
	keep := strings.Replace(old, "K: |", "K: |+", 1)
	spliced, err := appendService([]byte(keep), item)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkAppended([]byte(keep), spliced, item, path, config.Overrides{}, 1); err == nil ||
		!strings.Contains(err.Error(), "would make the new entry change other entries") {
		t.Errorf("keep-chomped scalar: got %v for:\n%s", err, spliced)
	}
}

// Arguments that YAML would misread come out quoted and read back unchanged.
func TestCreateServiceQuoting(t *testing.T) {
	args := []string{"rpcprovider", "1", "yes", "a, b", "#c", ": x", "", "null", "~", "-x", "[x", "{y}", "*z", "&a", "!t",
		"%p", "@q", "`r", "a #b", "it's", `"q"`, "0x1f", "1e3", ".inf", "2001-01-01", "tab\there", "line\nbreak", " lead", "trail ", "é"}
	item := serviceItem{name: "123", args: args, dir: "services/123"}
	out, err := appendService([]byte("services: []\n"), item)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(out), "\n") != 4 {
		t.Errorf("the entry is not three lines:\n%s", out)
	}
	if err := checkAppended([]byte("services: []\n"), out, item, filepath.Join(t.TempDir(), "config.yml"), config.Overrides{}, 0); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// The command shown to the operator reads back as the arguments given.
func TestCreateServiceShellJoin(t *testing.T) {
	args := []string{"rpcprovider", "ETH Mainnet.yml", "--from", "op key", "", "it's", `a"b`, "$HOME", "a\\b", "--note=a, b #c", "tcp://1.2.3.4:26657"}
	joined := shellJoin(args)
	back, err := splitWords(joined)
	if err != nil || !slices.Equal(back, args) {
		t.Fatalf("%s reads back as %q (%v)", joined, back, err)
	}
	if !strings.HasPrefix(joined, "rpcprovider 'ETH Mainnet.yml' --from 'op key' '' ") || !strings.HasSuffix(joined, " tcp://1.2.3.4:26657") {
		t.Errorf("quoted more or less than needed: %s", joined)
	}
}

func TestCreateServiceDefaultName(t *testing.T) {
	for _, tc := range []struct{ role, file, want string }{
		{"provider", "/x/provider.yml", "provider"},
		{"provider", "provider-eth.yml", "provider-eth"},
		{"provider", "Lava_Example.yml", "provider-lava-example"},
		{"consumer", "rpcconsumer.yaml", "consumer-rpcconsumer"},
		{"consumer", "consumer.yml", "consumer"},
		{"provider", "__.yml", "provider"},
		{"provider", "eth..arb  (2).yml", "provider-eth-arb-2"},
		{"provider", "providers.yml", "provider-providers"},
		{"provider", strings.Repeat("x", 80) + ".yml", "provider-" + strings.Repeat("x", 54)},
		{"provider", strings.Repeat("x", 53) + "-y.yml", "provider-" + strings.Repeat("x", 53)},
	} {
		got := defaultServiceName(tc.role, tc.file)
		if got != tc.want || !serviceNameRule.MatchString(got) {
			t.Errorf("%s %s: got %q, want %q", tc.role, tc.file, got, tc.want)
		}
	}
}

// csSnapshot records every file, folder and link under dir: what a refused
// create-service must leave exactly as it was.
func csSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == "config.lock" {
			// The config lock is bookkeeping: once made it stays (removing
			// a lock file races its next holder), and holds only a pid.
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		v := fi.Mode().String()
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			v += " -> " + l
		}
		out[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func csReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func csWriteFile(t *testing.T, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// csOddHome is a home whose config.yml is testdata/createservice/odd.yml, with
// a provider config beside it to add.
func csOddHome(t *testing.T) (h *testHome, odd []byte, src string) {
	h = newTestHome(t)
	odd = csReadFile(t, "testdata/createservice/odd.yml")
	h.config(string(odd))
	src = filepath.Join(h.dir, "ETH Mainnet.yml")
	csWriteFile(t, src, csReadFile(t, "testdata/createservice/provider.yml"), 0o755)
	return h, odd, src
}

func TestCreateServiceOddConfig(t *testing.T) {
	h, odd, src := csOddHome(t)
	code, out := runLavavisor(t, "--directory", h.dir, "create-service", "provider", src,
		"--from", "op key", "--geolocation", "1", "--keyring-backend", "test",
		"--", "--log_level", "debug", "--note=a, b #c", "yes", "")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	name := "provider-eth-mainnet" // from "ETH Mainnet.yml"
	svcDir := filepath.Join(h.root(), "services", name)
	for _, s := range []string{
		"added service " + name + " to " + filepath.Join(h.root(), "config.yml"),
		"copied " + src + " to " + filepath.Join(svcDir, "ETH Mainnet.yml"),
		"it runs: lavap rpcprovider 'ETH Mainnet.yml' --from 'op key' --geolocation 1 --node tcp://10.0.0.1:26657",
		"restart lavavisor or send it SIGHUP to start it",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}

	// The file is the old one with exactly the block inserted after the last
	// line of the last entry.
	got := csReadFile(t, filepath.Join(h.root(), "config.yml"))
	marker := []byte("        # last words of provider-lava\n")
	at := bytes.Index(odd, marker) + len(marker)
	args := []string{"rpcprovider", "ETH Mainnet.yml", "--from", "op key", "--geolocation", "1",
		"--node", "tcp://10.0.0.1:26657", "--chain-id", "lava-testnet-2", "--keyring-backend", "test",
		"--log_level", "debug", "--note=a, b #c", "yes", ""}
	block := "    -   name: " + name + "\n" +
		`        args: [rpcprovider, ETH Mainnet.yml, --from, op key, --geolocation, "1", --node, 'tcp://10.0.0.1:26657', --chain-id, lava-testnet-2, --keyring-backend, test, --log_level, debug, '--note=a, b #c', yes, ""]` + "\n" +
		"        dir: services/" + name + "\n"
	if len(got) != len(odd)+len(block) || !bytes.Equal(got[:at], odd[:at]) || !bytes.Equal(got[at+len(block):], odd[at:]) ||
		string(got[at:at+len(block)]) != block {
		t.Fatalf("config.yml is not the old one with the block at byte %d:\n%s", at, got)
	}

	cfg, err := config.Load(filepath.Join(h.root(), "config.yml"), config.Overrides{}, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, ok := cfg.Service(name)
	if !ok || !slices.Equal(s.Args, args) || s.Dir != svcDir || s.Role != config.RoleProvider || len(cfg.Services) != 3 {
		t.Fatalf("service %+v (found %v, %d services), want args %q in %s", s, ok, len(cfg.Services), args, svcDir)
	}
	// The copy has the source's bytes, and its mode no wider than 0644.
	copied := filepath.Join(svcDir, "ETH Mainnet.yml")
	if !bytes.Equal(csReadFile(t, copied), csReadFile(t, src)) {
		t.Error("the copy differs from the source")
	}
	if fi, err := os.Stat(copied); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("copy mode %v (%v), want 0644 from a 0755 source", fi.Mode(), err)
	}
	if tmp, _ := filepath.Glob(filepath.Join(h.root(), ".tmp-*")); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

// A home without config.yml gets the sample, with only its `services: []`
// line turned into the list; a file:// version source gives no --node.
func TestCreateServiceFreshHome(t *testing.T) {
	h := newTestHome(t)
	src := filepath.Join(h.dir, "consumer.yml")
	csWriteFile(t, src, []byte("endpoints: []\n"), 0o600)
	code, out := runLavavisor(t, "--directory", h.dir, "--node", "file:///srv/versions.yml",
		"create-service", "consumer", src, "--from", "user1", "--geolocation", "2")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, s := range []string{"created it from the sample", "the service gets no --node", "added service consumer to"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	got := string(csReadFile(t, filepath.Join(h.root(), "config.yml")))
	block := "services:\n" + csBlock(2, 4, "consumer", "rpcconsumer", "consumer.yml", "--from", "user1", "--geolocation", "2")
	if want := strings.Replace(config.SampleConfig(), "services: []\n", block, 1); got != want {
		t.Fatalf("config.yml:\n%s\nwant:\n%s", got, want)
	}
	if fi, err := os.Stat(filepath.Join(h.root(), "services", "consumer", "consumer.yml")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("copy: %v %v, want mode 0600 kept", fi, err)
	}
}

func TestCreateServiceRefuses(t *testing.T) {
	cases := []struct {
		name   string
		config string // replaces odd.yml as config.yml when set
		args   []string
		code   int
		want   string
	}{
		{name: "duplicate name in config.yml", args: []string{"--name", "provider-eth"}, code: 1,
			want: `a service named \"provider-eth\" is already in ` + "%ROOT%/config.yml (line 8): choose another --name"},
		{name: "services folder exists", args: []string{"--name", "provider-old"}, code: 1,
			want: "%ROOT%/services/provider-old already exists: choose another --name, or remove that folder"},
		{name: "missing file", args: []string{"--name", "x"}, code: 1, want: "lavap config file %DIR%/nope.yml does not exist"},
		{name: "file is a directory", args: []string{"--name", "x"}, code: 1,
			want: "lavap config file %DIR%/adir is a directory: give the file itself, such as provider.yml"},
		{name: "role validator", code: 2, want: `<role> must be one of "provider","consumer" but got "validator"`},
		{name: "bad name", args: []string{"--name", "Bad_Name"}, code: 2,
			want: `--name \"Bad_Name\": want lowercase letters, digits and dashes, starting with a letter or digit, at most 63 characters`},
		{name: "geolocation not a number", code: 2, want: `--geolocation: expected a valid 64 bit uint but got "eu"`},
		{name: "missing from", code: 2, want: "missing flags: --from=KEY"},
		{name: "stray word", args: []string{"stray"}, code: 2, want: `unexpected argument "stray": more lavap arguments go after --`},
		{name: "node in lavap args", args: []string{"--", "--node=tcp://x:1"}, code: 2,
			want: `lavap argument \"--node=tcp://x:1\": create-service sets --node itself`},
		{name: "invalid config.yml", config: "services: []\nstop_timeout: 5s\n", code: 1,
			want: `error="config.yml is not valid; fix it first:"` + "\n" + `lavavisor | `},
		{name: "invalid config.yml, the problem", config: "services: []\nstop_timeout: 5s\n", code: 1,
			want: `error="%ROOT%/config.yml:2: stop_timeout: unknown key (did you mean stop-timeout?)"`},
		{name: "flow services list", config: "services: [{name: a, args: [rpcprovider, a.yml]}]\n", code: 1,
			want: `line 1: services is a flow list ([...]): create-service appends to a block list`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, _, src := csOddHome(t)
			if tc.config != "" {
				h.config(tc.config)
			}
			csWriteFile(t, filepath.Join(h.root(), "services", "provider-old", "provider.yml"), []byte("x: 1\n"), 0o644)
			if err := os.Mkdir(filepath.Join(h.dir, "adir"), 0o755); err != nil {
				t.Fatal(err)
			}
			role, from, geo := "provider", []string{"--from", "op"}, []string{"--geolocation", "1"}
			switch tc.name {
			case "missing file":
				src = filepath.Join(h.dir, "nope.yml")
			case "file is a directory":
				src = filepath.Join(h.dir, "adir")
			case "role validator":
				role = "validator"
			case "geolocation not a number":
				geo = []string{"--geolocation", "eu"}
			case "missing from":
				from = nil
			}
			args := append([]string{"--directory", h.dir, "create-service", role, src}, from...)
			args = append(append(args, geo...), tc.args...)
			before := csSnapshot(t, h.dir)
			code, out := runLavavisor(t, args...)
			want := strings.NewReplacer("%ROOT%", h.root(), "%DIR%", h.dir).Replace(tc.want)
			if code != tc.code || !strings.Contains(out, want) {
				t.Errorf("exit %d, want %d; output lacks %q:\n%s", code, tc.code, want, out)
			}
			if after := csSnapshot(t, h.dir); !maps.Equal(before, after) {
				t.Errorf("the home changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// The point of it all: a running lavavisor told with SIGHUP starts the new
// service in its own folder, where lavap finds its config by name.
func TestCreateServiceThenSIGHUPStartsIt(t *testing.T) {
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	h.config("node: file:///nonexistent/versions.yml\nstop-timeout: 5s\nservices:\n" + h.service("provider-eth", ""))
	rec := h.record("provider")
	t.Setenv("FAKE_RECORD", rec) // inherited by the new service, which has no env of its own
	p := h.start("start")
	p.waitFor("provider-eth started", func() bool { return h.count("provider-eth", "start") == 1 })

	src := filepath.Join(h.dir, "provider.yml")
	csWriteFile(t, src, csReadFile(t, "testdata/createservice/provider.yml"), 0o644)
	if code, out := runLavavisor(t, "--directory", h.dir, "create-service", "provider", src, "--from", "op", "--geolocation", "1"); code != 0 {
		t.Fatalf("create-service: exit %d:\n%s", code, out)
	}
	p.signal(syscall.SIGHUP)
	p.waitFor("provider started", func() bool { return h.count("provider", "start") == 1 })
	pid := h.pids("provider")[0]
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(h.root(), "services", "provider"); cwd != want {
		t.Errorf("working directory %s, want %s", cwd, want)
	}
	if _, err := os.Stat(filepath.Join(cwd, "provider.yml")); err != nil {
		t.Errorf("lavap would not find its config: %v", err)
	}
	if ev := h.events("provider")[0]; !strings.HasSuffix(ev, "rpcprovider provider.yml --from op --geolocation 1") {
		t.Errorf("started as %q", ev)
	}
	if h.count("provider-eth", "start") != 1 {
		t.Errorf("provider-eth was restarted: %q", h.events("provider-eth"))
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
}
