package image

import (
	"reflect"
	"testing"
)

// fill gives every settable slice one element, every map one entry and
// every pointer a value, all the way down.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Slice:
		if v.CanSet() {
			v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		}
		for i := 0; i < v.Len(); i++ {
			fill(v.Index(i))
		}
	case reflect.Map:
		if v.CanSet() {
			m := reflect.MakeMap(v.Type())
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(e)
			m.SetMapIndex(k, e)
			v.Set(m)
		}
	case reflect.Pointer:
		if v.CanSet() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		if !v.IsNil() {
			fill(v.Elem())
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	}
}

// shared reports the first slice, map or pointer a and b share.
func shared(a, b reflect.Value, at string) string {
	switch a.Kind() {
	case reflect.Slice:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			return at
		}
		for i := 0; i < a.Len(); i++ {
			if s := shared(a.Index(i), b.Index(i), at+"[i]"); s != "" {
				return s
			}
		}
	case reflect.Map:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			return at
		}
	case reflect.Pointer:
		if !a.IsNil() && a.Pointer() == b.Pointer() {
			return at
		}
		if !a.IsNil() {
			return shared(a.Elem(), b.Elem(), at)
		}
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			if f := a.Type().Field(i); f.IsExported() {
				if s := shared(a.Field(i), b.Field(i), at+"."+f.Name); s != "" {
					return s
				}
			}
		}
	}
	return ""
}

// Clone copies every list, map and pointer of a Config, however deep: the
// Builder's validated copy cannot be changed through the caller's.
func TestCloneSharesNothing(t *testing.T) {
	var c Config
	fill(reflect.ValueOf(&c).Elem())
	if c.Pacman.Repos == nil || c.Pacman.Repos[0].Servers == nil || c.Boot.BIOS == nil {
		t.Fatal("fill did not reach the nested fields")
	}
	d := c.Clone()
	if s := shared(reflect.ValueOf(c), reflect.ValueOf(d), "Config"); s != "" {
		t.Errorf("%s is shared by a Config and its Clone", s)
	}
}
