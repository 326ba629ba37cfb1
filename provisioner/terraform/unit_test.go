package terraform

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wgmesh/coder/codersdk"
)

func TestExtractTar(t *testing.T) {
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
			err := ExtractTar(buf.Bytes(), dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ExtractTar() error = %v, want %q", err, tt.wantErr)
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

func TestExtractTarSizeLimit(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// A header claiming more than the limit is rejected before reading the body.
	if err := tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: MaxArchiveBytes + 1}); err != nil {
		t.Fatal(err)
	}
	err := ExtractTar(buf.Bytes(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("ExtractTar() error = %v, want size limit", err)
	}
}

func TestTarDirRoundTrip(t *testing.T) {
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
	archive, err := TarDir(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := ExtractTar(archive, dst); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"main.tf": true, "sub/x.tf": true, "sub/.terraform/skip": false, "terraform.tfstate": false} {
		_, err := os.Stat(filepath.Join(dst, name))
		if (err == nil) != want {
			t.Errorf("%s present = %v, want %v", name, err == nil, want)
		}
	}
}

func TestParseUILine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line      string
		wantOK    bool
		wantLevel codersdk.LogLevel
		wantOut   string
	}{
		{`{"@level":"info","@message":"terraform_data.x: Creating...","type":"apply_start"}`, true, codersdk.LogLevelInfo, "terraform_data.x: Creating..."},
		{`{"@level":"error","@message":"Error: Invalid expression","type":"diagnostic","diagnostic":{"severity":"error","summary":"Invalid expression","detail":"Expected the start of an expression.","range":{"filename":"main.tf","start":{"line":2}}}}`, true, codersdk.LogLevelError, "Error: Invalid expression (main.tf:2): Expected the start of an expression."},
		{`{"@level":"warn","@message":"Warning: x","type":"diagnostic","diagnostic":{"severity":"warning","summary":"x"}}`, true, codersdk.LogLevelWarn, "Warning: x"},
		{`plain text`, false, "", ""},
	}
	for _, tt := range tests {
		level, out, ok := parseUILine(tt.line)
		if ok != tt.wantOK || level != tt.wantLevel || out != tt.wantOut {
			t.Errorf("parseUILine(%s) = %q, %q, %v; want %q, %q, %v", tt.line, level, out, ok, tt.wantLevel, tt.wantOut, tt.wantOK)
		}
	}
}

func TestContractEnv(t *testing.T) {
	t.Parallel()
	md := testMetadata(codersdk.WorkspaceTransitionStop, "https://coder.example.com/")
	md.WorkspaceOwnerGroups = []string{"dev", "ops"}
	env := ContractEnv(md, []codersdk.ParameterValue{{Name: "region", Value: "eu"}})
	sum := sha256.Sum256([]byte("region"))
	want := map[string]string{
		"CODER_AGENT_URL":                               "https://coder.example.com/",
		"CODER_WORKSPACE_TRANSITION":                    "stop",
		"CODER_WORKSPACE_NAME":                          "dev",
		"CODER_WORKSPACE_OWNER":                         "alice",
		"CODER_WORKSPACE_OWNER_GROUPS":                  `["dev","ops"]`,
		"CODER_WORKSPACE_TEMPLATE_ID":                   md.TemplateID,
		"CODER_PARAMETER_" + hex.EncodeToString(sum[:]): "eu",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	script := env["CODER_AGENT_SCRIPT_linux_amd64"]
	if !strings.Contains(script, "access_url='${ACCESS_URL}'") || !strings.Contains(script, "bin/coder-linux-amd64") {
		t.Errorf("linux/amd64 init script does not download the agent:\n%s", script)
	}
}

func TestAgentInitScript(t *testing.T) {
	t.Parallel()
	script := AgentInitScript("linux", "arm64", "https://coder.example.com")
	for _, want := range []string{"access_url='https://coder.example.com/'", "bin/coder-linux-arm64", "agent_auth='${AUTH_TYPE}'", "exec \"$binary_path\" agent"} {
		if !strings.Contains(script, want) {
			t.Errorf("init script lacks %q:\n%s", want, script)
		}
	}
}
