package main

import (
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

func TestSplitWords(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		err  string
	}{
		{in: "lavap rpcprovider provider.yml --from op", want: []string{"lavap", "rpcprovider", "provider.yml", "--from", "op"}},
		{in: `  a   b  `, want: []string{"a", "b"}},
		{in: `'a b' "c d"`, want: []string{"a b", "c d"}},
		{in: `a'b'"c"d`, want: []string{"abcd"}},
		{in: `''`, want: []string{""}},
		{in: `"x\"y\\z\$"`, want: []string{`x"y\z$`}},
		{in: `"a\nb"`, want: []string{`a\nb`}},
		{in: `a\ b`, want: []string{"a b"}},
		{in: `'$HOME' $(rm -rf /) ;|&`, want: []string{"$HOME", "$(rm", "-rf", "/)", ";|&"}},
		{in: "", want: nil},
		{in: `'open`, err: "unterminated single quote"},
		{in: `"open`, err: "unterminated double quote"},
		{in: `end\`, err: "trailing backslash"},
	}
	for _, c := range cases {
		got, err := splitWords(c.in)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("splitWords(%q) error = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("splitWords(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// FuzzSplitWords checks the splitter against the reference: /bin/sh itself,
// for inputs without expansions or operators, which sh would act on.
func FuzzSplitWords(f *testing.F) {
	for _, s := range []string{`a b`, `'a b'`, `"a\"b"`, `a\ b`, `"x\\y"`, `'`, `a"b c"d`} {
		f.Add(s)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsAny(s, "$`;|&<>(){}*?[]~#=!\x00\r\n") || len(s) > 200 {
			return
		}
		got, err := splitWords(s)
		out, shErr := exec.Command(sh, "-c", `for a in `+s+`; do printf '%s\0' "$a"; done`).Output()
		if (err == nil) != (shErr == nil) {
			t.Fatalf("splitWords(%q) err=%v, sh err=%v", s, err, shErr)
		}
		if err != nil {
			return
		}
		want := strings.Split(string(out), "\x00")
		want = want[:len(want)-1]
		if len(got) == 0 && len(want) == 0 {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("splitWords(%q) = %q, sh says %q", s, got, want)
		}
	})
}
