package upgrade

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/lavavisor/lavavisor/chain"
)

// helperEnv makes the test binary act as a second LavaVisor process (os/exec's
// own pattern): see runHelper.
const helperEnv = "UPGRADE_TEST_HELPER"

// fakeLavapBytes is the fakelavap executable built once by TestMain.
var fakeLavapBytes []byte

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(runHelper(h))
	}
	dir, err := os.MkdirTemp("", "fakelavap-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		goBin := "go"
		if p, err := exec.LookPath("go"); err == nil {
			goBin = p
		}
		out := filepath.Join(dir, "fakelavap")
		cmd := exec.Command(goBin, "build", "-ldflags=-s -w", "-o", out, "./testdata/fakelavap")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build fakelavap: %v\n%s", err, b)
			return 1
		}
		fakeLavapBytes, err = os.ReadFile(out)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// runHelper is the body of a helper process.
func runHelper(name string) int {
	switch name {
	case "hold-lock":
		// Take the lock, say so, hold it until stdin closes.
		l, err := TryLock(os.Getenv("LOCK_PATH"))
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Println("locked")
		_, _ = os.Stdin.Read(make([]byte, 1))
		if err := l.Unlock(); err != nil {
			fmt.Println("error:", err)
			return 1
		}
		return 0
	case "fetch":
		log := logrus.New()
		log.SetOutput(os.Stderr)
		f := &Fetcher{
			URL:             os.Getenv("FETCH_URL"),
			Checksums:       os.Getenv("FETCH_CHECKSUMS"),
			RequireChecksum: true,
			Timeout:         30 * time.Second,
			Log:             logrus.NewEntry(log),
		}
		v, err := chain.ParseVersion(os.Getenv("FETCH_VERSION"))
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		s := &Store{Dir: os.Getenv("FETCH_DIR"), Log: logrus.NewEntry(log)}
		m, err := f.Fetch(context.Background(), s, v)
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		_ = json.NewEncoder(os.Stdout).Encode(m)
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper", name)
	return 2
}

// helperCmd prepares the test binary to run helper name.
func helperCmd(t *testing.T, name string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + name}, env...)...)
	return cmd
}

// fakeLavap is a fakelavap variant: "version=X.Y.Z", "noversion" or "hang".
func fakeLavap(mode string) []byte {
	b := bytes.Clone(fakeLavapBytes)
	return append(b, "\n#fakelavap:"+mode+"\n"...)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func mustVersion(t testing.TB, s string) chain.Version {
	t.Helper()
	v, err := chain.ParseVersion(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func testLog() (*logrus.Entry, *logtest.Hook) {
	l, hook := logtest.NewNullLogger()
	l.SetLevel(logrus.DebugLevel)
	return logrus.NewEntry(l), hook
}

// hasLog reports whether a log entry at level contains every one of subs in its
// message or fields.
func hasLog(hook *logtest.Hook, level logrus.Level, subs ...string) bool {
	for _, e := range hook.AllEntries() {
		if e.Level != level {
			continue
		}
		text := e.Message
		for k, v := range e.Data {
			text += fmt.Sprintf(" %s=%v", k, v)
		}
		ok := true
		for _, s := range subs {
			if !strings.Contains(text, s) {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func logText(hook *logtest.Hook) string {
	var b strings.Builder
	for _, e := range hook.AllEntries() {
		fmt.Fprintf(&b, "%s %s %v\n", e.Level, e.Message, e.Data)
	}
	return b.String()
}

// writeRelease makes dir/v<version>/lavap with content (mode 0755) and, when
// withManifest, its manifest.
func writeRelease(t *testing.T, dir, version string, content []byte, withManifest bool) {
	t.Helper()
	rd := filepath.Join(dir, "v"+version)
	if err := os.MkdirAll(rd, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rd, "lavap"), content, 0o755); err != nil {
		t.Fatal(err)
	}
	if withManifest {
		m := Manifest{Version: version, SHA256: sha(content), Source: SourceURL, FetchedAt: time.Now().UTC()}
		b, _ := json.Marshal(m)
		if err := os.WriteFile(filepath.Join(rd, "manifest.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// snapshot describes every entry under dir (type, mode, size, mtime, content
// hash, link target) so that a test can assert nothing changed.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			desc += " " + sha(b)
		case fi.IsDir():
			desc = fmt.Sprintf("%v", fi.Mode()) // a dir's mtime changes with the .lock file
		}
		out[rel] = desc
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// assertUnchanged compares two snapshots, allowing only the releases lock file
// to appear (it is meant to stay), and checks that no temporary file remains.
func assertUnchanged(t *testing.T, before, after map[string]string) {
	t.Helper()
	delete(after, ".lock")
	delete(before, ".lock")
	var diffs []string
	for k, v := range before {
		if after[k] != v {
			diffs = append(diffs, fmt.Sprintf("changed %s: %q -> %q", k, v, after[k]))
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			diffs = append(diffs, "new "+k)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("the folder changed:\n%s", strings.Join(diffs, "\n"))
	}
}
