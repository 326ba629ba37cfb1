package templatearchive_test

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wgmesh/coder/provisioner/templatearchive"
)

func TestExtract(t *testing.T) {
	t.Parallel()
	type entry struct {
		name     string
		typeflag byte
		body     string
		link     string
	}
	tests := []struct {
		name    string
		entries []entry
		wantErr string
		want    map[string]string
	}{
		{
			name:    "files and dirs",
			entries: []entry{{name: "./", typeflag: tar.TypeDir}, {name: "main.tf", typeflag: tar.TypeReg, body: "x"}, {name: "mod/", typeflag: tar.TypeDir}, {name: "mod/a.tf", typeflag: tar.TypeReg, body: "y"}},
			want:    map[string]string{"main.tf": "x", "mod/a.tf": "y"},
		},
		{name: "traversal", entries: []entry{{name: "../evil", typeflag: tar.TypeReg, body: "x"}}, wantErr: "path traversal"},
		{name: "nested traversal", entries: []entry{{name: "a/../../evil", typeflag: tar.TypeReg, body: "x"}}, wantErr: "path traversal"},
		{name: "absolute", entries: []entry{{name: "/etc/passwd", typeflag: tar.TypeReg, body: "x"}}, wantErr: "absolute path"},
		{name: "symlink", entries: []entry{{name: "link", typeflag: tar.TypeSymlink, link: "/etc"}}, wantErr: "unsupported type"},
		{name: "hardlink", entries: []entry{{name: "link", typeflag: tar.TypeLink, link: "main.tf"}}, wantErr: "unsupported type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, e := range tt.entries {
				hdr := &tar.Header{Name: e.name, Typeflag: e.typeflag, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
				if e.typeflag != tar.TypeReg {
					hdr.Size = 0
				}
				if err := tw.WriteHeader(hdr); err != nil {
					t.Fatal(err)
				}
				if e.typeflag == tar.TypeReg {
					if _, err := tw.Write([]byte(e.body)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			err := templatearchive.Extract(buf.Bytes(), dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Extract() error = %v, want %q", err, tt.wantErr)
				}
				if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "evil")); err == nil {
					t.Fatal("file written outside the directory")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, body := range tt.want {
				got, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil || string(got) != body {
					t.Errorf("%s = %q, %v; want %q", name, got, err, body)
				}
			}
		})
	}
}

func TestExtractSizeLimit(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// A header claiming more than the limit is rejected before reading the body.
	if err := tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: templatearchive.MaxBytes + 1}); err != nil {
		t.Fatal(err)
	}
	err := templatearchive.Extract(buf.Bytes(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("Extract() error = %v, want size limit", err)
	}
}

func TestExtractEntryLimit(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i <= templatearchive.MaxFiles; i++ {
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%d/", i), Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	err := templatearchive.Extract(buf.Bytes(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("Extract() error = %v, want entry limit", err)
	}
}

// TestExtractNoOverwrite: a second entry with the same name cannot replace the
// first (nor anything already in the directory).
func TestExtractNoOverwrite(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, body := range []string{"first", "second"} {
		if err := tw.WriteHeader(&tar.Header{Name: "main.tf", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := templatearchive.Extract(buf.Bytes(), dir); err == nil {
		t.Fatal("Extract() accepted a duplicate entry")
	}
	got, err := os.ReadFile(filepath.Join(dir, "main.tf"))
	if err != nil || string(got) != "first" {
		t.Fatalf("main.tf = %q, %v; want the first entry kept", got, err)
	}
}

func TestCreateRoundTrip(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "sub", ".terraform"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"main.tf": "a", "sub/x.tf": "b", "sub/.terraform/skip": "c", "terraform.tfstate": "d"}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	archive, err := templatearchive.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := templatearchive.Extract(archive, dst); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"main.tf": true, "sub/x.tf": true, "sub/.terraform/skip": false, "terraform.tfstate": false} {
		_, err := os.Stat(filepath.Join(dst, name))
		if (err == nil) != want {
			t.Errorf("%s present = %v, want %v", name, err == nil, want)
		}
	}
}
