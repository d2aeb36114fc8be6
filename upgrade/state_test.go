package upgrade

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	f, err := OpenState(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := f.Get(); st.Chain != nil || st.Journal != nil || st.Bad != nil || st.LastUpgrade != nil {
		t.Fatalf("a missing file is not an empty state: %+v", st)
	}
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	chainVs := cv(t, "6.2.6", "6.2.8", "6.2.6", "6.2.8")
	err = f.Update(func(s *State) {
		s.Chain = &ChainRecord{ChainVersions: chainVs, Height: 884, At: at}
		s.Journal = &Journal{From: "6.2.7", To: "6.2.8", Step: "restart", Moved: []string{"provider-eth"}, Started: at, Updated: at}
		s.Bad = map[string]BadMark{"6.2.8": {At: at, Reason: "provider-eth exited after 2s", Chain: chainVs}}
		s.LastUpgrade = &UpgradeRecord{From: "6.2.6", To: "6.2.7", Result: "ok", At: at}
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	var generic map[string]map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	if generic["chain"]["provider_min"] != "6.2.6" || generic["chain"]["consumer_target"] != "6.2.8" || generic["chain"]["height"] != 884.0 {
		t.Errorf("chain keys not inline: %s", raw)
	}
	if generic["last_upgrade"]["result"] != "ok" || generic["journal"]["step"] != "restart" {
		t.Errorf("keys: %s", raw)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}

	g, err := OpenState(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := f.Get(), g.Get()
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Fatalf("reopened state differs:\n%s\n%s", ja, jb)
	}
	if b.Bad["6.2.8"].Chain != chainVs || b.Journal.Moved[0] != "provider-eth" {
		t.Errorf("decoded %+v", b)
	}
	noTemp(t, filepath.Dir(path))
}

func TestStateGetIsACopy(t *testing.T) {
	f, _ := OpenState(filepath.Join(t.TempDir(), "state.json"), nil)
	f.Update(func(s *State) {
		s.Journal = &Journal{Moved: []string{"a"}}
		s.Bad = map[string]BadMark{"6.2.8": {Reason: "r"}}
		s.Chain = &ChainRecord{Height: 1}
	})
	c := f.Get()
	c.Journal.Moved[0] = "changed"
	c.Bad["6.2.9"] = BadMark{}
	c.Chain.Height = 2
	d := f.Get()
	if d.Journal.Moved[0] != "a" || len(d.Bad) != 1 || d.Chain.Height != 1 {
		t.Fatalf("Get shares memory: %+v", d)
	}
}

func TestStateCorruptFileIsMovedAside(t *testing.T) {
	for _, content := range []string{"{not json", "", `{"bad":{"6.2.8":{"chain":{"provider_min":"../../x"}}}}`} {
		dir := t.TempDir()
		path := filepath.Join(dir, "state.json")
		os.WriteFile(path, []byte(content), 0o600)
		log, hook := testLog()
		f, err := OpenState(path, log)
		if err != nil {
			t.Fatal(err)
		}
		if st := f.Get(); st.Bad != nil || st.Chain != nil {
			t.Errorf("state %+v", st)
		}
		aside, _ := filepath.Glob(path + ".corrupt-*")
		if len(aside) != 1 {
			t.Fatalf("moved aside: %v", aside)
		}
		if b, _ := os.ReadFile(aside[0]); string(b) != content {
			t.Errorf("kept content %q", b)
		}
		if !hasLog(hook, logrus.WarnLevel, "state file is corrupt", aside[0]) {
			t.Errorf("no warning:\n%s", logText(hook))
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("corrupt file still in place: %v", err)
		}
		// And it is usable again.
		if err := f.Update(func(s *State) { s.LastUpgrade = &UpgradeRecord{Result: "ok"} }); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStateUpdateFailureIsWrittenLater(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	f, _ := OpenState(path, nil)
	f.Update(func(s *State) { s.LastUpgrade = &UpgradeRecord{Result: "ok"} })
	// A directory in the way of the rename.
	os.Remove(path)
	os.Mkdir(path, 0o755)
	err := f.Update(func(s *State) { s.LastUpgrade.Result = "failed" })
	if err == nil || !strings.Contains(err.Error(), "save state: write "+path) {
		t.Fatalf("err = %v", err)
	}
	// The change holds in memory: a full disk must not undo a bad mark.
	if f.Get().LastUpgrade.Result != "failed" || !f.Dirty() {
		t.Errorf("in-memory state lost the change of a failed Update (dirty %v)", f.Dirty())
	}
	noTemp(t, dir)
	if err := f.Flush(); err == nil {
		t.Fatal("Flush succeeded with the directory still in the way")
	}
	os.Remove(path)
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), `"result": "failed"`) || f.Dirty() {
		t.Errorf("after Flush: %s, %v (dirty %v)", b, err, f.Dirty())
	}
}

func TestStateConcurrentUpdate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	f, _ := OpenState(path, nil)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := f.Update(func(s *State) {
				if s.Bad == nil {
					s.Bad = map[string]BadMark{}
				}
				s.Bad[fmt.Sprintf("6.2.%d", i)] = BadMark{Reason: "r"}
			})
			if err != nil {
				t.Error(err)
			}
			_ = f.Get()
		}()
	}
	wg.Wait()
	g, err := OpenState(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(g.Get().Bad); n != 20 {
		t.Fatalf("%d marks on disk, want 20", n)
	}
}
