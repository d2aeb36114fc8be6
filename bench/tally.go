package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// tally counts the writers' lines found in a supervisor's output. A line
// counts for child <id> when it ends with an intact 99-byte payload
// `<id> <seq> xxx...` and, when the supervisor adds a prefix (LavaVisor's
// `<id> | `), that prefix names the same child.
type tally struct {
	children  map[string]*childTally
	own       int64 // the supervisor's own log lines
	malformed int64 // neither: cut, merged or misattributed lines
	disorder  int64 // lines whose seq is not the one after the last seen

	last   *childTally // the child of the line before
	lastID []byte
}

type childTally struct {
	lines int64
	next  int64
}

func newTally() *tally { return &tally{children: map[string]*childTally{}} }

const (
	payloadLen = lineLen - 1
	maxPrefix  = 64 // the longest prefix a supervisor may add to a line
)

// padding is what follows `<id> <seq> ` in every payload.
var padding = bytes.Repeat([]byte{'x'}, payloadLen)

// ownPrefix starts LavaVisor's own entries in its text format.
var ownPrefix = []byte("lavavisor ")

func (t *tally) file(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("count lines: %w", err)
	}
	defer f.Close()
	var src io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("count lines of %s: %w", path, err)
		}
		src = gz
	}
	r := bufio.NewReaderSize(src, 1<<20)
	long := false // in the middle of a line longer than the buffer
	for {
		line, err := r.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if !long {
				t.malformed++
			}
			long = true
			continue
		case err == io.EOF:
			if len(line) > 0 && !long {
				t.line(line) // a last line without newline
			}
			return nil
		case err != nil:
			return fmt.Errorf("count lines of %s: %w", path, err)
		}
		if long {
			long = false
			continue
		}
		t.line(line[:len(line)-1])
	}
}

func (t *tally) line(line []byte) {
	id, seq, ok := parsePayload(line)
	if !ok {
		if bytes.HasPrefix(line, ownPrefix) {
			t.own++
		} else {
			t.malformed++
		}
		return
	}
	// Runs of lines of one child are the rule: skip the map lookup for them.
	c := t.last
	if c == nil || !bytes.Equal(id, t.lastID) {
		c = t.children[string(id)]
		if c == nil {
			c = &childTally{}
			t.children[string(id)] = c
		}
		t.last, t.lastID = c, append(t.lastID[:0], id...)
	}
	c.lines++
	if seq != c.next {
		t.disorder++
	}
	c.next = seq + 1
}

// parsePayload reads the child id and sequence number of a writer's line.
func parsePayload(line []byte) (id []byte, seq int64, ok bool) {
	// A prefix longer than maxPrefix is rather a line merged into another.
	if len(line) < payloadLen || len(line) > payloadLen+maxPrefix {
		return nil, 0, false
	}
	p := line[len(line)-payloadLen:]
	sp := bytes.IndexByte(p, ' ')
	head := sp + 1 + seqDigits + 1
	if sp <= 0 || head > payloadLen || p[head-1] != ' ' || !bytes.Equal(p[head:], padding[:payloadLen-head]) {
		return nil, 0, false
	}
	for _, d := range p[sp+1 : head-1] {
		if d < '0' || d > '9' {
			return nil, 0, false
		}
		seq = seq*10 + int64(d-'0')
	}
	id = p[:sp]
	if len(line) > payloadLen && (!bytes.HasPrefix(line, id) || line[sp] != ' ') {
		return nil, 0, false
	}
	return id, seq, true
}
