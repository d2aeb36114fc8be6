package upgrade

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// sumLine is one line of `sha256sum` output as coreutils writes it: 64 hex
// digits, a space, a space (text mode) or '*' (binary mode), the file name.
var sumLine = regexp.MustCompile(`^([0-9a-fA-F]{64}) [ *](.+)$`)

// referenceChecksum is findChecksum written another way: a regexp per line, the
// listed name compared by its last path element, sums compared without regard
// to case. found reports whether name is listed at all; conflict whether it is
// listed with two different sums.
func referenceChecksum(body, name string) (sum string, found, conflict bool) {
	for _, line := range strings.Split(body, "\n") {
		m := sumLine.FindStringSubmatch(strings.TrimRight(line, "\r"))
		if m == nil {
			continue
		}
		listed := m[2]
		if i := strings.LastIndexByte(listed, '/'); i >= 0 {
			listed = listed[i+1:]
		}
		if listed != name {
			continue
		}
		s := strings.ToLower(m[1])
		if found && s != sum {
			return "", true, true
		}
		sum, found = s, true
	}
	return sum, found, false
}

// FuzzFindChecksum: findChecksum agrees with the reference parser on every body
// and asset name; a sum it returns is always 64 lowercase hex digits, and is the
// sum of a line of the body that lists the asset.
func FuzzFindChecksum(f *testing.F) {
	a := strings.Repeat("a", 64)
	b := strings.Repeat("0123456789ABCDEF", 4)
	real := fmt.Sprintf("%s  lavap-v6.2.5-linux-amd64\n%s  lavap-v6.2.5-linux-arm64\n%s  lavap-v6.2.5-darwin-arm64\n%s  lavad-v6.2.5-linux-amd64\n",
		a, b, strings.Repeat("1", 64), strings.Repeat("f", 64))
	for _, s := range []string{
		real,
		strings.ReplaceAll(real, "\n", "\r\n"),
		a + " *build/lavap-v6.2.5-linux-amd64",
		a + "  lavap-v6.2.5-linux-amd64\n" + b + "  ./lavap-v6.2.5-linux-amd64\n",
		a + "  lavap-v6.2.5-linux-amd64\n" + strings.ToUpper(a) + "  x/lavap-v6.2.5-linux-amd64\n",
		a[:63] + "  lavap-v6.2.5-linux-amd64\n",
		a + "a  lavap-v6.2.5-linux-amd64\n",
		a + "\tlavap-v6.2.5-linux-amd64\n",
		"\\" + a + "  lavap\\nv6.2.5\n",
		a + "  lavap-v6.2.5-linux-amd64/\n",
		a + "  /\n",
		"SHA256 (lavap-v6.2.5-linux-amd64) = " + a + "\n",
		strings.Repeat("g", 64) + "  lavap-v6.2.5-linux-amd64\n",
	} {
		f.Add([]byte(s), "lavap-v6.2.5-linux-amd64")
	}
	f.Add([]byte(a+"  ..\n"), "..")
	f.Add([]byte(a+"  a/.\n"), ".")
	f.Add([]byte(a+"  \n"), " ")
	hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
	f.Fuzz(func(t *testing.T, body []byte, name string) {
		if name == "" || strings.Contains(name, "/") {
			return // AssetName never gives these
		}
		got, err := findChecksum(body, name)
		want, found, conflict := referenceChecksum(string(body), name)
		switch {
		case conflict:
			if err == nil || !strings.Contains(err.Error(), "listed with two different sums") {
				t.Fatalf("findChecksum(%q, %q) = %q, %v; want the two-sums error", body, name, got, err)
			}
			return
		case err != nil:
			t.Fatalf("findChecksum(%q, %q): %v; the reference finds %q", body, name, err, want)
		case got != want:
			t.Fatalf("findChecksum(%q, %q) = %q, reference %q (found %v)", body, name, got, want, found)
		}
		if got == "" {
			return
		}
		if !hex64.MatchString(got) {
			t.Fatalf("findChecksum(%q, %q) = %q: not 64 lowercase hex digits", body, name, got)
		}
		if !strings.Contains(strings.ToLower(string(body)), got) {
			t.Fatalf("findChecksum(%q, %q) = %q, which the body does not hold", body, name, got)
		}
	})
}
