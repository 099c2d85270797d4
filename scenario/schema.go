package scenario

import (
	"encoding/json"
	"reflect"
	"time"

	"github.com/riptrace/riptrace/internal/strictyaml"
)

// JSONSchema is the JSON Schema of scenario files, built from the same
// struct tags Parse reads, for editors' completion and checking
// (docs/scenario.schema.json; YAML language servers read it).
func JSONSchema() []byte {
	defs := map[string]any{}
	root := schemaOf(reflect.TypeOf(Scenario{}), defs)
	root["$defs"] = defs
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["title"] = "RipTrace scenario (riptrace run)"
	b, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		panic(err) // maps of strings and bools
	}
	return append(b, '\n')
}

var durationPattern = `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`

func schemaOf(t reflect.Type, defs map[string]any) map[string]any {
	if t == reflect.TypeOf(time.Duration(0)) {
		return map[string]any{"type": "string", "pattern": durationPattern, "examples": []string{"200ms", "5s"}}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return schemaOf(t.Elem(), defs)
	case reflect.String:
		return map[string]any{"type": []string{"string", "number"}}
	case reflect.Int:
		return map[string]any{"type": "integer"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), defs)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), defs)}
	case reflect.Struct:
		// A step holds steps: it is defined once and referred to.
		isStep := t == reflect.TypeOf(Step{})
		if isStep {
			if _, ok := defs["Step"]; ok {
				return map[string]any{"$ref": "#/$defs/Step"}
			}
			defs["Step"] = nil
		}
		props := map[string]any{}
		for i := range t.NumField() {
			if tag := strictyaml.TagName(t.Field(i)); tag != "" {
				props[tag] = schemaOf(t.Field(i).Type, defs)
			}
		}
		s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		if isStep {
			defs["Step"] = s
			return map[string]any{"$ref": "#/$defs/Step"}
		}
		return s
	}
	panic("scenario: no schema for " + t.String())
}
