// Command lavavisor keeps Lava protocol services (lavap rpcprovider,
// rpcconsumer) running on the protocol version the Lava chain requires,
// without systemd: as PID 1 in a container, in the foreground, or as a
// compose or Kubernetes service.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/lavavisor/lavavisor/config"
	"github.com/lavavisor/lavavisor/supervisor"
)

// version is set at build time: -ldflags "-X main.version=1.2.3". When it
// is not, `lavavisor version` reports the module version of the build
// (`go install github.com/lavavisor/lavavisor@v1.2.3` gives v1.2.3).
var version = ""

// Globals are the flags every command takes (SPEC §4). Pointer flags are nil
// when not given, so they never override config.yml.
type Globals struct {
	Directory    string         `help:"Folder that holds .lavavisor/ (~ and ~/x mean $HOME and $HOME/x)." env:"LAVAVISOR_DIRECTORY" default:"~" short:"d"`
	Node         *string        `help:"CometBFT RPC of a Lava node (tcp://, http://, https://; several comma-separated) or file:///path/versions.yml." env:"LAVAVISOR_NODE"`
	GRPCAddr     *string        `name:"grpc-addr" help:"Query the chain over gRPC (host:port) instead of RPC." env:"LAVAVISOR_GRPC_ADDR"`
	GRPCInsecure *bool          `name:"grpc-insecure" help:"Plain gRPC instead of TLS." env:"LAVAVISOR_GRPC_INSECURE"`
	ChainID      *string        `name:"chain-id" help:"Expected chain id, checked against the node." env:"LAVAVISOR_CHAIN_ID"`
	PollInterval *time.Duration `name:"poll-interval" help:"How often to read the chain (0: its average block time)." env:"LAVAVISOR_POLL_INTERVAL"`
	LogLevel     string         `help:"Log level: trace, debug, info, warn, error." default:"info" enum:"trace,debug,info,warn,error" env:"LAVAVISOR_LOG_LEVEL"`
	LogFormat    string         `help:"Log format: text or json." default:"text" enum:"text,json" env:"LAVAVISOR_LOG_FORMAT"`
	MetricsAddr  string         `name:"metrics-addr" help:"Serve /metrics, /healthz and /readyz on host:port (off when empty)." env:"LAVAVISOR_METRICS_ADDR"`
	DownloadURL  *string        `name:"download-url" help:"Release asset URL template ({version}, {os}, {arch})." env:"LAVAVISOR_DOWNLOAD_URL"`
	ChecksumsURL *string        `name:"checksums-url" help:"Checksums file URL template." env:"LAVAVISOR_CHECKSUMS_URL"`
	ReleasesDir  *string        `name:"releases-dir" help:"Releases folder (default <home>/upgrades); may be shared by several instances." env:"LAVAVISOR_RELEASES_DIR"`
	// The upgrade window and spread (SPEC §10), global so that `check` in a
	// pod's container sees the pod's.
	UpgradeWindow *string        `name:"upgrade-window" group:"Fleet" help:"Upgrades that only follow the target wait for this daily window, HH:MM-HH:MM in UTC (may wrap midnight); \"\": any time (default: config upgrade-window)." env:"LAVAVISOR_UPGRADE_WINDOW"`
	UpgradeSpread *time.Duration `name:"upgrade-spread" group:"Fleet" help:"Such upgrades also wait a delay in [0, spread), fixed per host name and home, so that a fleet moves one by one; shorter than the window (default: config upgrade-spread)." env:"LAVAVISOR_UPGRADE_SPREAD"`
}

// CLI is the whole command tree.
type CLI struct {
	Globals

	Init    initCmd    `cmd:"" help:"Create the home, read the chain's version, get and verify that release, and link it."`
	Start   startCmd   `cmd:"" help:"Supervise the services of config.yml and keep them on the required version."`
	Pod     podCmd     `cmd:"" aliases:"wrap" help:"Supervise one command (for containers): lavavisor pod -- lavap rpcprovider ..."`
	Check   checkCmd   `cmd:"" help:"Dry run: print the chain's versions, the running and the wanted release; exit 3 when an upgrade is due."`
	Status  statusCmd  `cmd:"" help:"Ask the running instance for its services, the chain's versions and the last upgrade."`
	Version versionCmd `cmd:"" help:"Print LavaVisor's version."`

	Service  serviceCmd  `cmd:"" group:"Operate a running instance" help:"Restart, stop (hold) or start services of the running instance."`
	Reload   reloadCmd   `cmd:"" group:"Operate a running instance" help:"Re-read config.yml in the running instance (as SIGHUP); prints applied, or why not."`
	Upgrade  upgradeCmd  `cmd:"" group:"Operate a running instance" help:"Decide the upgrade now (skipping a retry delay), or move to --to X.Y.Z and pin it."`
	Logs     logsCmd     `cmd:"" group:"Operate a running instance" help:"Print the last lines of a service (-n N) and follow it (-f)."`
	Rollback rollbackCmd `cmd:"" group:"Operate a running instance" help:"Move back to the release that ran before the last upgrade, mark the current one bad and pin the previous one."`

	CreateService createServiceCmd `cmd:"" name:"create-service" help:"Add a lavap service to config.yml: copy its config file into services/<name>/ and append it, leaving the rest of the file as it was."`
}

type versionCmd struct{}

func (versionCmd) Run() error {
	fmt.Println(buildVersion())
	return nil
}

// buildVersion is the -X main.version of a release build, else the module
// version recorded by the go command, else "dev" (a build from a checkout).
func buildVersion() string {
	bi, _ := debug.ReadBuildInfo()
	return versionOf(version, bi)
}

func versionOf(stamped string, bi *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// exitError carries a specific exit code up to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit code %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func main() {
	// Children inherit fds 0-2 only (SPEC §2): whatever LavaVisor itself
	// inherited (an operator's `exec 7<secret`, a leaked socket) is marked
	// close-on-exec before anything can start a process.
	closeInheritedFDs()
	os.Exit(runCLI(os.Args[1:]))
}

// closeInheritedFDs marks every descriptor from 3 up close-on-exec.
func closeInheritedFDs() {
	if unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	// Kernels before 5.11 lack CLOSE_RANGE_CLOEXEC: walk /proc/self/fd.
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		fmt.Fprintln(os.Stderr, "lavavisor: warning: cannot list inherited descriptors to keep them from services:", err)
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= 3 {
			unix.CloseOnExec(fd)
		}
	}
}

// runCLI parses args and runs the command; it returns the process exit code.
func runCLI(args []string) int {
	var cli CLI
	exit := -1
	parser, err := newParser(&cli, func(code int) { exit = code })
	if err != nil {
		fmt.Fprintln(os.Stderr, "lavavisor:", err)
		return 1
	}
	kctx, err := parser.Parse(args)
	if exit >= 0 { // --help
		return exit
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lavavisor: %v\n", err)
		var perr *kong.ParseError
		if errors.As(err, &perr) {
			perr.Context.PrintUsage(true)
		}
		return 2 // a usage error, whatever kong's own code
	}
	log, sink := newLogger(cli.Globals)
	// LavaVisor's own log lines are written by the sink's goroutine: let the
	// last ones out before the process exits.
	defer sink.Flush(2 * time.Second)
	command, _, _ := strings.Cut(kctx.Command(), " ")
	failed, stopped := "lavavisor cannot run", "lavavisor stopped"
	switch command {
	case "check", "status", "create-service":
		failed = command + " failed"
		stopped = failed
	}
	if command != "version" {
		if cli.Directory, err = resolveDirectory(cli.Directory); err != nil {
			logError(log, failed, err)
			return 1
		}
	}
	err = kctx.Run(&cli.Globals, log, sink)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			logError(log, stopped, ee.err)
		}
		return ee.code
	}
	logError(log, failed, err)
	return 1
}

// logError logs err under msg, one line per line of its text: several
// config problems read one a line, never as one line with \n in it.
func logError(log *logrus.Logger, msg string, err error) {
	lines := strings.Split(strings.TrimRight(err.Error(), "\n"), "\n")
	if len(lines) == 1 {
		log.WithError(err).Error(msg)
		return
	}
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			log.WithField("error", l).Error(msg)
		}
	}
}

// resolveDirectory makes --directory absolute, ~ meaning $HOME (SPEC §2), and
// refuses the default home while a home made by an older build, which took
// the default ~ literally, sits unused at ./~/.lavavisor.
func resolveDirectory(dir string) (string, error) {
	expanded, err := config.ExpandHome(dir)
	if err != nil {
		return "", fmt.Errorf("--directory: %w", err)
	}
	abs, err := filepath.Abs(expanded)
	if err != nil {
		return "", fmt.Errorf("--directory %s: %w", dir, err)
	}
	if dir != "~" && dir != "~/" {
		return abs, nil
	}
	if _, err := os.Lstat(newHome(abs).configFile()); err == nil {
		return abs, nil
	}
	old, err := filepath.Abs(filepath.Join("~", ".lavavisor"))
	if err != nil {
		return abs, nil
	}
	if fi, err := os.Stat(old); err != nil || !fi.IsDir() {
		return abs, nil
	}
	return "", fmt.Errorf("%s has no config.yml, but %s does: an older LavaVisor made that home, taking the default ~ literally. "+
		"Move it into place with `mv %s %s` (or pass --directory %s to keep using it where it is)",
		newHome(abs).root, old, shellQuote(old), shellQuote(abs+"/"), shellQuote(filepath.Dir(old)))
}

// shellQuote quotes s for a command line a user pastes.
func shellQuote(s string) string {
	if strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// newParser builds the command-line parser over cli; exit replaces kong's
// os.Exit (after --help). The packaging tests parse the container arguments
// of the Dockerfile, compose file and Kubernetes manifests with it.
func newParser(cli *CLI, exit func(int)) (*kong.Kong, error) {
	// Help shows the defaults that config keeps, rather than a copy of them.
	hd := config.DefaultHealth()
	return kong.New(cli,
		kong.Vars{
			"health_interval":       hd.Interval.String(),
			"health_start_interval": hd.StartInterval.String(),
			"health_timeout":        hd.Timeout.String(),
			"health_start_period":   hd.StartPeriod.String(),
			"health_failures":       strconv.Itoa(hd.Failures),
			"health_restart_after":  hd.RestartAfter.String(),
		},
		kong.Name("lavavisor"),
		kong.Description("Keeps Lava protocol services on the protocol version the chain requires."),
		kong.UsageOnError(),
		kong.Exit(exit),
	)
}

// newLogger makes the one logger of the process; every log line and every
// service line goes through the sink, so lines never interleave.
func newLogger(g Globals) (*logrus.Logger, *supervisor.Sink) {
	log := logrus.New()
	if lvl, err := logrus.ParseLevel(g.LogLevel); err == nil {
		log.SetLevel(lvl)
	}
	if g.LogFormat == "json" {
		log.SetFormatter(supervisor.NewJSONFormatter())
	} else {
		color := supervisor.IsTerminal(os.Stderr) && os.Getenv("NO_COLOR") == ""
		log.SetFormatter(supervisor.NewTextFormatter(color))
	}
	sink := supervisor.NewSink(os.Stderr, log)
	return log, sink
}

// overrides turns the global flags into config overrides.
func (g *Globals) overrides() config.Overrides {
	return config.Overrides{
		Node:          g.Node,
		GRPCAddr:      g.GRPCAddr,
		GRPCInsecure:  g.GRPCInsecure,
		ChainID:       g.ChainID,
		PollInterval:  g.PollInterval,
		DownloadURL:   g.DownloadURL,
		ChecksumsURL:  g.ChecksumsURL,
		ReleasesDir:   g.ReleasesDir,
		UpgradeWindow: g.UpgradeWindow,
		UpgradeSpread: g.UpgradeSpread,
	}
}
