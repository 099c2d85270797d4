package lsp

import (
	"reflect"
	"strings"
	"testing"
)

// TestSettingsMatchConfig keeps the documented settings and Config's JSON
// keys the same set.
func TestSettingsMatchConfig(t *testing.T) {
	var keys []string
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		keys = append(keys, strings.Split(ct.Field(i).Tag.Get("json"), ",")[0])
	}
	var names []string
	for _, s := range Settings {
		names = append(names, s.Name)
	}
	if !reflect.DeepEqual(keys, names) {
		t.Errorf("Settings %v, Config's keys %v: document every key of Config in Settings, in order", names, keys)
	}
}
