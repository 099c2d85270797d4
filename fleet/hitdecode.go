package fleet

import (
	"encoding/json"
	"unicode/utf8"
)

// A reader of the hit stream decodes every hit, and encoding/json's
// reflection was most of a client's CPU per hit. decodeHit and
// decodeBatch read what Encode writes, and any JSON encoding/json reads
// the same way into a Hit, without reflection. They give up (ok false) on
// anything they are not sure to read as encoding/json does: an unknown,
// repeated or differently cased key, a number with a fraction or an
// exponent, a surrogate escape, invalid UTF-8, deep nesting. The caller
// then decodes with encoding/json, so that every error, and every value
// of an unusual message, is encoding/json's. A test holds the two to the
// same values over random hits, and a fuzz target holds that whatever
// these accept, encoding/json accepts alike.

// decodeHit decodes data, one hit, into h, which must be zero.
func decodeHit(data []byte, h *Hit) bool {
	r := jsonReader{b: data}
	r.hit(h)
	r.end()
	return !r.bad
}

// decodeBatch appends the hits of data, a HitBatch, to dst, each of
// version HitVersion, with its Part. On false dst's spare room holds
// garbage.
func decodeBatch(data []byte, dst []Hit) ([]Hit, bool) {
	// The hits of a batch share their tracepoint, process, file,
	// function, frames and variables' names and types: each such string
	// is made once for the batch, not once a hit, which spares a reader
	// most of its allocations, and its garbage collector their
	// collection.
	r := jsonReader{b: data, interned: make(map[string]string, 64)}
	n := len(dst)
	var seen uint64
	for key, first := []byte(nil), true; r.field(&key, &first); {
		switch string(key) {
		case "v":
			r.once(&seen, 0)
			if r.int() != BatchVersion {
				r.bad = true
			}
		case "hits":
			r.once(&seen, 1)
			if !r.begin('[') {
				r.bad = true
				break
			}
			for more := !r.end1(']'); more && !r.bad; more = r.sep(']') {
				if len(dst) < cap(dst) {
					dst = dst[:len(dst)+1]
					dst[len(dst)-1] = Hit{}
				} else {
					dst = append(dst, Hit{})
				}
				h := &dst[len(dst)-1]
				r.hit(h)
				if h.V != HitVersion {
					r.bad = true
				}
				h.Part = len(dst) - 1 - n
			}
		default:
			r.bad = true
		}
	}
	r.end()
	if len(dst) == n || seen != 3 {
		r.bad = true
	}
	return dst, !r.bad
}

// jsonReader reads JSON from b at i. bad is sticky: once set, every read
// returns a zero value and the loops end.
type jsonReader struct {
	b     []byte
	i     int
	depth int
	bad   bool
	// interned are the strings read so far, reused by str for the same
	// text; nil reads each anew. See decodeBatch.
	interned map[string]string
}

// The strings a batch's reading keeps to reuse: the short ones, and so
// many of them as its hits' shared names, types, files and functions take.
const (
	internMaxLen = 128
	internMax    = 512
)

func (r *jsonReader) space() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// end requires nothing but space after the value read.
func (r *jsonReader) end() {
	r.space()
	if r.i != len(r.b) {
		r.bad = true
	}
}

// begin reads c, '{' or '[', and counts the nesting.
func (r *jsonReader) begin(c byte) bool {
	r.space()
	if r.bad || r.i >= len(r.b) || r.b[r.i] != c {
		return false
	}
	r.i++
	r.depth++
	if r.depth > 64 {
		r.bad = true
		return false
	}
	return true
}

// end1 reads close if it comes next, ending a container.
func (r *jsonReader) end1(close byte) bool {
	r.space()
	if r.i < len(r.b) && r.b[r.i] == close {
		r.i++
		r.depth--
		return true
	}
	return false
}

// sep reads a ',' (true: another element) or close (false).
func (r *jsonReader) sep(close byte) bool {
	if r.bad {
		return false
	}
	if r.end1(close) {
		return false
	}
	if r.i < len(r.b) && r.b[r.i] == ',' {
		r.i++
		return true
	}
	r.bad = true
	return false
}

// field reads the next key of an object and its ':', opening the object
// when *first; false at its end or on an error.
func (r *jsonReader) field(key *[]byte, first *bool) bool {
	if *first {
		*first = false
		if !r.begin('{') {
			r.bad = true
			return false
		}
		if r.end1('}') {
			return false
		}
	} else if !r.sep('}') {
		return false
	}
	r.space()
	start, end, escaped := r.token()
	if r.bad || escaped {
		r.bad = true
		return false
	}
	*key = r.b[start+1 : end-1]
	r.space()
	if r.i >= len(r.b) || r.b[r.i] != ':' {
		r.bad = true
		return false
	}
	r.i++
	return true
}

// once marks key number k seen, and fails on a key seen twice: for
// those encoding/json merges the two values.
func (r *jsonReader) once(seen *uint64, k uint) {
	if *seen&(1<<k) != 0 {
		r.bad = true
	}
	*seen |= 1 << k
}

// null reads a null if one comes next: encoding/json leaves the field
// as it was, zero.
func (r *jsonReader) null() bool {
	r.space()
	if len(r.b)-r.i >= 4 && string(r.b[r.i:r.i+4]) == "null" {
		r.i += 4
		return true
	}
	return false
}

// token reads a string token, returning where it starts and ends
// (quotes included), and whether it holds an escape or invalid UTF-8:
// whether its text is other than its bytes.
func (r *jsonReader) token() (start, end int, escaped bool) {
	start, end, escaped, wide := r.token8()
	if !r.bad && wide && !escaped && !utf8.Valid(r.b[start+1:end-1]) {
		escaped = true
	}
	return start, end, escaped
}

// token8 is token, saying whether there are bytes that are not ASCII
// instead of checking them.
func (r *jsonReader) token8() (start, end int, escaped, wide bool) {
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		r.bad = true
		return
	}
	start = r.i
	for i := r.i + 1; i < len(r.b); i++ {
		switch c := r.b[i]; {
		case c == '"':
			r.i = i + 1
			return start, r.i, escaped, wide
		case c == '\\':
			escaped = true
			i++
		case c < 0x20:
			r.bad = true
			return
		case c >= utf8.RuneSelf:
			wide = true
		}
	}
	r.bad = true
	return
}

func (r *jsonReader) str() string {
	if r.null() {
		return ""
	}
	start, end, escaped := r.token()
	if r.bad {
		return ""
	}
	if !escaped {
		t := r.b[start+1 : end-1]
		if r.interned == nil || len(t) > internMaxLen {
			return string(t)
		}
		if s, ok := r.interned[string(t)]; ok {
			return s
		}
		s := string(t)
		if len(r.interned) < internMax {
			r.interned[s] = s
		}
		return s
	}
	// Rare in hits but for "<…>" marks, which Encode escapes: read
	// exactly as encoding/json reads it, escapes and invalid UTF-8 alike.
	if s, ok := unquote(r.b[start+1 : end-1]); ok {
		return s
	}
	var s string
	if err := json.Unmarshal(r.b[start:end], &s); err != nil {
		r.bad = true
	}
	return s
}

// unquote reads the text of a string token between its quotes, but for
// invalid UTF-8 and surrogate escapes, whose reading it leaves to
// encoding/json (ok false).
func unquote(t []byte) (string, bool) {
	b := make([]byte, 0, len(t))
	for i := 0; i < len(t); {
		c := t[i]
		switch {
		case c == '\\':
			if i+1 >= len(t) {
				return "", false
			}
			switch e := t[i+1]; e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				if i+6 > len(t) {
					return "", false
				}
				var v rune
				for _, h := range t[i+2 : i+6] {
					switch {
					case '0' <= h && h <= '9':
						h -= '0'
					case 'a' <= h && h <= 'f':
						h -= 'a' - 10
					case 'A' <= h && h <= 'F':
						h -= 'A' - 10
					default:
						return "", false
					}
					v = v<<4 | rune(h)
				}
				if 0xd800 <= v && v < 0xe000 {
					return "", false
				}
				b = utf8.AppendRune(b, v)
				i += 6
				continue
			default:
				return "", false
			}
			i += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			ru, n := utf8.DecodeRune(t[i:])
			if ru == utf8.RuneError && n == 1 {
				return "", false
			}
			b = append(b, t[i:i+n]...)
			i += n
		}
	}
	return string(b), true
}

// number reads a JSON number with no fraction or exponent (what
// encoding/json reads into an integer): its sign and magnitude, which
// holds up to 1<<64-1 (ok false beyond).
func (r *jsonReader) number() (neg bool, mag uint64, ok bool) {
	r.space()
	if r.i < len(r.b) && r.b[r.i] == '-' {
		neg = true
		r.i++
	}
	d := r.i
	for ; r.i < len(r.b) && '0' <= r.b[r.i] && r.b[r.i] <= '9'; r.i++ {
		c := uint64(r.b[r.i] - '0')
		if mag > (1<<64-1-c)/10 {
			return neg, 0, false
		}
		mag = mag*10 + c
	}
	if r.i == d || r.b[d] == '0' && r.i-d > 1 || r.i < len(r.b) && (r.b[r.i] == '.' || r.b[r.i] == 'e' || r.b[r.i] == 'E') {
		return neg, 0, false
	}
	return neg, mag, true
}

func (r *jsonReader) int() int64 {
	if r.null() {
		return 0
	}
	neg, mag, ok := r.number()
	switch {
	case !ok || !neg && mag > 1<<63-1 || neg && mag > 1<<63:
		r.bad = true
		return 0
	case neg:
		return int64(-mag)
	}
	return int64(mag)
}

func (r *jsonReader) uint() uint64 {
	if r.null() {
		return 0
	}
	neg, mag, ok := r.number()
	if !ok || neg {
		// encoding/json refuses even -0 for an unsigned field.
		r.bad = true
		return 0
	}
	return mag
}

func (r *jsonReader) bool() bool {
	if r.null() {
		return false
	}
	switch {
	case len(r.b)-r.i >= 4 && string(r.b[r.i:r.i+4]) == "true":
		r.i += 4
		return true
	case len(r.b)-r.i >= 5 && string(r.b[r.i:r.i+5]) == "false":
		r.i += 5
		return false
	}
	r.bad = true
	return false
}

func (r *jsonReader) hit(h *Hit) {
	var seen uint64
	for key, first := []byte(nil), true; r.field(&key, &first); {
		switch string(key) {
		case "v":
			r.once(&seen, 0)
			h.V = int(r.int())
		case "tracepoint":
			r.once(&seen, 1)
			h.Tracepoint = r.str()
		case "host":
			r.once(&seen, 2)
			h.Host = r.str()
		case "pid":
			r.once(&seen, 3)
			h.Pid = int(r.int())
		case "process":
			r.once(&seen, 4)
			r.process(&h.Process)
		case "goroutine":
			r.once(&seen, 5)
			h.Goroutine = r.int()
		case "time":
			r.once(&seen, 6)
			h.Time = r.int()
		case "clock":
			r.once(&seen, 7)
			if !r.null() {
				h.Clock = new(ClockReading)
				r.clock(h.Clock)
			}
		case "file":
			r.once(&seen, 8)
			h.File = r.str()
		case "line":
			r.once(&seen, 9)
			h.Line = int(r.int())
		case "function":
			r.once(&seen, 10)
			h.Function = r.str()
		case "args":
			r.once(&seen, 11)
			h.Args = r.variables()
		case "locals":
			r.once(&seen, 12)
			h.Locals = r.variables()
		case "exprs":
			r.once(&seen, 13)
			h.Exprs = r.variables()
		case "stack":
			r.once(&seen, 14)
			h.Stack = r.frames()
		case "message":
			r.once(&seen, 15)
			h.Message = r.str()
		case "dropped":
			r.once(&seen, 16)
			h.Dropped = r.uint()
		case "errors":
			r.once(&seen, 17)
			h.Errors = r.strs()
		case "trace":
			r.once(&seen, 18)
			if !r.null() {
				h.Trace = new(TraceContext)
				r.trace(h.Trace)
			}
		case "seq":
			r.once(&seen, 19)
			h.Seq = r.uint()
		case "part":
			r.once(&seen, 20)
			h.Part = int(r.int())
		case "serverTime":
			r.once(&seen, 21)
			if r.null() {
				break
			}
			start, end, _ := r.token()
			if r.bad || h.ServerTime.UnmarshalJSON(r.b[start:end]) != nil {
				r.bad = true
			}
		default:
			r.bad = true
		}
	}
}

func (r *jsonReader) process(p *ProcessRef) {
	if r.null() {
		return
	}
	var seen uint64
	for key, first := []byte(nil), true; r.field(&key, &first); {
		switch string(key) {
		case "exe":
			r.once(&seen, 0)
			p.Exe = r.str()
		case "module":
			r.once(&seen, 1)
			p.Module = r.str()
		case "mainPackage":
			r.once(&seen, 2)
			p.MainPackage = r.str()
		case "revision":
			r.once(&seen, 3)
			p.Revision = r.str()
		case "modified":
			r.once(&seen, 4)
			p.Modified = r.bool()
		case "build":
			r.once(&seen, 5)
			p.Build = r.str()
		default:
			r.bad = true
		}
	}
}

func (r *jsonReader) clock(c *ClockReading) {
	var seen uint64
	for key, first := []byte(nil), true; r.field(&key, &first); {
		switch string(key) {
		case "offset":
			r.once(&seen, 0)
			c.Offset = r.int()
		case "bound":
			r.once(&seen, 1)
			c.Bound = r.int()
		default:
			r.bad = true
		}
	}
}

func (r *jsonReader) trace(t *TraceContext) {
	var seen uint64
	for key, first := []byte(nil), true; r.field(&key, &first); {
		switch string(key) {
		case "traceId":
			r.once(&seen, 0)
			t.TraceID = r.str()
		case "spanId":
			r.once(&seen, 1)
			t.SpanID = r.str()
		case "parent":
			r.once(&seen, 2)
			t.Parent = r.str()
		case "remote":
			r.once(&seen, 3)
			t.Remote = r.bool()
		default:
			r.bad = true
		}
	}
}

// variables reads a list of variables: nil for null, empty for [], as
// encoding/json does.
func (r *jsonReader) variables() []Variable {
	if r.null() {
		return nil
	}
	if !r.begin('[') {
		r.bad = true
		return nil
	}
	vs := []Variable{}
	for more := !r.end1(']'); more && !r.bad; more = r.sep(']') {
		vs = append(vs, Variable{})
		r.variable(&vs[len(vs)-1])
	}
	return vs
}

func (r *jsonReader) variable(v *Variable) {
	if r.null() {
		return
	}
	var seen uint64
	for key, first := []byte(nil), true; r.field(&key, &first); {
		switch string(key) {
		case "name":
			r.once(&seen, 0)
			v.Name = r.str()
		case "type":
			r.once(&seen, 1)
			v.Type = r.str()
		case "value":
			r.once(&seen, 2)
			v.Value = r.str()
		case "children":
			r.once(&seen, 3)
			v.Children = r.variables()
		case "unreadable":
			r.once(&seen, 4)
			v.Unreadable = r.str()
		default:
			r.bad = true
		}
	}
}

func (r *jsonReader) frames() []Frame {
	if r.null() {
		return nil
	}
	if !r.begin('[') {
		r.bad = true
		return nil
	}
	fs := []Frame{}
	for more := !r.end1(']'); more && !r.bad; more = r.sep(']') {
		fs = append(fs, Frame{})
		f := &fs[len(fs)-1]
		if r.null() {
			continue
		}
		var seen uint64
		for key, first := []byte(nil), true; r.field(&key, &first); {
			switch string(key) {
			case "function":
				r.once(&seen, 0)
				f.Function = r.str()
			case "file":
				r.once(&seen, 1)
				f.File = r.str()
			case "line":
				r.once(&seen, 2)
				f.Line = int(r.int())
			case "pc":
				r.once(&seen, 3)
				f.PC = r.uint()
			default:
				r.bad = true
			}
		}
	}
	return fs
}

func (r *jsonReader) strs() []string {
	if r.null() {
		return nil
	}
	if !r.begin('[') {
		r.bad = true
		return nil
	}
	ss := []string{}
	for more := !r.end1(']'); more && !r.bad; more = r.sep(']') {
		ss = append(ss, r.str())
	}
	return ss
}
