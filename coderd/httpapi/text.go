package httpapi

import (
	"reflect"
	"strconv"
	"strings"

	"github.com/wgmesh/coder/codersdk"
)

// nulDetail is the validation detail of a string field holding a NUL.
const nulDetail = "must not contain NUL characters"

// NULFieldErrors returns one validation error per field of v (a decoded
// request body: a pointer to a struct, map, slice or string) whose string
// value, map key or list element contains a NUL character ("\u0000" in
// JSON). PostgreSQL stores neither in text nor in jsonb, so such a value
// must be refused as the client's error before any query sees it. Fields
// are named by their JSON paths (e.g. "tags", "rich_parameter_values[0].name").
func NULFieldErrors(v any) []codersdk.ValidationError {
	var errs []codersdk.ValidationError
	seen := map[string]bool{}
	walkNUL(reflect.ValueOf(v), "", 0, func(field string) {
		if field == "" {
			field = "body"
		}
		if !seen[field] {
			seen[field] = true
			errs = append(errs, codersdk.ValidationError{Field: field, Detail: nulDetail})
		}
	})
	return errs
}

// maxWalkDepth bounds the nesting walkNUL follows (decoded JSON is at most
// 10000 levels deep; request types are a few).
const maxWalkDepth = 64

func walkNUL(v reflect.Value, path string, depth int, report func(string)) {
	if depth > maxWalkDepth || !v.IsValid() {
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walkNUL(v.Elem(), path, depth+1, report)
		}
	case reflect.String:
		if strings.IndexByte(v.String(), 0) >= 0 {
			report(path)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous {
				continue // JSON promotes the fields of embedded structs, exported or not
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if f.Anonymous && name == "" {
				walkNUL(v.Field(i), path, depth+1, report)
				continue
			}
			if name == "" {
				name = f.Name
			}
			walkNUL(v.Field(i), joinPath(path, name), depth+1, report)
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // bytes ([]byte is base64 in JSON; uuid.UUID is text)
		}
		for i := 0; i < v.Len(); i++ {
			walkNUL(v.Index(i), path+"["+strconv.Itoa(i)+"]", depth+1, report)
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			if k := iter.Key(); k.Kind() == reflect.String && strings.IndexByte(k.String(), 0) >= 0 {
				report(path)
			}
			walkNUL(iter.Value(), path, depth+1, report)
		}
	}
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
