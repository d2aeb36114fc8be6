package chain

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxVersionPart bounds each of the three numbers of a version (SPEC §6.1).
const MaxVersionPart = 10000

// Version is a lavap protocol version that passed the strict grammar of SPEC §6.1:
// three dot-separated decimal numbers, no leading zeros, each at most 10000.
// A Version is safe to use in a path (it only ever prints as digits and dots).
// The zero Version is "0.0.0" and is also used for "unknown"; see IsZero.
type Version struct {
	Major, Minor, Patch int
}

// ParseVersion accepts exactly `^(0|[1-9]\d{0,4})\.(0|[1-9]\d{0,4})\.(0|[1-9]\d{0,4})$`
// with each part at most 10000. Anything else, including a leading "v", is an error.
func ParseVersion(s string) (Version, error) {
	if len(s) > 17 { // 10000.10000.10000
		return Version{}, fmt.Errorf("invalid version %q: too long", truncate(s))
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("invalid version %q: want X.Y.Z", s)
	}
	var n [3]int
	for i, p := range parts {
		v, err := parsePart(p)
		if err != nil {
			return Version{}, fmt.Errorf("invalid version %q: %w", s, err)
		}
		n[i] = v
	}
	return Version{n[0], n[1], n[2]}, nil
}

// ParseTag accepts a release tag, "v" followed by a version.
func ParseTag(s string) (Version, error) {
	rest, ok := strings.CutPrefix(s, "v")
	if !ok {
		return Version{}, fmt.Errorf("invalid release tag %q: want vX.Y.Z", truncate(s))
	}
	return ParseVersion(rest)
}

func parsePart(p string) (int, error) {
	if p == "" {
		return 0, fmt.Errorf("empty number")
	}
	if len(p) > 1 && p[0] == '0' {
		return 0, fmt.Errorf("leading zero in %q", p)
	}
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("non-digit in %q", p)
		}
	}
	if len(p) > 5 {
		return 0, fmt.Errorf("number %q above %d", p, MaxVersionPart)
	}
	v, err := strconv.Atoi(p)
	if err != nil {
		return 0, err
	}
	if v > MaxVersionPart {
		return 0, fmt.Errorf("number %d above %d", v, MaxVersionPart)
	}
	return v, nil
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Tag is the release folder name, "v" + version.
func (v Version) Tag() string { return "v" + v.String() }

// IsZero reports whether v is the zero value ("no version").
func (v Version) IsZero() bool { return v == Version{} }

// Compare returns -1, 0 or +1.
func (v Version) Compare(o Version) int {
	for _, d := range [3]int{v.Major - o.Major, v.Minor - o.Minor, v.Patch - o.Patch} {
		if d < 0 {
			return -1
		}
		if d > 0 {
			return 1
		}
	}
	return 0
}

// Less reports v < o.
func (v Version) Less(o Version) bool { return v.Compare(o) < 0 }

// MarshalText makes a Version print as "X.Y.Z" in JSON and YAML.
func (v Version) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText applies the strict grammar.
func (v *Version) UnmarshalText(b []byte) error {
	p, err := ParseVersion(string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
