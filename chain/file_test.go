package chain

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodVersionsFile = `# rehearsal of the 6.2.6 upgrade
provider_min: 5.5.1
provider_target: 6.2.6
consumer_min: "5.5.1"
consumer_target: 6.2.6
`

func writeVersions(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "versions.yml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFileSource(t *testing.T) {
	path := writeVersions(t, goodVersionsFile)
	src := newTestSource(t, Options{Nodes: "file://" + path})
	ctx := context.Background()
	snap, err := src.Query(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantVersions(t, snap.Versions, "provider 5.5.1..6.2.6, consumer 5.5.1..6.2.6")
	if snap.Height != 0 || snap.ChainID != "" || snap.Source != "file://"+path {
		t.Fatalf("snapshot %+v", snap)
	}
	// Re-read on every query.
	os.WriteFile(path, []byte(strings.ReplaceAll(goodVersionsFile, "6.2.6", "6.2.7")), 0o644)
	if snap, _ = src.Query(ctx); snap.Versions.ConsumerTarget.String() != "6.2.7" {
		t.Fatalf("not re-read: %s", snap.Versions)
	}
	if err := CheckChainID(ctx, src, "", nil); err != nil {
		t.Fatal(err)
	}
	err = CheckChainID(ctx, src, "lava-mainnet-1", nil)
	if !errors.Is(err, ErrChainIDWithFile) || !strings.Contains(err.Error(), `chain-id cannot be checked: "lava-mainnet-1" is set but node file://`) {
		t.Fatalf("chain-id with a file source: %v", err)
	}
	if _, err := NewSource(Options{Nodes: "file://localhost" + path}); err != nil {
		t.Fatalf("file://localhost/path: %v", err)
	}
}

func TestFileSourceErrors(t *testing.T) {
	long := strings.Repeat("7", 20000)
	for _, tc := range []struct {
		name, content, want string
	}{
		{"empty", "", "empty: want provider_min, provider_target, consumer_min, consumer_target"},
		{"unknown key", goodVersionsFile + "providr_min: 1.0.0\n", "line 6: unknown key providr_min (want provider_min, provider_target, consumer_min, consumer_target)"},
		{"missing key", "provider_min: 5.5.1\nprovider_target: 6.2.6\nconsumer_target: 6.2.6\n", "consumer_min missing"},
		{"not a map", "- 6.2.6\n", "line 1: want a mapping of provider_min, provider_target, consumer_min, consumer_target, got !!seq"},
		{"two documents", goodVersionsFile + "---\nprovider_min: 1.0.0\n", "more than one YAML document"},
		{"leading v", strings.Replace(goodVersionsFile, "target: 6.2.6", "target: v6.2.6", 1), `provider_target: invalid version "v6.2.6"`},
		{"two parts", strings.Replace(goodVersionsFile, "min: 5.5.1", "min: 1.2", 1), `provider_min: invalid version "1.2": want X.Y.Z`},
		{"path", strings.Replace(goodVersionsFile, "min: 5.5.1", "min: ../../x", 1), `provider_min: invalid version "../../x"`},
		{"leading zero", strings.Replace(goodVersionsFile, "min: 5.5.1", "min: 06.2.5", 1), `leading zero in "06"`},
		{"20000 digits", strings.Replace(goodVersionsFile, "min: 5.5.1", "min: "+long, 1), `"` + long[:40] + `...": too long`},
		{"min above target", strings.Replace(goodVersionsFile, "consumer_min: \"5.5.1\"", "consumer_min: 6.2.7", 1), "consumer_min 6.2.7 above consumer_target 6.2.6"},
		{"too big", goodVersionsFile + "#" + strings.Repeat("x", 70000) + "\n", "larger than 65536 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeVersions(t, tc.content)
			src := newTestSource(t, Options{Nodes: "file://" + path})
			_, err := src.Query(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want %q and the path", err, tc.want)
			}
			if strings.Contains(err.Error(), "struct {") {
				t.Fatalf("err = %v names a Go type", err)
			}
			if len(err.Error()) > 400 {
				t.Fatalf("error not truncated: %d bytes", len(err.Error()))
			}
		})
	}
	src := newTestSource(t, Options{Nodes: "file:///nonexistent/versions.yml"})
	if _, err := src.Query(context.Background()); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: %v", err)
	}
}
