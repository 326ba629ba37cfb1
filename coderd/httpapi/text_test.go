package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/codersdk"
)

func TestNULFieldErrors(t *testing.T) {
	t.Parallel()
	type inner struct {
		Name string `json:"name"`
	}
	type embedded struct {
		Icon string `json:"icon"`
	}
	type body struct {
		embedded
		Email    string            `json:"email"`
		Nick     *string           `json:"nick,omitempty"`
		Roles    []string          `json:"roles"`
		Tags     map[string]string `json:"tags"`
		Params   []inner           `json:"params"`
		Secret   string            `json:"-"`
		NoTag    string
		Lifetime int64 `json:"lifetime"`
	}
	nul := "a\x00b"
	tests := []struct {
		name string
		in   any
		want []string
	}{
		{"clean", &body{Email: "a@b.c", Roles: []string{"owner"}, Tags: map[string]string{"k": "v"}, Params: []inner{{"p"}}}, nil},
		{"unicode is fine", &body{Email: "ü@b.c", NoTag: "☃"}, nil},
		{"top level", &body{Email: nul}, []string{"email"}},
		{"pointer", &body{Nick: &nul}, []string{"nick"}},
		{"list element", &body{Roles: []string{"ok", nul}}, []string{"roles[1]"}},
		{"map key and value", &body{Tags: map[string]string{nul: "v", "k": nul}}, []string{"tags"}},
		{"nested", &body{Params: []inner{{"ok"}, {nul}}}, []string{"params[1].name"}},
		{"embedded", &body{embedded: embedded{Icon: nul}}, []string{"icon"}},
		{"untagged", &body{NoTag: nul}, []string{"NoTag"}},
		{"ignored field", &body{Secret: nul}, nil},
		{"several", &body{Email: nul, Roles: []string{nul}}, []string{"email", "roles[0]"}},
		{"bare string", &nul, []string{"body"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, e := range httpapi.NULFieldErrors(tt.in) {
				if e.Detail == "" {
					t.Errorf("%s: no detail", e.Field)
				}
				got = append(got, e.Field)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("fields %v, want %v", got, tt.want)
			}
		})
	}
}

// TestReadRefusesNUL: Read answers a body with a NUL in a string with a 400
// naming the field, and decodes a clean body.
func TestReadRefusesNUL(t *testing.T) {
	t.Parallel()
	read := func(body string) (*httptest.ResponseRecorder, bool, codersdk.LoginWithPasswordRequest) {
		var req codersdk.LoginWithPasswordRequest
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		ok := httpapi.Read(r.Context(), w, r, &req)
		return w, ok, req
	}
	w, ok, _ := read(`{"email":"owner\u0000@coder.test","password":"x"}`)
	if ok || w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"field":"email"`) {
		t.Fatalf("NUL email: ok %v, %d %s", ok, w.Code, w.Body)
	}
	_, ok, req := read(`{"email":"owner@coder.test","password":"p\\u0000"}`)
	if !ok || req.Password != `p\u0000` {
		t.Fatalf("an escaped backslash is not a NUL: ok %v, %+v", ok, req)
	}
}
