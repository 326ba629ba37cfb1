package httpapi

import (
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/wgmesh/coder/codersdk"
)

// badText returns why s cannot be stored as PostgreSQL text ("" when it
// can): PostgreSQL text holds no NUL bytes and only valid UTF-8.
func badText(s string) string {
	if strings.IndexByte(s, 0) >= 0 {
		return "must not contain NUL bytes"
	}
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	return ""
}

// textErrors walks v (a decoded request body) and returns a validation
// error, named by its JSON path, for every string that PostgreSQL could not
// store.
func textErrors(v reflect.Value, path string, errs []codersdk.ValidationError) []codersdk.ValidationError {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			errs = textErrors(v.Elem(), path, errs)
		}
	case reflect.String:
		if d := badText(v.String()); d != "" {
			errs = append(errs, codersdk.ValidationError{Field: path, Detail: d})
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name := f.Name
			if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag == "-" {
				continue
			} else if tag != "" {
				name = tag
			}
			errs = textErrors(v.Field(i), joinPath(path, name), errs)
		}
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			return errs // []byte: raw JSON or base64 data, not text
		}
		for i := range v.Len() {
			errs = textErrors(v.Index(i), path+"["+itoa(i)+"]", errs)
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			k := iter.Key()
			name := path
			if k.Kind() == reflect.String {
				if d := badText(k.String()); d != "" {
					errs = append(errs, codersdk.ValidationError{Field: path, Detail: "keys " + d})
					continue
				}
				name = joinPath(path, k.String())
			}
			errs = textErrors(iter.Value(), name, errs)
		}
	}
	return errs
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

// RejectBadText is middleware that answers 400 when the request's path or
// query holds text PostgreSQL cannot store (NUL bytes, invalid UTF-8), with
// the query parameter named, before any handler passes it to a query.
func RejectBadText(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var errs []codersdk.ValidationError
		if d := badText(r.URL.Path); d != "" {
			errs = append(errs, codersdk.ValidationError{Field: "path", Detail: d})
		}
		for name, values := range r.URL.Query() {
			if d := badText(name); d != "" {
				errs = append(errs, codersdk.ValidationError{Field: "query", Detail: "parameter names " + d})
				continue
			}
			for _, v := range values {
				if d := badText(v); d != "" {
					errs = append(errs, codersdk.ValidationError{Field: name, Detail: d})
					break
				}
			}
		}
		if len(errs) > 0 {
			Write(r.Context(), w, http.StatusBadRequest, codersdk.Response{Message: "Invalid characters in the request URL.", Validations: errs})
			return
		}
		next.ServeHTTP(w, r)
	})
}
