package codersdk_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/wgmesh/coder/codersdk"
)

func TestErrorDecoding(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		contentType string
		body        string
		status      int
		wantMessage string
		wantDetail  string
		wantFields  []string
	}{
		{"json shape", "application/json", `{"message":"Validation failed.","detail":"d","validations":[{"field":"email","detail":"is required"}]}`,
			http.StatusBadRequest, "Validation failed.", "d", []string{"email"}},
		{"plain text", "text/plain", "upstream exploded", http.StatusBadGateway, "Bad Gateway", "upstream exploded", nil},
		{"invalid json", "application/json", "{", http.StatusInternalServerError, "Internal Server Error", "{", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if got := r.Header.Get(codersdk.SessionTokenHeader); got != "tok" {
					t.Errorf("session header = %q", got)
				}
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			u, _ := url.Parse(srv.URL)
			client := codersdk.New(u)
			client.SetSessionToken("tok")
			_, err := client.User(context.Background(), codersdk.Me)
			apiErr, ok := codersdk.AsError(err)
			if !ok {
				t.Fatalf("error %v is not an API error", err)
			}
			if apiErr.StatusCode() != tc.status || apiErr.Message != tc.wantMessage || apiErr.Detail != tc.wantDetail {
				t.Fatalf("got status %d message %q detail %q", apiErr.StatusCode(), apiErr.Message, apiErr.Detail)
			}
			if len(apiErr.Validations) != len(tc.wantFields) {
				t.Fatalf("validations = %+v", apiErr.Validations)
			}
			for i, f := range tc.wantFields {
				if apiErr.Validations[i].Field != f {
					t.Fatalf("validation %d field %q, want %q", i, apiErr.Validations[i].Field, f)
				}
			}
			if !strings.Contains(err.Error(), "GET ") {
				t.Fatalf("error text %q lacks the request", err.Error())
			}
		})
	}
}
