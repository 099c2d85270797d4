package dlvvalue

import (
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/go-delve/delve/service/api"
)

// printValue prints v on one line with its types shortened, as Delve's
// printer does (api.Variable.StringWithOptions with PrettyShortenType), for
// the kinds a hit shows most: numbers, booleans, strings, and the pointers,
// structs, arrays, slices and interfaces made of them. Delve's printer
// formats through fmt and a buffer for every value, and was a fifth of
// what decoding a hit cost. ok is false where v holds anything else (a
// map, a channel, a function, a value shown by its address): Delve's
// printer prints it. Its rules are Delve's (service/api/prettyprint.go),
// and the eBPF backend's tests hold the two to the same output.
func printValue(v *api.Variable) (s string, ok bool) {
	bp := printBufs.Get().(*[]byte)
	defer putPrintBuf(bp)
	b, ok := appendValue((*bp)[:0], v, true, true)
	*bp = b
	if !ok {
		return "", false
	}
	return string(b), true
}

// printBufs hold printValue's buffers: the string printed is then its one
// allocation.
var printBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// putPrintBuf gives a buffer back, but for a large one: a long value
// printed now and then must not hold its memory.
func putPrintBuf(bp *[]byte) {
	if cap(*bp) <= 1<<16 {
		printBufs.Put(bp)
	}
}

// appendValue appends v to b as api.Variable.writeTo writes it with
// PrettyShortenType, no newlines and no format string: top and withType are
// its prettyTop and prettyIncludeType.
func appendValue(b []byte, v *api.Variable, top, withType bool) ([]byte, bool) {
	if v.Unreadable != "" {
		b = append(b, "(unreadable "...)
		b = append(b, v.Unreadable...)
		b = append(b, ")"...)
		return b, true
	}
	if !top && v.Addr == 0 && v.Value == "" {
		if withType && v.Type != "void" {
			b = append(b, shortenType(v.Type)...)
			b = append(b, " nil"...)
		} else {
			b = append(b, "nil"...)
		}
		return b, true
	}
	switch v.Kind {
	case reflect.Slice:
		if withType {
			b = append(b, shortenType(v.Type)...)
			b = append(b, " len: "...)
			b = strconv.AppendInt(b, v.Len, 10)
			b = append(b, ", cap: "...)
			if v.Cap == capDropped {
				b = append(b, capDroppedText...)
			} else {
				b = strconv.AppendInt(b, v.Cap, 10)
			}
			b = append(b, ", "...)
		}
		if v.Base == 0 && len(v.Children) == 0 {
			b = append(b, "nil"...)
			return b, true
		}
		return appendElements(b, v)
	case reflect.Array:
		if withType {
			b = append(b, shortenType(v.Type)...)
			b = append(b, " "...)
		}
		return appendElements(b, v)
	case reflect.Ptr:
		if v.Type == "" || len(v.Children) == 0 {
			b = append(b, "nil"...)
			return b, true
		}
		if v.Children[0].OnlyAddr && v.Children[0].Addr != 0 {
			return b, false
		}
		b = append(b, "*"...)
		return appendValue(b, &v.Children[0], false, withType)
	case reflect.Struct:
		if v.Value != "" {
			return b, false
		}
		return appendStruct(b, v, withType)
	case reflect.Interface:
		if v.Addr == 0 || len(v.Children) == 0 {
			return b, false
		}
		data := &v.Children[0]
		if withType {
			if data.Kind == reflect.Invalid {
				b = append(b, shortenType(v.Type)...)
				b = append(b, " "...)
				if data.Addr == 0 {
					b = append(b, "nil"...)
					return b, true
				}
			} else {
				b = append(b, shortenType(v.Type)...)
				b = append(b, '(')
				b = append(b, shortenType(data.Type)...)
				b = append(b, ") "...)
			}
		}
		if data.Kind == reflect.Ptr {
			switch {
			case len(data.Children) == 0:
				b = append(b, "..."...)
				return b, true
			case data.Children[0].Addr == 0:
				b = append(b, "nil"...)
				return b, true
			case data.Children[0].OnlyAddr:
				return b, false
			}
		} else if data.OnlyAddr {
			return b, false
		}
		return appendValue(b, data, false, !withType)
	case reflect.Map, reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
		return b, false
	}
	// writeBasicType.
	if v.Value == "" && v.Kind != reflect.String {
		b = append(b, "(unknown "...)
		b = append(b, v.Kind.String()...)
		b = append(b, ")"...)
		return b, true
	}
	switch v.Kind {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		b = append(b, v.Value...)
	case reflect.String:
		b = appendQuoted(b, v)
	}
	return b, true
}

// checkPrinter has every value printValue prints printed by Delve's
// printer too, and a difference panic: tests set it (CheckPrinter).
var checkPrinter atomic.Bool

// CheckPrinter sets whether the values printed without Delve's printer are
// checked against it, for tests: a difference panics.
func CheckPrinter(on bool) { checkPrinter.Store(on) }

// quoteString is how Delve prints a string: quoted, with how much of it
// was not loaded.
func quoteString(v *api.Variable) string {
	bp := printBufs.Get().(*[]byte)
	defer putPrintBuf(bp)
	*bp = appendQuoted((*bp)[:0], v)
	return string(*bp)
}

// appendQuoted appends the string v to b as quoteString prints it.
func appendQuoted(b []byte, v *api.Variable) []byte {
	s := v.Value
	if len(s) != int(v.Len) {
		s += "...+" + strconv.Itoa(int(v.Len)-len(s)) + " more"
	}
	return strconv.AppendQuote(b, s)
}

// appendStruct is api.Variable.writeStructTo without newlines.
func appendStruct(b []byte, v *api.Variable, withType bool) ([]byte, bool) {
	if int(v.Len) != len(v.Children) && len(v.Children) == 0 {
		return b, false // printed as its address
	}
	if withType {
		b = append(b, shortenType(v.Type)...)
		b = append(b, " "...)
	}
	b = append(b, "{"...)
	for i := range v.Children {
		b = append(b, v.Children[i].Name...)
		b = append(b, ": "...)
		var ok bool
		if b, ok = appendValue(b, &v.Children[i], false, true); !ok {
			return b, false
		}
		if i != len(v.Children)-1 {
			b = append(b, ", "...)
		}
	}
	if len(v.Children) != int(v.Len) {
		b = append(b, ",...+"...)
		b = strconv.AppendInt(b, int64(int(v.Len)-len(v.Children)), 10)
		b = append(b, " more"...)
	}
	b = append(b, "}"...)
	return b, true
}

// appendElements is api.Variable.writeSliceOrArrayTo without newlines.
func appendElements(b []byte, v *api.Variable) ([]byte, bool) {
	b = append(b, "["...)
	for i := range v.Children {
		var ok bool
		if b, ok = appendValue(b, &v.Children[i], false, false); !ok {
			return b, false
		}
		if i != len(v.Children)-1 {
			b = append(b, ","...)
		}
	}
	if len(v.Children) != int(v.Len) {
		if len(v.Children) != 0 {
			b = append(b, ",...+"...)
			b = strconv.AppendInt(b, int64(int(v.Len)-len(v.Children)), 10)
			b = append(b, " more"...)
		} else {
			b = append(b, "..."...)
		}
	}
	b = append(b, "]"...)
	return b, true
}

// shortTypes remembers api.ShortenType's answers: a hit names the same few
// types over and over, and shortening one parses it.
var shortTypes sync.Map

// shortTypesCount bounds shortTypes, which a program's types bound anyway.
var shortTypesCount atomic.Int64

const maxShortTypes = 1 << 14

// ShortenType is api.ShortenType, remembered: a backend naming a value's
// type itself (an unreadable one) asks it for each hit.
func ShortenType(t string) string { return shortenType(t) }

// shortenType is api.ShortenType, remembered.
func shortenType(t string) string {
	if s, ok := shortTypes.Load(t); ok {
		return s.(string)
	}
	s := api.ShortenType(t)
	if shortTypesCount.Load() < maxShortTypes {
		if _, loaded := shortTypes.LoadOrStore(t, s); !loaded {
			shortTypesCount.Add(1)
		}
	}
	return s
}
