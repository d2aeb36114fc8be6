package upgrade

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lavavisor/lavavisor/chain"
)

func cv(t *testing.T, pMin, pTarget, cMin, cTarget string) ChainVersions {
	return ChainVersions{mustVersion(t, pMin), mustVersion(t, pTarget), mustVersion(t, cMin), mustVersion(t, cTarget)}
}

func vs(t *testing.T, ss ...string) []chain.Version {
	var out []chain.Version
	for _, s := range ss {
		out = append(out, mustVersion(t, s))
	}
	return out
}

func opt(t *testing.T, s string) chain.Version {
	if s == "" {
		return chain.Version{}
	}
	return mustVersion(t, s)
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	both := Roles{Provider: true, Consumer: true}
	std := cv(t, "5.5.1", "6.2.6", "5.5.1", "6.2.6")
	raised := cv(t, "6.2.6", "6.2.8", "6.2.6", "6.2.8")
	mixed := cv(t, "6.2.6", "6.2.8", "5.5.1", "6.2.7") // provider ahead of consumer
	bad := func(v string, chainVs ChainVersions, at time.Time) map[string]BadMark {
		return map[string]BadMark{v: {At: at, Reason: "exited after 2s", Chain: chainVs}}
	}

	cases := []struct {
		name                     string
		in                       Input
		wanted                   string
		cands                    []string
		min, target              string
		belowMin, lowered, warnL bool
		reason                   string
	}{
		{name: "chain unknown", in: Input{Roles: both, Running: opt(t, "6.2.5")},
			reason: "not known yet"},
		{name: "up to date", in: Input{Chain: std, Roles: both, Running: opt(t, "6.2.6")},
			min: "5.5.1", target: "6.2.6", reason: "running 6.2.6: the chain wants 6.2.6 (minimum 5.5.1); nothing to do"},
		{name: "target raised", in: Input{Chain: std, Roles: both, Running: opt(t, "6.2.5")},
			wanted: "6.2.6", cands: []string{"6.2.6"}, min: "5.5.1", target: "6.2.6",
			reason: "running 6.2.5: the chain wants 6.2.6 (minimum 5.5.1); moving to 6.2.6"},
		{name: "no running release", in: Input{Chain: std, Roles: both},
			wanted: "6.2.6", cands: []string{"6.2.6"}, min: "5.5.1", target: "6.2.6", reason: "no release is running"},
		{name: "no running release, local fallback", in: Input{Chain: raised, Roles: both, Local: vs(t, "5.5.1", "6.2.5", "6.2.6", "6.2.7", "6.2.8", "6.2.9")},
			wanted: "6.2.8", cands: []string{"6.2.8", "6.2.7"}, min: "6.2.6", target: "6.2.8"},
		{name: "fallback must beat the running release", in: Input{Chain: raised, Roles: both, Running: opt(t, "6.2.7"), Local: vs(t, "6.2.6", "6.2.7")},
			wanted: "6.2.8", cands: []string{"6.2.8"}, min: "6.2.6", target: "6.2.8"},
		{name: "below min, fallback within range", in: Input{Chain: raised, Roles: both, Running: opt(t, "6.2.5"), Local: vs(t, "6.2.5", "6.2.6")},
			wanted: "6.2.8", cands: []string{"6.2.8", "6.2.6"}, min: "6.2.6", target: "6.2.8", belowMin: true,
			reason: "running 6.2.5, below the minimum"},
		{name: "running above target is kept, warned once", in: Input{Chain: std, Roles: both, Running: opt(t, "6.2.8")},
			min: "5.5.1", target: "6.2.6", lowered: true, warnL: true, reason: "keeping 6.2.8"},
		{name: "lowered target already warned", in: Input{Chain: std, Roles: both, Running: opt(t, "6.2.8"), LastWarnedTarget: opt(t, "6.2.6")},
			min: "5.5.1", target: "6.2.6", lowered: true},
		{name: "mode min, within range", in: Input{Chain: raised, Roles: both, Running: opt(t, "6.2.7"), Mode: ModeMin},
			min: "6.2.6", target: "6.2.8", reason: "upgrade: min waits"},
		{name: "mode min, at min", in: Input{Chain: raised, Roles: both, Running: opt(t, "6.2.6"), Mode: ModeMin},
			min: "6.2.6", target: "6.2.8"},
		{name: "mode min, below min goes to the target", in: Input{Chain: raised, Roles: both, Running: opt(t, "6.2.5"), Mode: ModeMin},
			wanted: "6.2.8", cands: []string{"6.2.8"}, min: "6.2.6", target: "6.2.8", belowMin: true},
		{name: "mode min, no running release", in: Input{Chain: raised, Roles: both, Mode: ModeMin},
			wanted: "6.2.8", cands: []string{"6.2.8"}, min: "6.2.6", target: "6.2.8"},
		{name: "unknown mode counts as target", in: Input{Chain: raised, Roles: both, Running: opt(t, "6.2.7"), Mode: "bogus"},
			wanted: "6.2.8", cands: []string{"6.2.8"}, min: "6.2.6", target: "6.2.8"},
		{name: "provider role only", in: Input{Chain: mixed, Roles: Roles{Provider: true}, Running: opt(t, "6.2.7")},
			wanted: "6.2.8", cands: []string{"6.2.8"}, min: "6.2.6", target: "6.2.8"},
		{name: "consumer role only", in: Input{Chain: mixed, Roles: Roles{Consumer: true}, Running: opt(t, "6.2.7")},
			min: "5.5.1", target: "6.2.7"},
		{name: "consumer role only, below", in: Input{Chain: mixed, Roles: Roles{Consumer: true}, Running: opt(t, "5.5.0")},
			wanted: "6.2.7", cands: []string{"6.2.7"}, min: "5.5.1", target: "6.2.7", belowMin: true},
		{name: "both roles: highest of each", in: Input{Chain: mixed, Roles: both, Running: opt(t, "6.2.5")},
			wanted: "6.2.8", cands: []string{"6.2.8"}, min: "6.2.6", target: "6.2.8", belowMin: true},
		{name: "no roles counts as both", in: Input{Chain: mixed, Running: opt(t, "6.2.7")},
			wanted: "6.2.8", cands: []string{"6.2.8"}, min: "6.2.6", target: "6.2.8"},
		{name: "pin overrides the target", in: Input{Chain: raised, Roles: both, Running: opt(t, "6.2.8"), Pin: opt(t, "6.2.7")},
			wanted: "6.2.7", cands: []string{"6.2.7"}, min: "6.2.6", target: "6.2.8", reason: "pin: moving to 6.2.7"},
		{name: "pin reached", in: Input{Chain: raised, Roles: both, Running: opt(t, "6.2.7"), Pin: opt(t, "6.2.7")},
			min: "6.2.6", target: "6.2.8", reason: "running the pinned release 6.2.7"},
		{name: "pin below min is warned", in: Input{Chain: raised, Roles: both, Running: opt(t, "6.2.8"), Pin: opt(t, "6.2.5")},
			wanted: "6.2.5", cands: []string{"6.2.5"}, min: "6.2.6", target: "6.2.8", belowMin: true,
			reason: "below the chain's minimum 6.2.6"},
		{name: "pin with the chain unknown", in: Input{Roles: both, Pin: opt(t, "6.2.5")},
			wanted: "6.2.5", cands: []string{"6.2.5"}},
		{name: "pin marked bad", in: Input{Chain: raised, Roles: both, Running: opt(t, "6.2.8"), Pin: opt(t, "6.2.7"),
			Bad: bad("6.2.7", raised, now.Add(-time.Minute)), BadRetry: time.Hour, Now: now},
			min: "6.2.6", target: "6.2.8", reason: "the pinned release 6.2.7 is marked bad (exited after 2s)"},
		{name: "bad target, fallback used", in: Input{Chain: raised, Roles: both, Running: opt(t, "6.2.5"), Local: vs(t, "6.2.6", "6.2.7"),
			Bad: bad("6.2.8", raised, now.Add(-time.Minute)), BadRetry: time.Hour, Now: now},
			wanted: "6.2.7", cands: []string{"6.2.7"}, min: "6.2.6", target: "6.2.8", belowMin: true,
			reason: "6.2.8 is marked bad (exited after 2s); moving to 6.2.7"},
		{name: "bad target, bad fallback, next fallback", in: Input{Chain: raised, Roles: both, Running: opt(t, "6.2.5"), Local: vs(t, "6.2.6", "6.2.7"),
			Bad: map[string]BadMark{"6.2.8": {At: now, Chain: raised}, "6.2.7": {At: now, Chain: raised}}, BadRetry: time.Hour, Now: now},
			wanted: "6.2.6", cands: []string{"6.2.6"}, min: "6.2.6", target: "6.2.8", belowMin: true},
		{name: "bad target, nothing else", in: Input{Chain: raised, Roles: both, Running: opt(t, "6.2.5"),
			Bad: bad("6.2.8", raised, now.Add(-time.Minute)), BadRetry: time.Hour, Now: now},
			min: "6.2.6", target: "6.2.8", belowMin: true, reason: "no usable local release within [6.2.6, 6.2.8] is better"},
		{name: "bad mark expired", in: Input{Chain: raised, Roles: both, Running: opt(t, "6.2.7"),
			Bad: bad("6.2.8", raised, now.Add(-time.Hour)), BadRetry: time.Hour, Now: now},
			wanted: "6.2.8", cands: []string{"6.2.8"}, min: "6.2.6", target: "6.2.8"},
		{name: "bad mark lifted by a chain change", in: Input{Chain: raised, Roles: both, Running: opt(t, "6.2.7"),
			Bad: bad("6.2.8", mixed, now), BadRetry: time.Hour, Now: now},
			wanted: "6.2.8", cands: []string{"6.2.8"}, min: "6.2.6", target: "6.2.8"},
		{name: "zero retry: only a chain change lifts a mark", in: Input{Chain: raised, Roles: both, Running: opt(t, "6.2.7"),
			Bad: bad("6.2.8", raised, now.Add(-1000*time.Hour)), Now: now},
			min: "6.2.6", target: "6.2.8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(c.in)
			if d.Wanted != opt(t, c.wanted) {
				t.Errorf("Wanted = %v, want %q (%s)", d.Wanted, c.wanted, d.Reason)
			}
			if want := vs(t, c.cands...); !slices.Equal(d.Candidates, want) {
				t.Errorf("Candidates = %v, want %v", d.Candidates, want)
			}
			if d.Min != opt(t, c.min) || d.Target != opt(t, c.target) {
				t.Errorf("Min, Target = %v, %v; want %s, %s", d.Min, d.Target, c.min, c.target)
			}
			if d.BelowMin != c.belowMin || d.LoweredTarget != c.lowered || d.WarnLoweredTarget != c.warnL {
				t.Errorf("BelowMin %v LoweredTarget %v Warn %v; want %v %v %v", d.BelowMin, d.LoweredTarget, d.WarnLoweredTarget, c.belowMin, c.lowered, c.warnL)
			}
			// SPEC §10: only a move that follows the target may wait; never
			// one below a minimum, a pin, or the first release of a home.
			if want := c.wanted != "" && !c.in.Running.IsZero() && !c.belowMin && c.in.Pin.IsZero(); d.TargetOnly != want {
				t.Errorf("TargetOnly = %v, want %v", d.TargetOnly, want)
			}
			if !strings.Contains(d.Reason, c.reason) || d.Reason == "" {
				t.Errorf("Reason = %q, want it to contain %q", d.Reason, c.reason)
			}
		})
	}
}

// historyStep is one state of the protocol versions on the recorded chain
// (testdata/fixtures/version_change_summary.md), decoded from the recorded
// proposal or REST bytes.
type historyStep struct {
	what string
	cv   ChainVersions
}

func loadHistory(t *testing.T) []historyStep {
	read := func(name string, v any) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("testdata", "fixtures", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	rest := func(name string) ChainVersions {
		var r struct {
			Params struct{ Version ChainVersions }
		}
		read(name, &r)
		return r.Params.Version
	}
	legacy := func(name string) ChainVersions {
		var p struct {
			Changes []struct{ Value ChainVersions }
		}
		read(name, &p)
		return p.Changes[0].Value
	}
	govV1 := func(name string) ChainVersions {
		var p struct {
			Messages []struct{ Version ChainVersions }
		}
		read(name, &p)
		return p.Messages[0].Version
	}
	steps := []historyStep{
		{"genesis", rest("rest_protocol_params.json")},
		{"#2 legacy param-change", legacy("param_change_version_6.2.6_legacy.json")},
		{"#3 gov v1 MsgSetVersion", govV1("gov_v1_msg_set_version_6.2.7.json")},
		{"#5 target 6.2.8, min 6.2.6", legacy("param_change_version_6.2.8_min_6.2.6_legacy.json")},
		{"#6 target lowered to 6.2.6", legacy("param_change_version_6.2.6_final_legacy.json")},
		// #7 was made with the CLI (no proposal file); it set what #3 set.
		{"#7 set-protocol-version 6.2.7 5.5.1", govV1("gov_v1_msg_set_version_6.2.7.json")},
		// The direct MsgSetVersion outside governance (table row "-"): 6.2.7 -> 9.9.9, min 5.5.1.
		{"direct MsgSetVersion 9.9.9", cv(t, "5.5.1", "9.9.9", "5.5.1", "9.9.9")},
		{"#8 final", legacy("param_change_version_6.2.6_final_legacy.json")},
	}
	// The REST answers recorded at the same stages agree with the proposals.
	for i, name := range map[int]string{1: "rest_protocol_params_after_6.2.6.json", 2: "rest_protocol_params_after_6.2.7.json", 7: "rest_protocol_params_final.json"} {
		if got := rest(name); got != steps[i].cv {
			t.Fatalf("%s = %+v, but %s says %+v", name, got, steps[i].what, steps[i].cv)
		}
	}
	return steps
}

// TestDecideRecordedHistory replays the real version changes with an upgrader
// that installs whatever is wanted (9.9.9 does not exist: its fetch fails).
func TestDecideRecordedHistory(t *testing.T) {
	steps := loadHistory(t)
	type want struct {
		wanted, running      string
		lowered, warn, below bool
	}
	for _, c := range []struct {
		mode  string
		wants []want
	}{
		{ModeTarget, []want{
			{"", "6.2.5", false, false, false},
			{"6.2.6", "6.2.6", false, false, false},
			{"6.2.7", "6.2.7", false, false, false},
			{"6.2.8", "6.2.8", false, false, false},
			{"", "6.2.8", true, true, false},        // lowered target: kept, warned
			{"", "6.2.8", true, true, false},        // 6.2.7 now: a new lowered target, warned once more
			{"9.9.9", "6.2.8", false, false, false}, // wanted, fetch fails, 6.2.8 keeps running
			{"", "6.2.8", true, true, false},
		}},
		{ModeMin, []want{
			{"", "6.2.5", false, false, false},
			{"", "6.2.5", false, false, false},
			{"", "6.2.5", false, false, false},
			{"6.2.8", "6.2.8", false, false, true}, // min 6.2.6 passes the running 6.2.5
			{"", "6.2.8", true, true, false},
			{"", "6.2.8", true, true, false},
			{"", "6.2.8", false, false, false}, // min mode: 9.9.9 is no reason to move
			{"", "6.2.8", true, true, false},
		}},
	} {
		t.Run(c.mode, func(t *testing.T) {
			running := mustVersion(t, "6.2.5")
			var warned chain.Version
			for i, step := range steps {
				in := Input{Chain: step.cv, Roles: Roles{Provider: true}, Running: running, Mode: c.mode, LastWarnedTarget: warned,
					Local: vs(t, "6.2.5", "6.2.6", "6.2.7", "6.2.8")}
				d := Decide(in)
				w := c.wants[i]
				if d.Wanted != opt(t, w.wanted) || d.LoweredTarget != w.lowered || d.WarnLoweredTarget != w.warn || d.BelowMin != w.below {
					t.Fatalf("step %s: %+v", step.what, d)
				}
				if d.WarnLoweredTarget {
					warned = d.Target
					if again := Decide(Input{Chain: step.cv, Running: running, Mode: c.mode, LastWarnedTarget: warned}); again.WarnLoweredTarget {
						t.Fatalf("step %s: warned twice", step.what)
					}
				}
				if !d.Wanted.IsZero() && d.Wanted.String() != "9.9.9" {
					running = d.Wanted
				}
				if running.String() != w.running {
					t.Fatalf("step %s: running %s, want %s", step.what, running, w.running)
				}
			}
		})
	}
}
