package supervisor

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sirupsen/logrus"
	"golang.org/x/term"
)

// A service line is a logrus entry at Info level whose Data holds the string
// fields FieldService and FieldStream. A line longer than OutputOptions.MaxLine is
// split into pieces; every piece after the first also carries FieldContinued=true,
// so a reader joins a piece to the one before it. The first piece looks like any
// other line: it can only be known to be split once the next piece is seen.
const (
	FieldService   = "service"
	FieldStream    = "stream"
	FieldContinued = "continued"
)

// selfName prefixes LavaVisor's own entries in the text format.
const selfName = "lavavisor"

// continuedMark starts the text of a continued piece in the text format.
const continuedMark = "(continued) "

// paletteColor gives the i-th service its colour: services are numbered in the
// order they are first seen, so the colours of a given config.yml are the same
// from one run to the next.
func paletteColor(i int) string {
	palette := [...]string{"32", "33", "34", "35", "36", "92", "93", "94", "95", "96"}
	return palette[i%len(palette)]
}

// lineEncoder appends one service line formatted exactly as its Formatter would
// format the matching entry; it is used by one goroutine, so it may cache.
type lineEncoder interface {
	appendLine(dst, line []byte, continued bool, at time.Time) []byte
}

// blockEncoder is a lineEncoder that also formats many lines in one call,
// sparing a call and a UTF-8 check per line.
type blockEncoder interface {
	// appendBlock appends the lines of d (each ending in '\n', a '\r' before
	// it is a CRLF ending) until dst holds limit bytes; valid tells that d is
	// valid UTF-8. It returns what is left of d and how many lines it formatted.
	appendBlock(dst, d []byte, valid bool, limit int) (_, rest []byte, n int)
}

// validUTF8 is utf8.Valid, faster on the plain ASCII of most logs; valid
// lines joined by '\n' are valid, so a block is checked once, not per line.
func validUTF8(b []byte) bool {
	i := 0
	// 64 bytes a turn, one bounds check for the eight loads: the ASCII of
	// log lines is checked at about twice the speed of 32 bytes a turn.
	for ; i+64 <= len(b); i += 64 {
		w := b[i : i+64 : i+64]
		x := binary.LittleEndian.Uint64(w[0:]) | binary.LittleEndian.Uint64(w[8:]) |
			binary.LittleEndian.Uint64(w[16:]) | binary.LittleEndian.Uint64(w[24:]) |
			binary.LittleEndian.Uint64(w[32:]) | binary.LittleEndian.Uint64(w[40:]) |
			binary.LittleEndian.Uint64(w[48:]) | binary.LittleEndian.Uint64(w[56:])
		if x&0x8080808080808080 != 0 {
			break
		}
	}
	return utf8.Valid(b[i:])
}

// lineFormatter is implemented by the formatters of this package: their service
// lines are formatted without building an entry per line.
type lineFormatter interface {
	newLineEncoder(service, stream string) lineEncoder
}

// IsTerminal tells whether w is a terminal, to decide on colours.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	// SyscallConn rather than Fd: Fd would switch the file to blocking mode.
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	tty := false
	if err := rc.Control(func(fd uintptr) { tty = term.IsTerminal(int(fd)) }); err != nil {
		return false
	}
	return tty
}

// textFormatter writes `<service> | <line>` for service lines and
// `lavavisor | HH:MM:SS LEVEL msg key=value ...` for LavaVisor's own entries, the
// name column padded to the longest name seen.
type textFormatter struct {
	color bool
	width atomic.Int64

	mu     sync.Mutex
	colors map[string]int // palette index by service, in order of first sight
}

// NewTextFormatter returns the human format; color adds ANSI colours (for a
// terminal: see IsTerminal).
func NewTextFormatter(color bool) logrus.Formatter {
	f := &textFormatter{color: color, colors: map[string]int{}}
	f.width.Store(int64(len(selfName)))
	return f
}

// register widens the name column to name and gives name its colour.
func (f *textFormatter) register(name string) {
	for {
		w := f.width.Load()
		if int64(len(name)) <= w || f.width.CompareAndSwap(w, int64(len(name))) {
			break
		}
	}
	f.colorOf(name)
}

func (f *textFormatter) colorOf(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, ok := f.colors[name]
	if !ok {
		i = len(f.colors)
		f.colors[name] = i
	}
	return paletteColor(i)
}

// appendPrefix appends the name column and its separator.
func (f *textFormatter) appendPrefix(dst []byte, name, color string, width int) []byte {
	if f.color && color != "" {
		dst = append(dst, "\x1b["...)
		dst = append(dst, color...)
		dst = append(dst, 'm')
	}
	dst = append(dst, name...)
	for i := len(name); i < width; i++ {
		dst = append(dst, ' ')
	}
	dst = append(dst, " |"...)
	if f.color && color != "" {
		dst = append(dst, "\x1b[0m"...)
	}
	return append(dst, ' ')
}

// appendTextLine appends a service line's text after its prefix.
func appendTextLine(dst, line []byte, continued bool) []byte {
	if continued {
		dst = append(dst, continuedMark...)
	}
	if utf8.Valid(line) {
		dst = append(dst, line...)
	} else {
		dst = append(dst, bytes.ToValidUTF8(line, []byte("\uFFFD"))...)
	}
	return append(dst, '\n')
}

func (f *textFormatter) Format(e *logrus.Entry) ([]byte, error) {
	b := e.Buffer
	if b == nil {
		b = new(bytes.Buffer)
	}
	dst := b.AvailableBuffer()
	if service, continued, ok := serviceLine(e); ok {
		width := max(int(f.width.Load()), len(service))
		dst = f.appendPrefix(dst, service, f.colorOf(service), width)
		dst = appendTextLine(dst, []byte(e.Message), continued)
	} else {
		dst = f.appendEntry(dst, e)
	}
	b.Write(dst)
	return b.Bytes(), nil
}

// levelName is padded to one width so that messages line up.
func levelName(l logrus.Level) string {
	switch l {
	case logrus.TraceLevel:
		return "TRACE"
	case logrus.DebugLevel:
		return "DEBUG"
	case logrus.InfoLevel:
		return "INFO "
	case logrus.WarnLevel:
		return "WARN "
	case logrus.ErrorLevel:
		return "ERROR"
	case logrus.FatalLevel:
		return "FATAL"
	case logrus.PanicLevel:
		return "PANIC"
	}
	return "?????"
}

func levelColor(l logrus.Level) string {
	switch {
	case l >= logrus.DebugLevel:
		return "90"
	case l == logrus.InfoLevel:
		return "36"
	case l == logrus.WarnLevel:
		return "33"
	default:
		return "31"
	}
}

// appendEntry formats one of LavaVisor's own entries.
func (f *textFormatter) appendEntry(dst []byte, e *logrus.Entry) []byte {
	dst = f.appendPrefix(dst, selfName, "", int(f.width.Load()))
	dst = e.Time.AppendFormat(dst, time.TimeOnly)
	dst = append(dst, ' ')
	name := levelName(e.Level)
	if f.color {
		dst = append(dst, "\x1b["+levelColor(e.Level)+"m"...)
		dst = append(dst, name...)
		dst = append(dst, "\x1b[0m"...)
	} else {
		dst = append(dst, name...)
	}
	dst = append(dst, ' ')
	// A message with a newline would break "one event per line".
	if needsMessageQuote(e.Message) {
		dst = strconv.AppendQuote(dst, e.Message)
	} else {
		dst = append(dst, e.Message...)
	}
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		dst = append(dst, ' ')
		dst = append(dst, k...)
		dst = append(dst, '=')
		dst = appendValue(dst, e.Data[k])
	}
	return append(dst, '\n')
}

func needsMessageQuote(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return !utf8.ValidString(s)
}

func appendValue(dst []byte, v any) []byte {
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case error:
		s = v.Error()
	default:
		s = fmt.Sprint(v)
	}
	if !needsQuote(s) {
		return append(dst, s...)
	}
	return strconv.AppendQuote(dst, s)
}

// needsQuote keeps key=value pairs splittable on spaces.
func needsQuote(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			bytes.IndexByte([]byte("-._/@^+:"), c) >= 0) {
			return true
		}
	}
	return false
}

func (f *textFormatter) newLineEncoder(service, _ string) lineEncoder {
	return &textLineEncoder{f: f, service: service, color: f.colorOf(service)}
}

type textLineEncoder struct {
	f       *textFormatter
	service string
	color   string
	width   int
	prefix  []byte
}

func (e *textLineEncoder) appendLine(dst, line []byte, continued bool, _ time.Time) []byte {
	dst = append(dst, e.currentPrefix()...)
	return appendTextLine(dst, line, continued)
}

func (e *textLineEncoder) appendBlock(dst, d []byte, valid bool, limit int) (_, rest []byte, n int) {
	prefix := e.currentPrefix()
	for len(d) > 0 && len(dst) < limit {
		j := bytes.IndexByte(d, '\n')
		dst = append(dst, prefix...)
		switch {
		case j > 0 && d[j-1] == '\r':
			dst = appendTextLine(dst, d[:j-1], false)
		case valid:
			dst = append(dst, d[:j+1]...)
		default:
			dst = appendTextLine(dst, d[:j], false)
		}
		d = d[j+1:]
		n++
	}
	return dst, d, n
}

func (e *textLineEncoder) currentPrefix() []byte {
	// The column widens when a service with a longer name is added.
	if w := max(int(e.f.width.Load()), len(e.service)); w != e.width || e.prefix == nil {
		e.width = w
		e.prefix = e.f.appendPrefix(e.prefix[:0], e.service, e.color, w)
	}
	return e.prefix
}

// serviceLine tells whether e is a service line (see FieldService).
func serviceLine(e *logrus.Entry) (service string, continued, ok bool) {
	service, ok1 := e.Data[FieldService].(string)
	_, ok2 := e.Data[FieldStream].(string)
	continued, _ = e.Data[FieldContinued].(bool)
	return service, continued, ok1 && ok2
}

// jsonFormatter is logrus's JSONFormatter with its default settings; service
// lines take a fast path that produces the same bytes.
type jsonFormatter struct {
	inner logrus.JSONFormatter
}

// NewJSONFormatter returns the machine format: one JSON object per line.
func NewJSONFormatter() logrus.Formatter {
	return &jsonFormatter{}
}

func (f *jsonFormatter) Format(e *logrus.Entry) ([]byte, error) {
	b, err := f.inner.Format(e)
	if err != nil {
		return nil, fmt.Errorf("format log entry as JSON: %w", err)
	}
	return b, nil
}

func (f *jsonFormatter) newLineEncoder(service, stream string) lineEncoder {
	// logrus encodes Data as a map, so keys come sorted.
	tail := append([]byte(`,"`+FieldService+`":`), jsonString(service)...)
	tail = append(tail, `,"`+FieldStream+`":`...)
	tail = append(tail, jsonString(stream)...)
	tail = append(tail, `,"time":"`...)
	return &jsonLineEncoder{
		head:     []byte(`{"level":"info","msg":`),
		headCont: []byte(`{"` + FieldContinued + `":true,"level":"info","msg":`),
		tail:     tail,
		sec:      -1 << 63,
	}
}

type jsonLineEncoder struct {
	head, headCont, tail []byte
	sec                  int64 // the second ts was formatted for
	ts                   []byte
}

func (e *jsonLineEncoder) appendLine(dst, line []byte, continued bool, at time.Time) []byte {
	if continued {
		dst = append(dst, e.headCont...)
	} else {
		dst = append(dst, e.head...)
	}
	dst = appendJSONString(dst, line)
	dst = append(dst, e.tail...)
	// RFC 3339 has whole seconds: format once a second, not once a line.
	if s := at.Unix(); s != e.sec {
		e.sec = s
		e.ts = at.AppendFormat(e.ts[:0], time.RFC3339)
	}
	dst = append(dst, e.ts...)
	return append(dst, "\"}\n"...)
}

func jsonString(s string) []byte {
	return appendJSONString(nil, []byte(s))
}

// jsonSafe tells whether encoding/json (HTML escaping on, as in logrus) copies
// the ASCII byte b as it is.
func jsonSafe(b byte) bool {
	return b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s exactly as encoding/json does with HTML escaping:
// invalid UTF-8 becomes \ufffd, so the output is always valid JSON.
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// Most log text is plain ASCII: skip it eight bytes at a time.
		for ; i+8 <= len(s); i += 8 {
			const ones, highs = 0x0101010101010101, 0x8080808080808080
			x := binary.LittleEndian.Uint64(s[i:])
			q, bs, lt, gt, amp := x^'"'*ones, x^'\\'*ones, x^'<'*ones, x^'>'*ones, x^'&'*ones
			// "Bit Twiddling Hacks": hasless(x, 0x20) and haszero of each.
			bad := x | (x-0x20*ones)&^x |
				(q-ones)&^q | (bs-ones)&^bs | (lt-ones)&^lt | (gt-ones)&^gt | (amp-ones)&^amp
			if bad&highs != 0 {
				break
			}
		}
		if i == len(s) {
			break
		}
		b := s[i]
		if b < utf8.RuneSelf {
			if jsonSafe(b) {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRune(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
