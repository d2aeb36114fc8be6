package chain

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	for _, s := range []string{"0.0.0", "6.2.5", "10000.10000.10000", "1.0.10000", "99.0.1"} {
		v, err := ParseVersion(s)
		if err != nil || v.String() != s {
			t.Errorf("ParseVersion(%q) = %v, %v", s, v, err)
		}
	}
	long := strings.Repeat("9", 20000)
	for _, tc := range []struct{ in, want string }{
		{"", `invalid version "": want X.Y.Z`},
		{"1.2", `invalid version "1.2": want X.Y.Z`},
		{"1.2.3.4", `invalid version "1.2.3.4": want X.Y.Z`},
		{"v6.2.5", `invalid version "v6.2.5": non-digit in "v6"`},
		{"06.2.5", `invalid version "06.2.5": leading zero in "06"`},
		{"6.2.05", `leading zero in "05"`},
		{"6.00.5", `leading zero in "00"`},
		{"../../x", `invalid version "../../x": want X.Y.Z`},
		{"./.", `invalid version "./.": empty number`},
		{"9.9.9; rm -rf /", `non-digit in "9; rm -rf /"`},
		{"10001.0.0", `invalid version "10001.0.0": number 10001 above 10000`},
		{"0.0.99999", "number 99999 above 10000"},
		{"0.0.100000", `number "100000" above 10000`},
		{"1..2", "empty number"},
		{" 6.2.5", "non-digit"},
		{"6.2.5\n", "non-digit"},
		{"+6.2.5", "non-digit"},
		{"-6.2.5", "non-digit"},
		{"６.2.5", "non-digit"}, // fullwidth digit
		{"1.2.3-rc1", "non-digit"},
		{long, `invalid version "` + long[:40] + `...": too long`},
	} {
		_, err := ParseVersion(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseVersion(%.50q) = %v, want %q", tc.in, err, tc.want)
		}
		if err != nil && len(err.Error()) > 120 {
			t.Errorf("error for %.20q not truncated: %d bytes", tc.in, len(err.Error()))
		}
	}
}

func TestParseTagAndCompare(t *testing.T) {
	v, err := ParseTag("v6.2.5")
	if err != nil || v.Tag() != "v6.2.5" {
		t.Fatalf("ParseTag: %v %v", v, err)
	}
	if _, err := ParseTag("6.2.5"); err == nil || !strings.Contains(err.Error(), "want vX.Y.Z") {
		t.Fatalf("tag without v: %v", err)
	}
	order := []string{"0.0.0", "0.0.1", "0.1.0", "1.0.0", "5.5.1", "6.2.5", "6.2.10", "6.10.0", "10000.0.0"}
	for i := range order {
		for j := range order {
			a, _ := ParseVersion(order[i])
			b, _ := ParseVersion(order[j])
			want := map[bool]int{true: -1, false: 1}[i < j]
			if i == j {
				want = 0
			}
			if a.Compare(b) != want || a.Less(b) != (i < j) {
				t.Errorf("%s vs %s: Compare %d Less %v", a, b, a.Compare(b), a.Less(b))
			}
		}
	}
	if !(Version{}).IsZero() {
		t.Fatal("zero version not IsZero")
	}
}

func TestVersionsJSON(t *testing.T) {
	var v Versions
	in := `{"provider_min":"5.5.1","provider_target":"6.2.6","consumer_min":"5.5.1","consumer_target":"6.2.6"}`
	if err := json.Unmarshal([]byte(in), &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	if string(out) != in {
		t.Fatalf("round trip: %s", out)
	}
	bad := strings.Replace(in, `"6.2.6"`, `"../6.2.6"`, 1)
	if err := json.Unmarshal([]byte(bad), &v); err == nil || !strings.Contains(err.Error(), "invalid version") {
		t.Fatalf("bad version in JSON: %v", err)
	}
}

func TestVersionsValidate(t *testing.T) {
	mk := func(pm, pt, cm, ct string) Versions {
		t.Helper()
		v, err := parseVersions(map[string]string{"provider_min": pm, "provider_target": pt, "consumer_min": cm, "consumer_target": ct})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if err := mk("5.5.1", "6.2.5", "6.2.5", "6.2.5").Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		v    Versions
		want string
	}{
		{Versions{ProviderMin: Version{6, 2, 8}, ProviderTarget: Version{6, 2, 7}, ConsumerTarget: Version{1, 0, 0}},
			"provider_min 6.2.8 above provider_target 6.2.7"},
		{Versions{ConsumerMin: Version{0, 0, 1}, ProviderTarget: Version{1, 0, 0}},
			"consumer_min 0.0.1 above consumer_target 0.0.0"},
		{Versions{ProviderTarget: Version{-1, 0, 0}}, "provider_target: -1.0.0 out of range"},
		{Versions{ConsumerTarget: Version{0, 10001, 0}}, "consumer_target: 0.10001.0 out of range"},
	} {
		if err := tc.v.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%s) = %v, want %q", tc.v, err, tc.want)
		}
	}
	_, err := parseVersions(map[string]string{"provider_min": "1.2", "provider_target": "6.2.5", "consumer_min": "x", "consumer_target": "6.2.5"})
	if err == nil || err.Error() != "provider_min: invalid version \"1.2\": want X.Y.Z\nconsumer_min: invalid version \"x\": want X.Y.Z" {
		t.Fatalf("every bad key named in order: %v", err)
	}
}
