package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sirupsen/logrus"
)

// tricky holds the lines that encoding/json escapes in every way it can.
var tricky = []string{
	"",
	"plain line",
	`quote " backslash \ slash /`,
	"<a href='x'>&amp;</a>",
	"\x00\x01\x07\x1b[31mred\x1b[0m\x1f\x7f",
	"\b\f\t\r\v",
	"sep \u2028 para \u2029 end",
	"héllo 世界 🎉",
	"\xff\xfe bad",
	"cut \xc3",
	"cut sep \xe2\x80",
	"surrogate \xed\xa0\x80",
	"too big \xf4\x90\x80\x80",
	"overlong \xc0\xaf",
	"\xef\xbf\xbd literal replacement char",
}

func serviceEntry(log *logrus.Logger, service, stream, line string, continued bool, at time.Time) *logrus.Entry {
	data := logrus.Fields{FieldService: service, FieldStream: stream}
	if continued {
		data[FieldContinued] = true
	}
	return &logrus.Entry{Logger: log, Data: data, Time: at, Level: logrus.InfoLevel, Message: line}
}

// checkJSONLine asserts that the fast path gives the bytes of logrus's own
// JSONFormatter for the same entry.
func checkJSONLine(t *testing.T, enc lineEncoder, line []byte, continued bool, at time.Time) {
	t.Helper()
	log := logrus.New()
	want, err := (&logrus.JSONFormatter{}).Format(serviceEntry(log, "provider-eth", "stderr", string(line), continued, at))
	if err != nil {
		t.Fatal(err)
	}
	got := enc.appendLine(nil, line, continued, at)
	if !bytes.Equal(got, want) {
		t.Fatalf("line %q continued=%v:\n got %s\nwant %s", line, continued, got, want)
	}
	if !json.Valid(got) {
		t.Fatalf("line %q: invalid JSON %s", line, got)
	}
}

func TestJSONFastPathMatchesLogrus(t *testing.T) {
	enc := NewJSONFormatter().(lineFormatter).newLineEncoder("provider-eth", "stderr")
	at := time.Date(2024, 5, 1, 12, 34, 56, 789, time.FixedZone("CEST", 2*3600))
	for _, line := range tricky {
		checkJSONLine(t, enc, []byte(line), false, at)
		checkJSONLine(t, enc, []byte(line), true, at)
	}
	// The cached timestamp must follow the clock.
	checkJSONLine(t, enc, []byte("next second"), false, at.Add(time.Second))
	checkJSONLine(t, enc, []byte("local"), false, time.Now())

	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		line := make([]byte, rng.IntN(40))
		for i := range line {
			// Mostly the bytes around the special cases.
			switch rng.IntN(4) {
			case 0:
				line[i] = byte(rng.IntN(256))
			case 1:
				line[i] = byte(rng.IntN(0x21))
			case 2:
				const special = "\"\\<>&\xe2\x80\xa8\xa9\xc3"
				line[i] = special[rng.IntN(len(special))]
			default:
				line[i] = byte('a' + rng.IntN(26))
			}
		}
		checkJSONLine(t, enc, line, rng.IntN(2) == 0, at)
	}
}

func FuzzJSONLine(f *testing.F) {
	for _, line := range tricky {
		f.Add([]byte(line))
	}
	enc := NewJSONFormatter().(lineFormatter).newLineEncoder("provider-eth", "stderr")
	at := time.Unix(1714560000, 0)
	f.Fuzz(func(t *testing.T, line []byte) {
		checkJSONLine(t, enc, line, false, at)
	})
}

func TestJSONServiceAndOwnEntriesHaveTheSameKeys(t *testing.T) {
	var out bytes.Buffer
	log := logrus.New()
	log.SetFormatter(NewJSONFormatter())
	sink := NewSink(&out, log)
	o := sink.NewOutput("provider-eth", OutputOptions{FlushTimeout: time.Minute})
	pumpBytes(t, o, "stderr", []byte("hello <world>\n"))
	o.Close()
	log.WithField(FieldService, "provider-eth").WithError(errors.New("boom")).Warn("service exited")

	lines := decodeJSONLines(t, out.Bytes())
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2: %s", len(lines), out.Bytes())
	}
	for i, want := range [][]string{
		{"level", "msg", "service", "stream", "time"},
		{"error", "level", "msg", "service", "time"},
	} {
		if got := sortedKeys(lines[i]); !slices.Equal(got, want) {
			t.Errorf("line %d keys %v, want %v", i, got, want)
		}
	}
	if lines[0]["msg"] != "hello <world>" || lines[0]["stream"] != "stderr" || lines[0]["level"] != "info" {
		t.Errorf("service line %v", lines[0])
	}
	if lines[1]["error"] != "boom" || lines[1]["level"] != "warning" {
		t.Errorf("own entry %v", lines[1])
	}
}

func TestTextFastPathMatchesFormat(t *testing.T) {
	for _, color := range []bool{false, true} {
		f := NewTextFormatter(color)
		f.(*textFormatter).register("provider-eth")
		f.(*textFormatter).register("c")
		enc := f.(lineFormatter).newLineEncoder("c", "stdout")
		log := logrus.New()
		for _, line := range tricky {
			for _, continued := range []bool{false, true} {
				want, err := f.Format(serviceEntry(log, "c", "stdout", line, continued, time.Now()))
				if err != nil {
					t.Fatal(err)
				}
				got := enc.appendLine(nil, []byte(line), continued, time.Now())
				if !bytes.Equal(got, want) {
					t.Fatalf("color=%v line %q: got %q, want %q", color, line, got, want)
				}
				if !utf8.Valid(got) {
					t.Fatalf("line %q: invalid UTF-8 in %q", line, got)
				}
			}
		}
	}
}

func TestTextFormat(t *testing.T) {
	f := NewTextFormatter(false)
	log := logrus.New()
	at := time.Date(2024, 5, 1, 12, 34, 56, 0, time.UTC)
	format := func(e *logrus.Entry) string {
		t.Helper()
		b, err := f.Format(e)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	own := &logrus.Entry{Logger: log, Time: at, Level: logrus.WarnLevel, Message: "service exited",
		Data: logrus.Fields{"service": "p", "error": errors.New("exit status 1"), "pid": 42, "path": "/a/b", "empty": ""}}

	if got, want := format(own), "lavavisor | 12:34:56 WARN  service exited empty=\"\" error=\"exit status 1\" path=/a/b pid=42 service=p\n"; got != want {
		t.Errorf("own entry:\n got %q\nwant %q", got, want)
	}
	if got, want := format(serviceEntry(log, "p", "stderr", "hi", false, at)), "p         | hi\n"; got != want {
		t.Errorf("service line: got %q, want %q", got, want)
	}
	// A longer service name widens the column for everyone.
	f.(*textFormatter).register("provider-eth-1")
	if got, want := format(serviceEntry(log, "p", "stderr", "hi", true, at)), "p              | (continued) hi\n"; got != want {
		t.Errorf("continued line: got %q, want %q", got, want)
	}
	own.Message = "two\nlines"
	own.Data = nil
	own.Level = logrus.ErrorLevel
	if got, want := format(own), "lavavisor      | 12:34:56 ERROR \"two\\nlines\"\n"; got != want {
		t.Errorf("multi-line message: got %q, want %q", got, want)
	}
}

func TestColorsOnlyWhenEnabled(t *testing.T) {
	for _, color := range []bool{false, true} {
		var out bytes.Buffer
		log := logrus.New()
		log.SetFormatter(NewTextFormatter(color))
		sink := NewSink(&out, log)
		a := sink.NewOutput("a", OutputOptions{FlushTimeout: time.Minute})
		b := sink.NewOutput("b", OutputOptions{FlushTimeout: time.Minute})
		pumpBytes(t, a, "stdout", []byte("from a\n"))
		pumpBytes(t, b, "stdout", []byte("from b\n"))
		a.Close()
		b.Close()
		log.Error("own")

		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("color=%v: %q", color, out.String())
		}
		if !color {
			if strings.Contains(out.String(), "\x1b") {
				t.Errorf("colours without color: %q", out.String())
			}
			continue
		}
		colorA, _, _ := strings.Cut(lines[0], "a")
		colorB, _, _ := strings.Cut(lines[1], "b")
		if !strings.HasPrefix(colorA, "\x1b[") || !strings.HasPrefix(colorB, "\x1b[") || colorA == colorB {
			t.Errorf("services want distinct colours: %q, %q", lines[0], lines[1])
		}
		if !strings.Contains(lines[2], "\x1b[31mERROR\x1b[0m") {
			t.Errorf("level not coloured: %q", lines[2])
		}
	}
}

func TestIsTerminal(t *testing.T) {
	if IsTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is not a terminal")
	}
	f, err := openTemp(t)
	if err != nil {
		t.Fatal(err)
	}
	if IsTerminal(f) {
		t.Error("a file is not a terminal")
	}
}

func decodeJSONLines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range bytes.Lines(b) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("invalid JSON line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestValidUTF8MatchesUTF8Valid(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for range 20_000 {
		b := []byte(pattern(rng.IntN(100), byte(rng.IntN(26))))
		for range rng.IntN(3) {
			if len(b) > 0 {
				b[rng.IntN(len(b))] = byte(0x80 + rng.IntN(0x80))
			}
		}
		if rng.IntN(4) == 0 && len(b) >= 4 {
			copy(b[rng.IntN(len(b)-3):], "世")
		}
		if got, want := validUTF8(b), utf8.Valid(b); got != want {
			t.Fatalf("validUTF8(%q) = %v, want %v", b, got, want)
		}
	}
}

// TestTextBlockMatchesLines: formatting a block of lines at once gives the bytes
// of formatting each line, CRLF endings and invalid UTF-8 included.
func TestTextBlockMatchesLines(t *testing.T) {
	f := NewTextFormatter(false)
	f.(*textFormatter).register("provider-eth")
	enc := f.(lineFormatter).newLineEncoder("provider-eth", "stdout")
	var block, want []byte
	for _, line := range append(tricky, "ok", "crlf\r", "", "\r", "a\rb") {
		block = append(block, line...)
		block = append(block, '\n')
		want = enc.appendLine(want, trimCR([]byte(line)), false, time.Now())
	}
	be := enc.(blockEncoder)
	for _, valid := range []bool{false, validUTF8(block)} {
		got, rest, n := be.appendBlock(nil, block, valid, 1<<20)
		if !bytes.Equal(got, want) || len(rest) != 0 || n != len(tricky)+5 {
			t.Fatalf("valid=%v: %d lines, %d bytes left:\n got %q\nwant %q", valid, n, len(rest), got, want)
		}
	}
	// A limit stops it at the end of the line that reaches it.
	got, rest, n := be.appendBlock(nil, []byte("one\ntwo\nthree\n"), true, 5)
	if string(got) != "provider-eth | one\n" || string(rest) != "two\nthree\n" || n != 1 {
		t.Errorf("with a limit: got %q, rest %q, n %d", got, rest, n)
	}
}
