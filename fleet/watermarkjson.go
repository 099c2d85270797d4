package fleet

import (
	"strconv"
	"time"
)

// appendJSON appends w as encoding/json marshals it, byte for byte (a test
// holds the two to it), without reflection: an agent encodes a watermark
// 20 times a second for 2 s after each hit, and encoding/json's reflection
// was most of what a watermark cost it. A field added to Watermark must be
// added here too: the test fails until it is.
func (w *Watermark) appendJSON(b []byte) []byte {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(w.V), 10)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, w.Host)
	b = append(b, `,"time":`...)
	b = strconv.AppendInt(b, w.Time, 10)
	b = append(b, `,"lag":`...)
	b = appendJSONString(b, time.Duration(w.Lag).String())
	if w.Clock != nil {
		b = append(b, `,"clock":{"offset":`...)
		b = strconv.AppendInt(b, w.Clock.Offset, 10)
		b = append(b, `,"bound":`...)
		b = strconv.AppendInt(b, w.Clock.Bound, 10)
		b = append(b, '}')
	}
	if w.Final {
		b = append(b, `,"final":true`...)
	}
	if w.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, w.Seq, 10)
	}
	if !w.ServerTime.IsZero() {
		t, err := w.ServerTime.MarshalJSON()
		if err != nil {
			return nil // a year encoding/json refuses too: marshal panics
		}
		b = append(b, `,"serverTime":`...)
		b = append(b, t...)
	}
	return append(b, '}')
}
