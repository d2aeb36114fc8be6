package config

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Duration is a Go duration written as a string in YAML ("15s", "1m30s", "0s").
// A bare number is refused: "15" could mean seconds or nanoseconds.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// bareNumber matches what a YAML author writes when forgetting the unit.
var bareNumber = regexp.MustCompile(`^[+-]?[0-9]*\.?[0-9]+$`)

// ParseDuration parses a non-negative Go duration. A bare number is an error with
// a hint, as is a negative duration.
func ParseDuration(s string) (Duration, error) {
	if bareNumber.MatchString(strings.TrimSpace(s)) {
		return 0, fmt.Errorf("invalid duration %q: use a Go duration such as 15s", s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: use a Go duration such as 15s", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return Duration(d), nil
}

// ByteSize is a number of bytes, written in YAML as a plain integer or with a unit:
// B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024).
type ByteSize int64

var byteUnits = []struct {
	name string
	size int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
}

var byteSizeSyntax = regexp.MustCompile(`^([0-9]+)\s*([A-Za-z]*)$`)

// ParseByteSize parses "512MiB", "100MB", "1GiB", "1024" or "10KiB". Unit letters
// are matched without regard to case; only whole numbers are accepted.
func ParseByteSize(s string) (ByteSize, error) {
	bad := fmt.Errorf("invalid size %q: want a whole number of bytes with an optional unit, such as 1024, 10KiB, 100MB or 512MiB", s)
	m := byteSizeSyntax.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, bad
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, bad
	}
	mult := int64(-1)
	if m[2] == "" {
		mult = 1
	}
	for _, u := range byteUnits {
		if strings.EqualFold(m[2], u.name) {
			mult = u.size
		}
	}
	if mult < 0 {
		return 0, bad
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return ByteSize(n * mult), nil
}

// String prints the size with the largest binary unit that divides it exactly.
func (b ByteSize) String() string {
	for _, u := range byteUnits[:4] { // the binary units, largest first
		if b != 0 && int64(b)%u.size == 0 {
			return strconv.FormatInt(int64(b)/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// Signal is a stop signal. YAML accepts SIGINT, INT, sigterm...: any case, SIG
// prefix optional, among the signals that make sense to stop a service with.
type Signal syscall.Signal

var signalNames = []struct {
	name string
	sig  syscall.Signal
}{
	{"SIGHUP", syscall.SIGHUP}, {"SIGINT", syscall.SIGINT}, {"SIGQUIT", syscall.SIGQUIT},
	{"SIGTERM", syscall.SIGTERM}, {"SIGUSR1", syscall.SIGUSR1}, {"SIGUSR2", syscall.SIGUSR2},
	{"SIGKILL", syscall.SIGKILL},
}

const signalChoices = "SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2 or SIGKILL"

// ParseSignal parses a stop signal name.
func ParseSignal(s string) (Signal, error) {
	name := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	for _, n := range signalNames {
		if n.name == name {
			return Signal(n.sig), nil
		}
	}
	return 0, fmt.Errorf("unknown signal %q (want %s)", s, signalChoices)
}

// Std returns s as a syscall.Signal.
func (s Signal) Std() syscall.Signal { return syscall.Signal(s) }

// String gives the conventional name, such as "SIGINT".
func (s Signal) String() string {
	for _, n := range signalNames {
		if n.sig == syscall.Signal(s) {
			return n.name
		}
	}
	return "signal " + strconv.Itoa(int(s))
}

func validSignal(s syscall.Signal) bool {
	for _, n := range signalNames {
		if n.sig == s {
			return true
		}
	}
	return false
}

// RestartPolicy says when a service that ended is started again.
type RestartPolicy string

// Restart policies.
const (
	RestartAlways    RestartPolicy = "always"
	RestartOnFailure RestartPolicy = "on-failure"
	RestartNever     RestartPolicy = "never"
)

// Valid reports whether p is one of the known policies.
func (p RestartPolicy) Valid() bool {
	return p == RestartAlways || p == RestartOnFailure || p == RestartNever
}

func (p RestartPolicy) check() error {
	if p.Valid() {
		return nil
	}
	return fmt.Errorf("unknown restart policy %q (want always, on-failure or never)", string(p))
}

// UpgradeMode says which chain version the services follow (SPEC §6.2).
type UpgradeMode string

// Upgrade modes.
const (
	UpgradeTarget UpgradeMode = "target"
	UpgradeMin    UpgradeMode = "min"
)

// Valid reports whether m is one of the known modes.
func (m UpgradeMode) Valid() bool { return m == UpgradeTarget || m == UpgradeMin }

func (m UpgradeMode) check() error {
	if m.Valid() {
		return nil
	}
	return fmt.Errorf("unknown upgrade mode %q (want target or min)", string(m))
}

// Role is the side of the protocol a lavap service plays; it picks which of the
// chain's versions apply to it.
type Role string

// Roles.
const (
	RoleProvider Role = "provider"
	RoleConsumer Role = "consumer"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool { return r == RoleProvider || r == RoleConsumer }

// RoleFromArgs derives the role of a lavap service from its first argument:
// rpcprovider gives provider, rpcconsumer gives consumer, anything else "".
func RoleFromArgs(args []string) Role {
	if len(args) == 0 {
		return ""
	}
	switch args[0] {
	case "rpcprovider":
		return RoleProvider
	case "rpcconsumer":
		return RoleConsumer
	}
	return ""
}
