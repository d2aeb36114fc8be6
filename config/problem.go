package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a config, located by file and line, or by the
// flag that gave the value.
type Problem struct {
	File string // as given to Load or Parse; "" for a Config built in code
	Line int    // 0 when the key is not in the file
	Flag string // "--stop-signal" when a flag or env value is at fault
	Key  string // key path, such as services[1].name
	Msg  string
}

// String formats p as "<file>:<line>: <key path>: <what is wrong>", or
// "<flag>: <what is wrong>".
func (p Problem) String() string {
	var b strings.Builder
	switch {
	case p.Flag != "":
		b.WriteString(p.Flag + ": ")
	case p.File != "":
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
	}
	if p.Flag == "" && p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error holds every problem found in a config, flags first, then in line order.
type Error struct {
	Problems []Problem
}

// Error prints one problem per line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func newError(ps []Problem) error {
	if len(ps) == 0 {
		return nil
	}
	sort.SliceStable(ps, func(i, j int) bool { return rank(ps[i]) < rank(ps[j]) })
	return &Error{Problems: ps}
}

// rank orders problems as a reader fixes them: flags, then the file top to
// bottom, then what has no line.
func rank(p Problem) int {
	switch {
	case p.Flag != "":
		return -1
	case p.Line == 0:
		return int(^uint(0) >> 1)
	}
	return p.Line
}

// sources remembers where the values of a Config came from.
type sources struct {
	file  string            // file name for messages
	lines map[string]int    // key path -> line of the key, null values included
	given map[string]bool   // key path -> a non-null value was given in the file
	flags map[string]string // key path -> flag that overrode it
	// requireServices is false when the caller asked to ignore or allow an
	// empty services list.
	requireServices bool
}

func newSources(file string) *sources {
	return &sources{
		file:            file,
		lines:           map[string]int{},
		given:           map[string]bool{},
		flags:           map[string]string{},
		requireServices: true,
	}
}

// at locates key: the flag that set it or the value it is nested in (pod's
// --health-exec sets health.exec, whose exec[0] can be wrong), else the nearest
// line of it or of the keys it is nested in.
func (s *sources) at(key string) Problem {
	p := Problem{File: s.file, Key: key}
	for k := key; k != ""; k = parentKey(k) {
		if f, ok := s.flags[k]; ok {
			p.Flag = f
			return p
		}
	}
	p.Line = s.lineOf(key)
	return p
}

// parentKey is the key that key is nested in, "" at the top.
func parentKey(key string) string {
	if i := strings.LastIndexAny(key, ".["); i > 0 {
		return key[:i]
	}
	return ""
}

func (s *sources) lineOf(key string) int {
	for ; key != ""; key = parentKey(key) {
		if l, ok := s.lines[key]; ok {
			return l
		}
	}
	return 0
}
