package dlvvalue

import (
	"reflect"
	"strconv"
	"strings"
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
	var b strings.Builder
	if !writeValue(&b, v, true, true) {
		return "", false
	}
	return b.String(), true
}

// writeValue is api.Variable.writeTo with PrettyShortenType, no newlines
// and no format string: top and withType are its prettyTop and
// prettyIncludeType.
func writeValue(b *strings.Builder, v *api.Variable, top, withType bool) bool {
	if v.Unreadable != "" {
		b.WriteString("(unreadable ")
		b.WriteString(v.Unreadable)
		b.WriteString(")")
		return true
	}
	if !top && v.Addr == 0 && v.Value == "" {
		if withType && v.Type != "void" {
			b.WriteString(shortenType(v.Type))
			b.WriteString(" nil")
		} else {
			b.WriteString("nil")
		}
		return true
	}
	switch v.Kind {
	case reflect.Slice:
		if withType {
			b.WriteString(shortenType(v.Type))
			b.WriteString(" len: ")
			b.WriteString(strconv.FormatInt(v.Len, 10))
			b.WriteString(", cap: ")
			if v.Cap == capDropped {
				b.WriteString(capDroppedText)
			} else {
				b.WriteString(strconv.FormatInt(v.Cap, 10))
			}
			b.WriteString(", ")
		}
		if v.Base == 0 && len(v.Children) == 0 {
			b.WriteString("nil")
			return true
		}
		return writeElements(b, v)
	case reflect.Array:
		if withType {
			b.WriteString(shortenType(v.Type))
			b.WriteString(" ")
		}
		return writeElements(b, v)
	case reflect.Ptr:
		if v.Type == "" || len(v.Children) == 0 {
			b.WriteString("nil")
			return true
		}
		if v.Children[0].OnlyAddr && v.Children[0].Addr != 0 {
			return false
		}
		b.WriteString("*")
		return writeValue(b, &v.Children[0], false, withType)
	case reflect.Struct:
		if v.Value != "" {
			return false
		}
		return writeStruct(b, v, withType)
	case reflect.Interface:
		if v.Addr == 0 || len(v.Children) == 0 {
			return false
		}
		data := &v.Children[0]
		if withType {
			if data.Kind == reflect.Invalid {
				b.WriteString(shortenType(v.Type))
				b.WriteString(" ")
				if data.Addr == 0 {
					b.WriteString("nil")
					return true
				}
			} else {
				b.WriteString(shortenType(v.Type))
				b.WriteString("(")
				b.WriteString(shortenType(data.Type))
				b.WriteString(") ")
			}
		}
		if data.Kind == reflect.Ptr {
			switch {
			case len(data.Children) == 0:
				b.WriteString("...")
				return true
			case data.Children[0].Addr == 0:
				b.WriteString("nil")
				return true
			case data.Children[0].OnlyAddr:
				return false
			}
		} else if data.OnlyAddr {
			return false
		}
		return writeValue(b, data, false, !withType)
	case reflect.Map, reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
		return false
	}
	// writeBasicType.
	if v.Value == "" && v.Kind != reflect.String {
		b.WriteString("(unknown ")
		b.WriteString(v.Kind.String())
		b.WriteString(")")
		return true
	}
	switch v.Kind {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		b.WriteString(v.Value)
	case reflect.String:
		b.WriteString(quoteString(v))
	}
	return true
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
	s := v.Value
	if len(s) != int(v.Len) {
		s += "...+" + strconv.Itoa(int(v.Len)-len(s)) + " more"
	}
	return strconv.Quote(s)
}

// writeStruct is api.Variable.writeStructTo without newlines.
func writeStruct(b *strings.Builder, v *api.Variable, withType bool) bool {
	if int(v.Len) != len(v.Children) && len(v.Children) == 0 {
		return false // printed as its address
	}
	if withType {
		b.WriteString(shortenType(v.Type))
		b.WriteString(" ")
	}
	b.WriteString("{")
	for i := range v.Children {
		b.WriteString(v.Children[i].Name)
		b.WriteString(": ")
		if !writeValue(b, &v.Children[i], false, true) {
			return false
		}
		if i != len(v.Children)-1 {
			b.WriteString(", ")
		}
	}
	if len(v.Children) != int(v.Len) {
		b.WriteString(",...+")
		b.WriteString(strconv.Itoa(int(v.Len) - len(v.Children)))
		b.WriteString(" more")
	}
	b.WriteString("}")
	return true
}

// writeElements is api.Variable.writeSliceOrArrayTo without newlines.
func writeElements(b *strings.Builder, v *api.Variable) bool {
	b.WriteString("[")
	for i := range v.Children {
		if !writeValue(b, &v.Children[i], false, false) {
			return false
		}
		if i != len(v.Children)-1 {
			b.WriteString(",")
		}
	}
	if len(v.Children) != int(v.Len) {
		if len(v.Children) != 0 {
			b.WriteString(",...+")
			b.WriteString(strconv.Itoa(int(v.Len) - len(v.Children)))
			b.WriteString(" more")
		} else {
			b.WriteString("...")
		}
	}
	b.WriteString("]")
	return true
}

// shortTypes remembers api.ShortenType's answers: a hit names the same few
// types over and over, and shortening one parses it.
var shortTypes sync.Map

// shortTypesCount bounds shortTypes, which a program's types bound anyway.
var shortTypesCount atomic.Int64

const maxShortTypes = 1 << 14

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
