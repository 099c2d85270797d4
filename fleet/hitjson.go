package fleet

import (
	"strconv"
	"unicode/utf8"
)

// appendJSON appends h as encoding/json marshals it, byte for byte (a test
// holds the two to it), without reflection: an agent encodes every hit it
// publishes, and encoding/json's reflection was a tenth of its CPU per hit.
// A field added to Hit, or to a type in it, must be added here too: the
// test fails until it is.
//
// c, if not nil, holds the JSON of the process and frames of hits encoded
// before, to copy where h has the same (see hitCache).
func (h *Hit) appendJSON(b []byte, c *hitCache) []byte {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(h.V), 10)
	b = append(b, `,"tracepoint":`...)
	b = appendJSONString(b, h.Tracepoint)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, h.Host)
	b = append(b, `,"pid":`...)
	b = strconv.AppendInt(b, int64(h.Pid), 10)
	b = append(b, `,"process":`...)
	b = c.process(b, &h.Process)
	b = append(b, `,"goroutine":`...)
	b = strconv.AppendInt(b, h.Goroutine, 10)
	b = append(b, `,"time":`...)
	b = strconv.AppendInt(b, h.Time, 10)
	if h.Clock != nil {
		b = append(b, `,"clock":{"offset":`...)
		b = strconv.AppendInt(b, h.Clock.Offset, 10)
		b = append(b, `,"bound":`...)
		b = strconv.AppendInt(b, h.Clock.Bound, 10)
		b = append(b, '}')
	}
	b = append(b, `,"file":`...)
	b = appendJSONString(b, h.File)
	b = append(b, `,"line":`...)
	b = strconv.AppendInt(b, int64(h.Line), 10)
	b = append(b, `,"function":`...)
	b = appendJSONString(b, h.Function)
	b = append(b, `,"args":`...)
	b = appendVariables(b, h.Args)
	b = append(b, `,"locals":`...)
	b = appendVariables(b, h.Locals)
	if len(h.Exprs) > 0 {
		b = append(b, `,"exprs":`...)
		b = appendVariables(b, h.Exprs)
	}
	b = append(b, `,"stack":`...)
	if h.Stack == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range h.Stack {
			if i > 0 {
				b = append(b, ',')
			}
			b = c.frame(b, i, &h.Stack[i])
		}
		b = append(b, ']')
	}
	b = appendOptString(b, `,"message":`, h.Message)
	if h.Dropped != 0 {
		b = append(b, `,"dropped":`...)
		b = strconv.AppendUint(b, h.Dropped, 10)
	}
	if len(h.Errors) > 0 {
		b = append(b, `,"errors":[`...)
		for i, e := range h.Errors {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, e)
		}
		b = append(b, ']')
	}
	if t := h.Trace; t != nil {
		b = append(b, `,"trace":{"traceId":`...)
		b = appendJSONString(b, t.TraceID)
		b = append(b, `,"spanId":`...)
		b = appendJSONString(b, t.SpanID)
		b = appendOptString(b, `,"parent":`, t.Parent)
		if t.Remote {
			b = append(b, `,"remote":true`...)
		}
		b = append(b, '}')
	}
	if h.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, h.Seq, 10)
	}
	if h.Part != 0 {
		b = append(b, `,"part":`...)
		b = strconv.AppendInt(b, int64(h.Part), 10)
	}
	if !h.ServerTime.IsZero() {
		st, err := h.ServerTime.MarshalJSON()
		if err != nil {
			return nil // as encoding/json fails: Encode says so
		}
		b = append(b, `,"serverTime":`...)
		b = append(b, st...)
	}
	return append(b, '}')
}

// hitCache keeps the JSON of the process and of each frame (by depth) of
// the hits encoded last: an agent's hits of one line come from a few
// processes, mostly with the same frames, and their paths and names are
// most of a hit's bytes. On make bench's hot loop, 800 of a hit's 1,100
// bytes, and most of the time to encode it. A nil hitCache keeps nothing.
type hitCache struct {
	proc     ProcessRef
	procJSON []byte // nil: none yet
	frames   []frameJSON
}

// frameJSON is a frame and its JSON.
type frameJSON struct {
	f    Frame
	json []byte
}

// maxCachedFrames bounds the frames a hitCache keeps (the default capture
// has 8).
const maxCachedFrames = 32

// process appends p's JSON, from c if c encoded the same process last.
func (c *hitCache) process(b []byte, p *ProcessRef) []byte {
	if c == nil {
		return appendProcess(b, p)
	}
	if c.procJSON == nil || c.proc != *p {
		c.proc = *p
		c.procJSON = appendProcess(c.procJSON[:0], p)
	}
	return append(b, c.procJSON...)
}

// frame appends f's JSON, from c if the frame c encoded last at depth i
// is the same.
func (c *hitCache) frame(b []byte, i int, f *Frame) []byte {
	if c == nil || i >= maxCachedFrames {
		return appendFrame(b, f)
	}
	if i >= len(c.frames) {
		c.frames = append(c.frames, frameJSON{})
	}
	e := &c.frames[i]
	if e.json == nil || e.f != *f {
		e.f = *f
		e.json = appendFrame(e.json[:0], f)
	}
	return append(b, e.json...)
}

// appendProcess appends p as encoding/json marshals a ProcessRef.
func appendProcess(b []byte, p *ProcessRef) []byte {
	b = append(b, `{"exe":`...)
	b = appendJSONString(b, p.Exe)
	b = appendOptString(b, `,"module":`, p.Module)
	b = appendOptString(b, `,"mainPackage":`, p.MainPackage)
	b = appendOptString(b, `,"revision":`, p.Revision)
	if p.Modified {
		b = append(b, `,"modified":true`...)
	}
	b = appendOptString(b, `,"build":`, p.Build)
	return append(b, '}')
}

// appendFrame appends f as encoding/json marshals a Frame.
func appendFrame(b []byte, f *Frame) []byte {
	b = append(b, `{"function":`...)
	b = appendJSONString(b, f.Function)
	b = append(b, `,"file":`...)
	b = appendJSONString(b, f.File)
	b = append(b, `,"line":`...)
	b = strconv.AppendInt(b, int64(f.Line), 10)
	b = append(b, `,"pc":`...)
	b = strconv.AppendUint(b, f.PC, 10)
	return append(b, '}')
}

// appendVariables appends vs as encoding/json marshals a []Variable.
func appendVariables(b []byte, vs []Variable) []byte {
	if vs == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range vs {
		v := &vs[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendJSONString(b, v.Name)
		b = append(b, `,"type":`...)
		b = appendJSONString(b, v.Type)
		b = append(b, `,"value":`...)
		b = appendJSONString(b, v.Value)
		if len(v.Children) > 0 {
			b = append(b, `,"children":`...)
			b = appendVariables(b, v.Children)
		}
		b = appendOptString(b, `,"unreadable":`, v.Unreadable)
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendOptString appends a string field with omitempty: key and s, if s
// is not empty.
func appendOptString(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendJSONString(append(b, key...), s)
}

// plainJSON says which ASCII bytes appendJSONString copies as they are: one
// look-up a byte, where six comparisons were a twentieth of the agent's CPU
// per hit (the paths and names of a hit's process and frames).
// A byte past ASCII is not plain: it starts a rune to check.
var plainJSON = func() (t [256]bool) {
	for c := range utf8.RuneSelf {
		t[c] = c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendJSONString appends s quoted as encoding/json quotes a string: HTML's
// <, > and & escaped, invalid UTF-8 as U+FFFD, and U+2028 and U+2029
// escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		for i < len(s) && plainJSON[s[i]] {
			i++
		}
		if i == len(s) {
			break
		}
		if c := s[i]; c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
