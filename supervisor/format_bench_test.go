package supervisor

import (
	"bytes"
	"testing"
)

// BenchmarkValidUTF8Block checks a queue chunk of 100-byte ASCII lines, as the
// Pump does for every read.
func BenchmarkValidUTF8Block(b *testing.B) {
	line := append(bytes.Repeat([]byte("lavap INF 12:00:00 relay ok "), 4)[:99], '\n')
	block := bytes.Repeat(line, 2600)
	b.SetBytes(int64(len(block)))
	for b.Loop() {
		if !validUTF8(block) {
			b.Fatal("invalid")
		}
	}
}
