package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseWindow(t *testing.T) {
	for _, tc := range []struct {
		in         string
		start, end time.Duration
		length     time.Duration
	}{
		{"", 0, 0, 24 * time.Hour},
		{"02:00-04:00", 2 * time.Hour, 4 * time.Hour, 2 * time.Hour},
		{"22:30-01:15", 22*time.Hour + 30*time.Minute, time.Hour + 15*time.Minute, 2*time.Hour + 45*time.Minute},
		{"00:00-23:59", 0, 23*time.Hour + 59*time.Minute, 23*time.Hour + 59*time.Minute},
		{"23:59-00:00", 23*time.Hour + 59*time.Minute, 0, time.Minute},
	} {
		w, err := ParseWindow(tc.in)
		if err != nil || w.Start != tc.start || w.End != tc.end || w.Length() != tc.length || w.String() != tc.in {
			t.Errorf("ParseWindow(%q) = %+v (length %s, %q), %v", tc.in, w, w.Length(), w.String(), err)
		}
	}
	for _, bad := range []string{"2:00-4:00", "02:00", "02:00-04:60", "24:00-01:00", "02:00 - 04:00", "02:00-04:00Z", " 02:00-04:00", "02:00-02:00", "０２:00-04:00"} {
		if w, err := ParseWindow(bad); err == nil || !strings.Contains(err.Error(), "invalid upgrade window") {
			t.Errorf("ParseWindow(%q) = %+v, %v: want an error", bad, w, err)
		}
	}
}

// A bad --upgrade-window or LAVAVISOR_UPGRADE_WINDOW is reported against the
// flag, and a spread that does not fit the window against upgrade-spread.
func TestUpgradeWindowFlags(t *testing.T) {
	s := func(v string) *string { return &v }
	d := func(v time.Duration) *time.Duration { return &v }
	_, err := Parse([]byte("upgrade-window: \"02:00-04:00\"\n"), "config.yml", Overrides{UpgradeWindow: s("2-4")}, Options{AllowNoServices: true})
	if err == nil || !strings.HasPrefix(err.Error(), `--upgrade-window: invalid upgrade window "2-4"`) {
		t.Errorf("bad --upgrade-window: %v", err)
	}
	_, err = Parse([]byte("upgrade-window: \"02:00-04:00\"\n"), "config.yml", Overrides{UpgradeSpread: d(3 * time.Hour)}, Options{AllowNoServices: true})
	if err == nil || !strings.HasPrefix(err.Error(), "--upgrade-spread: 3h0m0s: must be shorter than upgrade-window 02:00-04:00") {
		t.Errorf("spread too long: %v", err)
	}
	_, err = Parse([]byte("pin: \"\"\n"), "config.yml", Overrides{UpgradeSpread: d(-time.Minute)}, Options{AllowNoServices: true})
	if err == nil || !strings.Contains(err.Error(), "--upgrade-spread: negative duration -1m0s") {
		t.Errorf("negative spread: %v", err)
	}
	c, err := Parse([]byte("upgrade-window: \"02:00-04:00\"\nupgrade-spread: 1h\n"), "config.yml", Overrides{UpgradeWindow: s("22:00-02:00"), UpgradeSpread: d(10 * time.Minute)}, Options{AllowNoServices: true})
	if err != nil || c.UpgradeWindow.String() != "22:00-02:00" || c.UpgradeSpread.Std() != 10*time.Minute {
		t.Errorf("flags over the file: %+v, %v", c, err)
	}
}
