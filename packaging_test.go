package main

// The packaging files (Dockerfile, docker-compose.yml, deploy/k8s/*.yaml)
// cannot be built or run here: no container engine. Instead, every container's
// arguments go through the real command-line parser, with the environment the
// container would have, and what the files say about the same thing (ports,
// paths, users, grace periods) is checked to agree with the CLI and with each
// other. TestPackagingCatchesInconsistentEdits shows that each check can fail.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"gopkg.in/yaml.v3"

	"github.com/lavavisor/lavavisor/config"
)

// graceMargin is what a container's stop grace period must leave beyond the
// stop-timeout: after it, LavaVisor still sends SIGKILL, reaps and logs.
const graceMargin = 5 * time.Second

// packagingFiles are the files under test, as text, so that a test can edit
// them before checking.
type packagingFiles struct {
	dockerfile string
	compose    string
	k8s        map[string]string // base name → content
	goMod      string
}

func loadPackagingFiles(t *testing.T) packagingFiles {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	f := packagingFiles{
		dockerfile: read("Dockerfile"),
		compose:    read("docker-compose.yml"),
		goMod:      read("go.mod"),
		k8s:        map[string]string{},
	}
	names, err := filepath.Glob("deploy/k8s/*.yaml")
	if err != nil || len(names) == 0 {
		t.Fatalf("no deploy/k8s/*.yaml (%v)", err)
	}
	for _, n := range names {
		f.k8s[filepath.Base(n)] = read(n)
	}
	return f
}

func TestPackagingDockerfile(t *testing.T) {
	f := loadPackagingFiles(t)
	img, problems := checkDockerfile(t, f.dockerfile, f.goMod)
	for _, p := range problems {
		t.Error(p)
	}
	// The image's default command supervises config.yml's services.
	_, kctx, err := parseContainerArgs(t, append(img.entrypoint[1:], img.cmd...), img.env)
	if err != nil || kctx.Command() != "start" {
		t.Errorf("image's default command: got %v, %v; want start", kctx, err)
	}
}

func TestPackagingCompose(t *testing.T) {
	f := loadPackagingFiles(t)
	img, problems := checkDockerfile(t, f.dockerfile, f.goMod)
	problems = append(problems, checkCompose(t, f.compose, img)...)
	for _, p := range problems {
		t.Error(p)
	}
}

func TestPackagingKubernetes(t *testing.T) {
	f := loadPackagingFiles(t)
	img, problems := checkDockerfile(t, f.dockerfile, f.goMod)
	_, kp := checkKubernetes(t, "deploy/k8s", f.k8s, img)
	problems = append(problems, kp...)
	for _, p := range problems {
		t.Error(p)
	}
}

// TestPackagingCatchesInconsistentEdits edits one file the way a hurried
// operator might and expects the checks to name the mistake.
func TestPackagingCatchesInconsistentEdits(t *testing.T) {
	cases := []struct {
		file     string // Dockerfile, docker-compose.yml or a k8s base name
		old, new string
		nth      int // which occurrence of old to replace, from 1
		want     string
	}{
		{"Dockerfile", "USER lava:lava", "USER root", 1, "runs as root"},
		{"Dockerfile", "--uid 1000 --gid 1000", "--uid 0 --gid 0", 1, "runs as root"},
		{"Dockerfile", "--no-install-recommends ca-certificates", "--no-install-recommends curl", 1, "no CA certificates"},
		{"Dockerfile", `ENTRYPOINT ["/usr/local/bin/lavavisor"]`, `ENTRYPOINT /usr/local/bin/lavavisor`, 1, "ENTRYPOINT: want the exec form"},
		{"Dockerfile", `ENTRYPOINT ["/usr/local/bin/lavavisor"]`, `ENTRYPOINT ["/usr/bin/lavavisor"]`, 1, "not the binary copied"},
		{"Dockerfile", `CMD ["start"]`, `CMD ["strat"]`, 1, "does not parse"},
		{"Dockerfile", "CGO_ENABLED=0 go build", "go build", 1, "CGO_ENABLED=0"},
		{"Dockerfile", "-trimpath -ldflags", "-ldflags", 1, "-trimpath"},
		{"Dockerfile", "-X main.version=", "-X main.Version=", 1, "-X main.version="},
		{"Dockerfile", "golang:1.26-bookworm", "golang:1.25-bookworm", 1, "go.mod"},
		{"Dockerfile", "STOPSIGNAL SIGTERM", "STOPSIGNAL SIGKILL", 1, "STOPSIGNAL"},
		{"Dockerfile", "LAVAVISOR_DIRECTORY=/home/lava", "LAVAVISOR_DIRECTORY=/data", 1, "not the VOLUME"},
		{"Dockerfile", "chown lava:lava /home/lava /releases", "chown lava:lava /home/lava", 1, "/releases is not made and owned"},

		{"docker-compose.yml", "stop_grace_period: 30s", "stop_grace_period: 15s", 1, "stop_grace_period 15s"},
		{"docker-compose.yml", "init: false", "init: true", 2, "init"},
		{"docker-compose.yml", "stop_signal: SIGTERM", "stop_signal: SIGKILL", 1, "stop_signal"},
		{"docker-compose.yml", "LAVAVISOR_RELEASES_DIR: /releases", "LAVAVISOR_RELEASES_DIR: /home/lava/releases", 2, "releases-dir"},
		{"docker-compose.yml", "lava-releases:/releases", "provider-lava-releases:/releases", 2, "provider-lava-releases"},
		{"docker-compose.yml", "provider-lava-home:/home/lava", "provider-eth-home:/home/lava", 1, "home volume provider-eth-home is shared"},
		{"docker-compose.yml", `"127.0.0.1:9109:9109"`, `"127.0.0.1:9109:9100"`, 1, "metrics port 9109 is not published"},
		{"docker-compose.yml", "LAVAVISOR_METRICS_ADDR: 0.0.0.0:9109", "LAVAVISOR_METRICS_ADDR: 127.0.0.1:9109", 1, "loopback"},
		{"docker-compose.yml", "target: /home/lava/config/provider.yml", "target: /etc/lava/provider.yml", 1, "lavap looks in"},
		{"docker-compose.yml", "- provider.yml # found", "- rpcprovider.yml # found", 1, "rpcprovider.yml"},
		{"docker-compose.yml", "address: 0.0.0.0:2220", "address: 0.0.0.0:2230", 1, "2230 is not published"},
		{"docker-compose.yml", "- pod", "- strat", 1, "do not parse"},
		{"docker-compose.yml", "      - lava-mainnet-1", "      - lava-testnet-2", 1, "--chain-id lava-testnet-2"},
		{"docker-compose.yml", "      - --geolocation", "      - --geo", 2, "--geolocation"},

		{"statefulset.yaml", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 10", 1, "terminationGracePeriodSeconds 10s"},
		{"statefulset.yaml", "path: /readyz", "path: /ready", 1, "readinessProbe path /ready"},
		{"statefulset.yaml", "path: /healthz", "path: /metrics", 2, "livenessProbe path /metrics"},
		{"statefulset.yaml", "port: metrics", "port: provider", 2, "livenessProbe port 2220"},
		{"statefulset.yaml", "value: 0.0.0.0:9109", "value: 0.0.0.0:9200", 1, "readinessProbe port 9109"},
		{"statefulset.yaml", "failureThreshold: 66", "failureThreshold: 6", 1, "startupProbe"},
		{"statefulset.yaml", "runAsUser: 1000", "runAsUser: 0", 1, "runAsUser 0"},
		{"statefulset.yaml", "runAsNonRoot: true", "runAsNonRoot: false", 1, "runAsNonRoot"},
		{"statefulset.yaml", "fsGroup: 1000", "fsGroup: 2000", 1, "fsGroup"},
		{"statefulset.yaml", "        name: home\n", "        name: data\n", 1, "no volumeClaimTemplate"},
		{"statefulset.yaml", "mountPath: /home/lava/config", "mountPath: /config", 1, "lavap looks in"},
		{"statefulset.yaml", "          args:\n", "          command: [/bin/sh, -c]\n          args:\n", 1, "command replaces the entrypoint"},
		{"statefulset.yaml", "          args:\n            - pod\n", "          args: [start]\n          x-was:\n", 1, "want pod"},
		{"statefulset.yaml", "mountPath: /etc/lava/keyring/keyring-test", "mountPath: /home/lava/.lava/keyring-test", 1, "inside lavap's home"},
		{"statefulset.yaml", "- /etc/lava/keyring\n", "- /etc/lava/keys\n", 1, "keyring /etc/lava/keys/keyring-test is on no volume"},
		{"configmap.yaml", "provider.yml: |", "rpcprovider.yml: |", 1, "has no provider.yml"},
		{"configmap.yaml", "address: 0.0.0.0:2220", "address: 0.0.0.0:2230", 3, "2230 is not published"},
		{"service.yaml", "clusterIP: None", "clusterIP: 10.0.0.9", 1, "headless"},
		{"service.yaml", "targetPort: metrics", "targetPort: metric", 1, "targetPort metric"},
	}
	for _, c := range cases {
		t.Run(c.file+"/"+c.want, func(t *testing.T) {
			f := loadPackagingFiles(t)
			edit := func(s string) string {
				got, ok := replaceNth(s, c.old, c.new, c.nth)
				if !ok {
					t.Fatalf("%s: occurrence %d of %q not found", c.file, c.nth, c.old)
				}
				return got
			}
			switch c.file {
			case "Dockerfile":
				f.dockerfile = edit(f.dockerfile)
			case "docker-compose.yml":
				f.compose = edit(f.compose)
			default:
				f.k8s[c.file] = edit(f.k8s[c.file])
			}
			img, problems := checkDockerfile(t, f.dockerfile, f.goMod)
			problems = append(problems, checkCompose(t, f.compose, img)...)
			_, kp := checkKubernetes(t, "deploy/k8s", f.k8s, img)
			problems = append(problems, kp...)
			for _, p := range problems {
				if strings.Contains(p, c.want) {
					return
				}
			}
			t.Errorf("no problem mentions %q; got %q", c.want, problems)
		})
	}
}

// replaceNth replaces the nth occurrence (from 1) of old in s.
func replaceNth(s, old, new string, nth int) (string, bool) {
	at := -1
	for i := 0; i < nth; i++ {
		j := strings.Index(s[at+1:], old)
		if j < 0 {
			return s, false
		}
		at += 1 + j
	}
	return s[:at] + new + s[at+len(old):], true
}

// TestPackagingDockerignore checks that the build context keeps every file
// `go build .` reads.
func TestPackagingDockerignore(t *testing.T) {
	b, err := os.ReadFile(".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	patterns := dockerignorePatterns(string(b))
	// The module's own packages that the binary imports, with their files.
	out, err := exec.Command("go", "list", "-deps",
		"-f", `{{if .Module}}{{if .Module.Main}}{{.Dir}}|{{join .GoFiles ","}},{{join .EmbedFiles ","}}{{end}}{{end}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	wd, _ := os.Getwd()
	needed := []string{"go.mod", "go.sum"}
	for _, line := range strings.Fields(string(out)) {
		dir, files, _ := strings.Cut(line, "|")
		rel, err := filepath.Rel(wd, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.Split(files, ",") {
			if f != "" {
				needed = append(needed, filepath.ToSlash(filepath.Join(rel, f)))
			}
		}
	}
	if len(needed) < 10 {
		t.Fatalf("go list found too few files: %v", needed)
	}
	for _, p := range dockerignoreProblems(patterns, needed) {
		t.Error(p)
	}
	// And the check can fail: a pattern that drops a package.
	if got := dockerignoreProblems(append(patterns, "config"), needed); len(got) == 0 || !strings.Contains(got[0], "config/") {
		t.Errorf("excluding config/ not caught: %q", got)
	}
	// Test files are left out, as intended.
	if len(dockerignoreProblems(patterns, []string{"main_test.go", "config/testdata/x.yml"})) != 2 {
		t.Error("test files are not excluded from the build context")
	}
}

func dockerignorePatterns(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// dockerignoreProblems names each file that a pattern excludes. Docker's
// patterns are anchored at the context root; `**` spans folders, and a pattern
// that matches a folder excludes what it holds.
func dockerignoreProblems(patterns, files []string) []string {
	var problems []string
	for _, p := range patterns {
		if strings.HasPrefix(p, "!") {
			return append(problems, fmt.Sprintf(".dockerignore: exception %q: not understood by this test", p))
		}
		re := dockerignoreRegexp(p)
		for _, f := range files {
			parts := strings.Split(f, "/")
			for i := 1; i <= len(parts); i++ {
				if re.MatchString(strings.Join(parts[:i], "/")) {
					problems = append(problems, fmt.Sprintf(".dockerignore pattern %q excludes %s, which the build needs", p, f))
					break
				}
			}
		}
	}
	return problems
}

func dockerignoreRegexp(p string) *regexp.Regexp {
	p = strings.TrimPrefix(path.Clean(p), "/")
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString(`(.*/)?`)
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(`.*`)
			i++
		case p[i] == '*':
			b.WriteString(`[^/]*`)
		case p[i] == '?':
			b.WriteString(`[^/]`)
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	return regexp.MustCompile("^" + b.String() + "$")
}

// parseContainerArgs runs args through the real parser with env as the
// container's environment (only LAVAVISOR_* matter to the parser; any set in
// the test's own environment are cleared first).
func parseContainerArgs(t *testing.T, args []string, env map[string]string) (*CLI, *kong.Context, error) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "LAVAVISOR_") {
			t.Setenv(k, "") // restored after the test
			os.Unsetenv(k)
		}
	}
	for k, v := range env {
		if strings.HasPrefix(k, "LAVAVISOR_") {
			t.Setenv(k, v)
		}
	}
	var cli CLI
	exited := false
	parser, err := newParser(&cli, func(int) { exited = true })
	if err != nil {
		t.Fatal(err)
	}
	kctx, err := parser.Parse(args)
	if err == nil && exited {
		err = errors.New("the parser exited (--help?)")
	}
	if err != nil {
		return nil, nil, err
	}
	return &cli, kctx, nil
}

// podService is what a container running `lavavisor pod` amounts to, as the
// parser and config.Load see it.
type podService struct {
	cli     *CLI
	cfg     *config.Config
	home    string
	metrics int      // port of --metrics-addr
	lavap   []string // the lavap arguments, after "lavap"
}

// checkPod parses a container's arguments and returns what it would run, or
// the problems found. where names the container in messages.
func checkPod(t *testing.T, where string, args []string, env map[string]string) (podService, []string) {
	t.Helper()
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, where+": "+fmt.Sprintf(format, a...)) }
	cli, kctx, err := parseContainerArgs(t, args, env)
	if err != nil {
		bad("arguments %q do not parse: %v", args, err)
		return podService{}, problems
	}
	if kctx.Command() != "pod <command>" && kctx.Command() != "pod" {
		bad("command %q: want pod (one lavap per container)", kctx.Command())
		return podService{}, problems
	}
	ps := podService{cli: cli, home: cli.Directory}
	// The settings pod would run with, computed as pod.go does; config.Load
	// also validates them (node URL, chain id, releases-dir).
	o := cli.Pod.overrides(&cli.Globals)
	ps.cfg, err = config.Load(filepath.Join(t.TempDir(), "config.yml"), o, config.Options{IgnoreServices: true, AllowMissing: true})
	if err != nil {
		bad("settings: %v", err)
		return podService{}, problems
	}
	argv := cli.Pod.Command
	if cli.Pod.Cmd != "" {
		if argv, err = splitWords(cli.Pod.Cmd); err != nil {
			bad("--cmd: %v", err)
		}
	}
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) < 3 || argv[0] != "lavap" || (argv[1] != "rpcprovider" && argv[1] != "rpcconsumer") || strings.HasPrefix(argv[2], "-") {
		bad("pod command %q: want lavap rpcprovider|rpcconsumer CONFIG ...", argv)
		return podService{}, problems
	}
	ps.lavap = argv[1:]
	// lavap's --node and --chain-id are LavaVisor's own.
	if v := flagValue(ps.lavap, "--chain-id"); v != ps.cfg.ChainID {
		bad("lavap --chain-id %s, LavaVisor's chain-id %q: they must agree", v, ps.cfg.ChainID)
	}
	if v := flagValue(ps.lavap, "--node"); !slices.Contains(ps.cfg.Nodes(), v) {
		bad("lavap --node %s is not one of LavaVisor's nodes %q", v, ps.cfg.Nodes())
	}
	for _, f := range []string{"--from", "--geolocation"} {
		if flagValue(ps.lavap, f) == "" {
			bad("lavap %s needs %s", ps.lavap[0], f)
		}
	}
	// Probes and scrapes come from outside the container.
	host, port, err := net.SplitHostPort(cli.MetricsAddr)
	if err != nil {
		bad("--metrics-addr %q: %v (the probes need it)", cli.MetricsAddr, err)
	} else if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		bad("--metrics-addr %s is on loopback: unreachable from outside the container", cli.MetricsAddr)
	} else {
		ps.metrics, _ = strconv.Atoi(port)
	}
	return ps, problems
}

// stopTimeout is the stop-timeout that pod gives its service.
func (ps podService) stopTimeout() time.Duration {
	return ps.cfg.Effective(config.Service{Name: ps.cli.Pod.Name, Args: ps.lavap}).StopTimeout
}

// flagValue is the value of --name in args (--name v or --name=v), "" if absent.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// lavapConfigProblems checks that lavap finds its config file, mounted at
// mountedAt, from its working folder workdir (it looks the name up there, then
// in ./config), and that every listener it declares is published: ports says
// whether a container port is.
func lavapConfigProblems(where string, ps podService, workdir, mountedAt, content string, published func(int) bool) []string {
	var problems []string
	name := ps.lavap[1]
	if path.Base(mountedAt) != name {
		problems = append(problems, fmt.Sprintf("%s: lavap's config argument %s, but the file mounted is %s", where, name, mountedAt))
	}
	if dir := path.Dir(mountedAt); dir != workdir && dir != path.Join(workdir, "config") {
		problems = append(problems, fmt.Sprintf("%s: %s: lavap looks in %s and %s/config only", where, mountedAt, workdir, workdir))
	}
	var pc struct {
		Endpoints []struct {
			NetworkAddress struct {
				Address string `yaml:"address"`
			} `yaml:"network-address"`
		} `yaml:"endpoints"`
	}
	if err := yaml.Unmarshal([]byte(content), &pc); err != nil || len(pc.Endpoints) == 0 {
		return append(problems, fmt.Sprintf("%s: %s: no endpoints (%v)", where, name, err))
	}
	for _, e := range pc.Endpoints {
		_, p, err := net.SplitHostPort(e.NetworkAddress.Address)
		port, _ := strconv.Atoi(p)
		if err != nil || !published(port) {
			problems = append(problems, fmt.Sprintf("%s: %s listens on %q, but %d is not published", where, name, e.NetworkAddress.Address, port))
		}
	}
	return problems
}

// --- Dockerfile ---

// image is what a container inherits from the Dockerfile's runtime stage.
type image struct {
	entrypoint []string
	cmd        []string
	env        map[string]string
	workdir    string
	uid, gid   int
	chowned    []string // folders given to the runtime user
}

type dockerStage struct {
	from, name string
	instrs     []dockerInstr
}

type dockerInstr struct {
	op   string // upper case
	args string
}

// parseDockerfile splits a Dockerfile into stages of instructions, joining
// continued lines and dropping comments as Docker does.
func parseDockerfile(src string) []dockerStage {
	var (
		stages  []dockerStage
		logical strings.Builder
	)
	add := func(line string) {
		op, args, _ := strings.Cut(strings.TrimSpace(line), " ")
		in := dockerInstr{op: strings.ToUpper(op), args: strings.TrimSpace(args)}
		if in.op == "FROM" {
			f := strings.Fields(in.args)
			st := dockerStage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			return
		}
		if len(stages) > 0 {
			stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
		}
	}
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || trimmed == "" && logical.Len() == 0 {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			logical.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		logical.WriteString(trimmed)
		add(logical.String())
		logical.Reset()
	}
	return stages
}

// checkDockerfile checks the Dockerfile and returns its runtime image.
func checkDockerfile(t *testing.T, src, goMod string) (image, []string) {
	t.Helper()
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, "Dockerfile: "+fmt.Sprintf(format, a...)) }
	img := image{env: map[string]string{}, workdir: "/", uid: -1, gid: -1}
	stages := parseDockerfile(src)
	if len(stages) < 2 {
		bad("%d stages: want a build stage and a runtime stage", len(stages))
		return img, problems
	}
	build, runtime := stages[0], stages[len(stages)-1]

	// Build stage: the toolchain of go.mod, a static, reproducible binary.
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(goMod)
	if goVersion == nil || !strings.HasPrefix(build.from, "golang:"+goVersion[1]+"-") {
		bad("build stage FROM %s: want golang:<go.mod's go version>-... (go.mod: %q)", build.from, goVersion)
	}
	built := false
	for _, in := range build.instrs {
		if in.op != "RUN" || !strings.Contains(in.args, "go build") {
			continue
		}
		built = true
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "-X main.version="} {
			if !strings.Contains(in.args, want) {
				bad("go build without %s: %s", want, in.args)
			}
		}
	}
	if !built {
		bad("the build stage runs no go build")
	}

	// Runtime stage.
	if strings.HasPrefix(runtime.from, "golang:") {
		bad("runtime stage FROM %s: want a minimal image, not the toolchain", runtime.from)
	}
	caCerts := strings.HasPrefix(runtime.from, "gcr.io/distroless/")
	var user, binary, stopSignal string
	var volumes []string
	users := map[string][2]int{} // name → uid, gid made by useradd
	for _, in := range runtime.instrs {
		switch in.op {
		case "RUN":
			words, err := splitWords(in.args)
			if err != nil {
				bad("RUN %s: %v", in.args, err)
			}
			if slices.Contains(words, "install") && slices.Contains(words, "ca-certificates") {
				caCerts = true
			}
			if i := slices.Index(words, "useradd"); i >= 0 {
				uid, _ := strconv.Atoi(flagValue(words[i:], "--uid"))
				gid, _ := strconv.Atoi(flagValue(words[i:], "--gid"))
				for _, w := range words[i+1:] {
					if w == "&&" || w == ";" {
						break
					}
					if !strings.HasPrefix(w, "-") && w != strconv.Itoa(uid) && w != strconv.Itoa(gid) && !strings.HasPrefix(w, "/") {
						users[w] = [2]int{uid, gid}
					}
				}
			}
			if i := slices.Index(words, "chown"); i >= 0 && i+1 < len(words) {
				owner, _, _ := strings.Cut(words[i+1], ":")
				for _, w := range words[i+2:] {
					if w == "&&" || w == ";" {
						break
					}
					img.chowned = append(img.chowned, owner+" "+path.Clean(w))
				}
			}
		case "COPY":
			if f := strings.Fields(in.args); len(f) == 3 && f[0] == "--from="+build.name {
				binary = f[2]
			}
		case "ENV":
			words, err := splitWords(in.args)
			if err != nil {
				bad("ENV %s: %v", in.args, err)
			}
			for _, w := range words {
				k, v, ok := strings.Cut(w, "=")
				if !ok {
					bad("ENV %s: want KEY=value", in.args)
				}
				img.env[k] = v
			}
		case "USER":
			user, _, _ = strings.Cut(in.args, ":")
		case "WORKDIR":
			img.workdir = path.Clean(in.args)
		case "VOLUME":
			if err := json.Unmarshal([]byte(in.args), &volumes); err != nil {
				volumes = strings.Fields(in.args)
			}
		case "STOPSIGNAL":
			stopSignal = in.args
		case "ENTRYPOINT", "CMD":
			var list []string
			if err := json.Unmarshal([]byte(in.args), &list); err != nil || len(list) == 0 {
				bad("%s: want the exec form (a JSON array), so that lavavisor is PID 1 and gets the signals: %s", in.op, in.args)
			}
			if in.op == "CMD" {
				img.cmd = list
			} else {
				img.entrypoint = list
			}
		}
	}
	if !caCerts {
		bad("no CA certificates in the runtime image: HTTPS downloads of lavap would fail")
	}

	// Non-root, with a known uid (the Kubernetes securityContext names it).
	if u, ok := users[user]; ok {
		img.uid, img.gid = u[0], u[1]
	} else if n, err := strconv.Atoi(user); err == nil {
		img.uid, img.gid = n, n
	}
	switch {
	case user == "" || user == "root" || img.uid == 0:
		bad("USER %q: the image runs as root", user)
	case img.uid < 0:
		bad("USER %q: its uid is neither a number nor made by useradd --uid", user)
	}

	if len(img.entrypoint) != 1 || img.entrypoint[0] != binary || path.Base(binary) != "lavavisor" {
		bad("ENTRYPOINT %q is not the binary copied from the build stage (%s)", img.entrypoint, binary)
	}
	switch stopSignal {
	case "", "SIGTERM", "SIGINT", "TERM", "INT":
	default:
		bad("STOPSIGNAL %s: LavaVisor stops gracefully on SIGTERM or SIGINT only", stopSignal)
	}

	// The home: the volume, the working folder (lavap finds provider.yml
	// there), and HOME (lavap's keyring, ~/.lava) all in one place.
	dir := img.env["LAVAVISOR_DIRECTORY"]
	if !slices.Contains(volumes, dir) || img.workdir != dir || img.env["HOME"] != dir {
		bad("LAVAVISOR_DIRECTORY %q is not the VOLUME %q, the WORKDIR %q and HOME %q", dir, volumes, img.workdir, img.env["HOME"])
	}
	if !slices.Contains(img.chowned, user+" "+dir) {
		bad("%s is not made and owned by %s", dir, user)
	}

	if len(img.entrypoint) == 1 {
		if _, _, err := parseContainerArgs(t, img.cmd, img.env); err != nil {
			bad("CMD %q does not parse: %v", img.cmd, err)
		}
	}
	return img, problems
}

// ownedByUser reports whether the image gives folder dir to its user.
func (img image) ownedByUser(dir string) bool {
	for _, c := range img.chowned {
		if _, d, _ := strings.Cut(c, " "); d == path.Clean(dir) {
			return true
		}
	}
	return false
}

// --- docker-compose.yml ---

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
	Configs  map[string]struct {
		Content string `yaml:"content"`
		File    string `yaml:"file"`
	} `yaml:"configs"`
}

type composeService struct {
	Entrypoint      []string          `yaml:"entrypoint"`
	Command         []string          `yaml:"command"`
	Init            *bool             `yaml:"init"`
	StopSignal      string            `yaml:"stop_signal"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	User            string            `yaml:"user"`
	Environment     map[string]string `yaml:"environment"`
	Volumes         []string          `yaml:"volumes"`
	Ports           []string          `yaml:"ports"`
	Configs         []struct {
		Source string `yaml:"source"`
		Target string `yaml:"target"`
	} `yaml:"configs"`
}

func checkCompose(t *testing.T, src string, img image) []string {
	t.Helper()
	var problems []string
	var cf composeFile
	if err := yaml.Unmarshal([]byte(src), &cf); err != nil {
		return []string{"docker-compose.yml: " + err.Error()}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range cf.Services {
			if !yield(n) {
				return
			}
		}
	})
	if len(names) < 2 {
		problems = append(problems, fmt.Sprintf("docker-compose.yml: services %q: want two providers", names))
	}
	homes := map[string]string{}    // home volume → service
	releases := map[string]string{} // releases volume:path → service
	for _, name := range names {
		s := cf.Services[name]
		where := "docker-compose.yml: " + name
		bad := func(format string, a ...any) { problems = append(problems, where+": "+fmt.Sprintf(format, a...)) }
		if s.Entrypoint != nil {
			bad("entrypoint %q: keep the image's, so that lavavisor is PID 1", s.Entrypoint)
		}
		if s.Init == nil || *s.Init {
			bad("init: want an explicit false: lavavisor is PID 1 and reaps orphans itself")
		}
		if s.User != "" {
			bad("user %q: the image's user owns the volumes", s.User)
		}
		switch s.StopSignal {
		case "", "SIGTERM", "SIGINT":
		default:
			bad("stop_signal %s: LavaVisor stops gracefully on SIGTERM or SIGINT only", s.StopSignal)
		}
		env := map[string]string{}
		for k, v := range img.env {
			env[k] = v
		}
		for k, v := range s.Environment {
			env[k] = v
		}
		ps, pp := checkPod(t, where, append(img.entrypoint[min(1, len(img.entrypoint)):], s.Command...), env)
		problems = append(problems, pp...)
		if ps.cli == nil {
			continue
		}

		grace := 10 * time.Second // Docker's default
		if s.StopGracePeriod != "" {
			var err error
			if grace, err = time.ParseDuration(s.StopGracePeriod); err != nil {
				bad("stop_grace_period: %v", err)
			}
		}
		if grace < ps.stopTimeout()+graceMargin {
			bad("stop_grace_period %v: want at least the stop-timeout %v + %v, or Docker kills lavap uncleanly", grace, ps.stopTimeout(), graceMargin)
		}

		// Volumes: a home of its own, the releases shared.
		mounts := map[string]string{} // container path → volume
		for _, v := range s.Volumes {
			f := strings.Split(v, ":")
			if len(f) < 2 {
				bad("volume %q: want name:path", v)
				continue
			}
			if _, ok := cf.Volumes[f[0]]; !ok {
				bad("volume %s is not a named volume declared under volumes:", f[0])
			}
			mounts[path.Clean(f[1])] = f[0]
		}
		if vol, ok := mounts[ps.home]; !ok {
			bad("no named volume at the home %s", ps.home)
		} else if other, dup := homes[vol]; dup {
			bad("home volume %s is shared with %s: a home belongs to one instance", vol, other)
		} else {
			homes[vol] = name
		}
		rd := ""
		if ps.cli.ReleasesDir != nil {
			rd = path.Clean(*ps.cli.ReleasesDir)
		}
		if vol, ok := mounts[rd]; !ok {
			bad("releases-dir %q is not a volume of its own", rd)
		} else {
			releases[vol+":"+rd] = name
			if !img.ownedByUser(rd) {
				bad("%s is not made and owned by the image's user: a new volume there is not writable", rd)
			}
		}

		// Ports: metrics and lavap's listeners published.
		published := map[int]bool{}
		for _, p := range s.Ports {
			f := strings.Split(strings.TrimSuffix(p, "/tcp"), ":")
			n, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				bad("port %q: %v", p, err)
			}
			published[n] = true
		}
		if ps.metrics != 0 && !published[ps.metrics] {
			bad("metrics port %d is not published (ports %q)", ps.metrics, s.Ports)
		}
		found := false
		for _, c := range s.Configs {
			if path.Base(c.Target) != ps.lavap[1] && len(s.Configs) > 1 {
				continue
			}
			found = true
			content := cf.Configs[c.Source].Content
			if file := cf.Configs[c.Source].File; file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					bad("config %s: %v", c.Source, err)
				}
				content = string(b)
			}
			problems = append(problems, lavapConfigProblems(where, ps, img.workdir, c.Target, content, func(p int) bool { return published[p] })...)
		}
		if !found {
			bad("no config mounted for lavap's %s", ps.lavap[1])
		}
	}
	if len(releases) != 1 {
		problems = append(problems, fmt.Sprintf("docker-compose.yml: releases-dir volumes %v: want one, shared by every service", releases))
	}
	return problems
}

// --- Kubernetes ---

type k8sStatefulSet struct {
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Replicas    *int   `yaml:"replicas"`
		ServiceName string `yaml:"serviceName"`
		Selector    struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type k8sPodSpec struct {
	TerminationGracePeriodSeconds *int64 `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot *bool  `yaml:"runAsNonRoot"`
		RunAsUser    *int64 `yaml:"runAsUser"`
		RunAsGroup   *int64 `yaml:"runAsGroup"`
		FSGroup      *int64 `yaml:"fsGroup"`
	} `yaml:"securityContext"`
	Containers []k8sContainer `yaml:"containers"`
	Volumes    []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
			Items      []struct {
				Key  string `yaml:"key"`
				Path string `yaml:"path"`
			} `yaml:"items"`
		} `yaml:"secret"`
		PersistentVolumeClaim *struct {
			ClaimName string `yaml:"claimName"`
		} `yaml:"persistentVolumeClaim"`
	} `yaml:"volumes"`
}

type k8sContainer struct {
	Name       string   `yaml:"name"`
	Command    []string `yaml:"command"`
	Args       []string `yaml:"args"`
	WorkingDir string   `yaml:"workingDir"`
	Env        []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	StartupProbe    *k8sProbe `yaml:"startupProbe"`
	LivenessProbe   *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe  *k8sProbe `yaml:"readinessProbe"`
	SecurityContext struct {
		RunAsUser *int64 `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string  `yaml:"path"`
		Port portRef `yaml:"port"`
	} `yaml:"httpGet"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

type k8sService struct {
	Metadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		ClusterIP string            `yaml:"clusterIP"`
		Selector  map[string]string `yaml:"selector"`
		Ports     []struct {
			Name       string  `yaml:"name"`
			TargetPort portRef `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type k8sConfigMap struct {
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
}

// portRef is Kubernetes' IntOrString for ports: a number or a port's name.
type portRef struct {
	num  int
	name string
}

func (p *portRef) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a port is a number or a name", n.Line)
	}
	if n.Tag == "!!int" {
		var err error
		p.num, err = strconv.Atoi(n.Value)
		return err
	}
	p.name = n.Value
	return nil
}

func (p portRef) String() string {
	if p.name != "" {
		return p.name
	}
	return strconv.Itoa(p.num)
}

// resolve is the container port that p names, 0 when none.
func (p portRef) resolve(c k8sContainer) int {
	for _, cp := range c.Ports {
		if (p.name == "" && cp.ContainerPort == p.num) || (p.name != "" && cp.Name == p.name) {
			return cp.ContainerPort
		}
	}
	return 0
}

// k8sObjects decodes every document of every file of dir, by kind.
func k8sObjects(dir string, files map[string]string) (map[string][]*yaml.Node, []string) {
	objs := map[string][]*yaml.Node{}
	var problems []string
	for name, src := range files {
		dec := yaml.NewDecoder(strings.NewReader(src))
		for {
			var doc yaml.Node
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				problems = append(problems, fmt.Sprintf("%s/%s: %v", dir, name, err))
				break
			}
			var head struct {
				Kind string `yaml:"kind"`
			}
			if err := doc.Decode(&head); err != nil || head.Kind == "" {
				problems = append(problems, fmt.Sprintf("%s/%s: a document without kind (%v)", dir, name, err))
				continue
			}
			objs[head.Kind] = append(objs[head.Kind], &doc)
		}
	}
	return objs, problems
}

// k8sPod is a StatefulSet that checkKubernetes found to run `lavavisor pod`.
type k8sPod struct {
	ss k8sStatefulSet
	c  k8sContainer
	ps podService
}

// checkKubernetes checks the objects of the files of dir (base name →
// content) and returns the StatefulSets whose container parses as `pod`.
func checkKubernetes(t *testing.T, dir string, files map[string]string, img image) ([]k8sPod, []string) {
	t.Helper()
	objs, problems := k8sObjects(dir, files)
	var pods []k8sPod
	bad := func(format string, a ...any) { problems = append(problems, dir+": "+fmt.Sprintf(format, a...)) }
	configMaps := map[string]map[string]string{}
	for _, n := range objs["ConfigMap"] {
		var cm k8sConfigMap
		if err := n.Decode(&cm); err != nil {
			bad("ConfigMap: %v", err)
		}
		configMaps[cm.Metadata.Name] = cm.Data
	}
	services := map[string]k8sService{}
	for _, n := range objs["Service"] {
		var s k8sService
		if err := n.Decode(&s); err != nil {
			bad("Service: %v", err)
		}
		services[s.Metadata.Name] = s
	}
	if len(objs["StatefulSet"]) == 0 {
		bad("no StatefulSet")
	}
	for _, n := range objs["StatefulSet"] {
		var ss k8sStatefulSet
		if err := n.Decode(&ss); err != nil {
			bad("StatefulSet: %v", err)
			continue
		}
		pod := ss.Spec.Template.Spec
		where := "StatefulSet " + ss.Metadata.Name
		fail := func(format string, a ...any) { bad(where+": "+format, a...) }
		if len(pod.Containers) != 1 {
			fail("%d containers: want lavavisor alone", len(pod.Containers))
			continue
		}
		c := pod.Containers[0]
		if c.Command != nil {
			fail("command replaces the entrypoint: give args only, so that lavavisor is PID 1")
		}
		env := map[string]string{}
		for k, v := range img.env {
			env[k] = v
		}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		ps, pp := checkPod(t, where, c.Args, env)
		problems = append(problems, pp...)
		if ps.cli == nil {
			continue
		}
		pods = append(pods, k8sPod{ss: ss, c: c, ps: ps})

		grace := 30 * time.Second // Kubernetes' default
		if pod.TerminationGracePeriodSeconds != nil {
			grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
		}
		if grace < ps.stopTimeout()+graceMargin {
			fail("terminationGracePeriodSeconds %v: want at least the stop-timeout %v + %v", grace, ps.stopTimeout(), graceMargin)
		}

		// Probes on the metrics listener.
		for _, p := range []struct {
			name  string
			probe *k8sProbe
			path  string
		}{
			{"livenessProbe", c.LivenessProbe, "/healthz"},
			{"readinessProbe", c.ReadinessProbe, "/readyz"},
			{"startupProbe", c.StartupProbe, "/healthz"},
		} {
			if p.probe == nil {
				if p.name != "startupProbe" {
					fail("no %s", p.name)
				}
				continue
			}
			if p.probe.HTTPGet == nil {
				fail("%s: want httpGet %s", p.name, p.path)
				continue
			}
			if p.probe.HTTPGet.Path != p.path {
				fail("%s path %s: want %s", p.name, p.probe.HTTPGet.Path, p.path)
			}
			if port := p.probe.HTTPGet.Port.resolve(c); port != ps.metrics {
				fail("%s port %d (%s): --metrics-addr %s listens on %d", p.name, port, p.probe.HTTPGet.Port, ps.cli.MetricsAddr, ps.metrics)
			}
		}
		// The first start may download lavap: liveness must not kill it.
		if sp := c.StartupProbe; sp != nil {
			period, fails := sp.PeriodSeconds, sp.FailureThreshold
			if period == 0 {
				period = 10 // Kubernetes' default
			}
			if fails == 0 {
				fails = 3 // Kubernetes' default
			}
			window := time.Duration(period*fails) * time.Second
			if need := ps.cfg.Download.Timeout.Std() + ps.cfg.RequestTimeout.Std(); window < need {
				fail("startupProbe allows %v, less than a first download may take (%v)", window, need)
			}
		}

		// Security: the image's non-root user, owning the volume.
		sc := pod.SecurityContext
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			fail("securityContext.runAsNonRoot: want true")
		}
		uid := sc.RunAsUser
		if c.SecurityContext.RunAsUser != nil {
			uid = c.SecurityContext.RunAsUser
		}
		if uid == nil || *uid != int64(img.uid) {
			fail("runAsUser %v: want the image's uid %d", deref(uid), img.uid)
		}
		if sc.FSGroup == nil || *sc.FSGroup != int64(img.gid) {
			fail("fsGroup %v: want the image's gid %d, so that the volume is writable", deref(sc.FSGroup), img.gid)
		}

		// The home on a claim of its own; lavap's config from the ConfigMap.
		claims := map[string]bool{}
		for _, vct := range ss.Spec.VolumeClaimTemplates {
			claims[vct.Metadata.Name] = true
		}
		configVolumes := map[string]string{}
		for _, v := range pod.Volumes {
			if v.ConfigMap != nil {
				configVolumes[v.Name] = v.ConfigMap.Name
			}
		}
		workdir := img.workdir
		if c.WorkingDir != "" {
			workdir = path.Clean(c.WorkingDir)
		}
		homeClaim, configFound := false, false
		for _, m := range c.VolumeMounts {
			if path.Clean(m.MountPath) == ps.home && claims[m.Name] && m.SubPath == "" {
				homeClaim = true
			}
			cmName, ok := configVolumes[m.Name]
			if !ok {
				continue
			}
			data, ok := configMaps[cmName]
			if !ok {
				fail("ConfigMap %s is not in %s", cmName, dir)
				continue
			}
			content, ok := data[ps.lavap[1]]
			if !ok {
				fail("ConfigMap %s has no %s for lavap", cmName, ps.lavap[1])
				continue
			}
			configFound = true
			target := path.Join(m.MountPath, ps.lavap[1])
			if m.SubPath != "" {
				target = m.MountPath
			}
			problems = append(problems, lavapConfigProblems(dir+": "+where, ps, workdir, target, content, func(p int) bool {
				return portRef{num: p}.resolve(c) != 0
			})...)
		}
		if !homeClaim {
			fail("no volumeClaimTemplate mounted at the home %s", ps.home)
		}

		// lavap's keyring: a test or file keyring is a folder that must be on
		// a volume. Nothing may be mounted inside lavap's home (~/.lava): the
		// kubelet would make the folders above the mount point owned by root.
		lavaHome := flagValue(ps.lavap, "--home")
		if lavaHome == "" {
			lavaHome = path.Join(env["HOME"], ".lava")
		}
		for _, m := range c.VolumeMounts {
			if strings.HasPrefix(path.Clean(m.MountPath), lavaHome+"/") {
				fail("volume %s mounted at %s, inside lavap's home %s: ~/.lava would be owned by root", m.Name, m.MountPath, lavaHome)
			}
		}
		keyringDir := flagValue(ps.lavap, "--keyring-dir")
		if keyringDir == "" {
			keyringDir = lavaHome
		}
		if backend := flagValue(ps.lavap, "--keyring-backend"); backend == "test" || backend == "file" {
			want := path.Join(keyringDir, "keyring-"+backend)
			onVolume := homeClaim && strings.HasPrefix(want, ps.home+"/")
			for _, m := range c.VolumeMounts {
				onVolume = onVolume || path.Clean(m.MountPath) == want
			}
			if !onVolume {
				fail("lavap's keyring %s is on no volume", want)
			}
		}
		if !configFound {
			fail("lavap's %s comes from no ConfigMap", ps.lavap[1])
		}

		// The headless Service that serviceName names.
		svc, ok := services[ss.Spec.ServiceName]
		switch {
		case !ok:
			fail("serviceName %s: no such Service", ss.Spec.ServiceName)
		case svc.Spec.ClusterIP != "None":
			fail("Service %s: clusterIP %q: want None (headless, for a StatefulSet)", svc.Metadata.Name, svc.Spec.ClusterIP)
		}
		for k, v := range svc.Spec.Selector {
			if ss.Spec.Template.Metadata.Labels[k] != v || ss.Spec.Selector.MatchLabels[k] != v {
				fail("Service %s selects %s=%s, which the pods do not carry", svc.Metadata.Name, k, v)
			}
		}
		for _, p := range svc.Spec.Ports {
			if p.TargetPort.resolve(c) == 0 {
				fail("Service %s port %s: targetPort %s is no port of the container", svc.Metadata.Name, p.Name, p.TargetPort)
			}
		}
	}
	return pods, problems
}

func deref[T any](p *T) any {
	if p == nil {
		return "unset"
	}
	return *p
}
