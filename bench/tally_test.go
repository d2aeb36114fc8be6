package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// payload is what the writer puts on one line, newline excluded.
func payload(id string, seq int64) string {
	b := []byte(id + " " + strings.Repeat("0", seqDigits) + " ")
	putSeq(b[len(id)+1:], seq)
	return string(b) + strings.Repeat("x", payloadLen-len(b))
}

func TestTallyCountsIntactLinesPerChild(t *testing.T) {
	lines := []string{
		"lavavisor | 19:03:36 INFO  lavavisor started component=lavavisor",
		"w1        | " + payload("w1", 0),
		"w1        | " + payload("w1", 1),
		payload("w2", 0),                              // supervisord: no prefix
		"w2        | " + payload("w1", 2),             // names another child: misattributed
		"w1        | " + payload("w1", 2)[:50],        // cut
		"w1        | " + payload("w1", 4),             // 3 is missing: out of order
		"w10       | " + payload("w1", 5),             // w10 is not w1
		"w1 | " + payload("w1", 5) + payload("w1", 6), // two lines merged
	}
	path := filepath.Join(t.TempDir(), "out.log")
	// The last line has no newline: it still counts.
	body := strings.Join(lines, "\n") + "\n" + payload("w2", 1)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	tl := newTally()
	if err := tl.file(path); err != nil {
		t.Fatal(err)
	}
	if got := tl.children["w1"].lines; got != 3 {
		t.Errorf("w1 lines = %d, want 3", got)
	}
	if got := tl.children["w2"].lines; got != 2 {
		t.Errorf("w2 lines = %d, want 2", got)
	}
	if tl.own != 1 || tl.malformed != 4 || tl.disorder != 1 {
		t.Errorf("own, malformed, disorder = %d, %d, %d; want 1, 4, 1", tl.own, tl.malformed, tl.disorder)
	}
}

func TestTallyMissingFile(t *testing.T) {
	err := newTally().file(filepath.Join(t.TempDir(), "nope"))
	if err == nil || !strings.Contains(err.Error(), "count lines") {
		t.Fatalf("err = %v, want a count lines error", err)
	}
}

func TestMedianAndSpread(t *testing.T) {
	if got := spread([]float64{3, 1, 2, 10}, 1); got != "2.5 (1.0–10.0)" {
		t.Errorf("spread = %q", got)
	}
	if got := spread(nil, 1); got != "—" {
		t.Errorf("spread of nothing = %q", got)
	}
	if got := ratio("tini", []float64{10}, []float64{4}); got != "2.50" {
		t.Errorf("ratio = %q", got)
	}
}
