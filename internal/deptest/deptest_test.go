package deptest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wgmesh/coder/internal/deptest"
)

// testModule writes a small module and loads its graph with the real go
// command:
//
//	a -> b -> x -> c -> os/exec
//	a -> d -> c
//	e -> a
//	leaf -> fmt
func testModule(t *testing.T) (*deptest.Graph, string, string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":    "module example.com/m\n\ngo 1.21\n",
		"a/a.go":    "package a\n\nimport (\n\t_ \"example.com/m/b\"\n\t_ \"example.com/m/d\"\n)\n",
		"b/b.go":    "package b\n\nimport _ \"example.com/m/x\"\n",
		"x/x.go":    "package x\n\nimport _ \"example.com/m/c\"\n",
		"c/c.go":    "package c\n\nimport _ \"os/exec\"\n",
		"d/d.go":    "package d\n\nimport _ \"example.com/m/c\"\n",
		"e/e.go":    "package e\n\nimport _ \"example.com/m/a\"\n",
		"leaf/l.go": "package leaf\n\nimport _ \"fmt\"\n",
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g, err := deptest.Load(goBin, filepath.Join(dir, "leaf"))
	if err != nil {
		t.Fatal(err)
	}
	if g.Module != "example.com/m" {
		t.Fatalf("module %q", g.Module)
	}
	return g, goBin, dir
}

func TestCheck(t *testing.T) {
	t.Parallel()
	g, _, _ := testModule(t)
	const m = "example.com/m"
	for _, tc := range []struct {
		name string
		rule deptest.Rule
		// want lists each violation as its chain joined by " ".
		want []string
	}{
		{
			name: "ShortestChain",
			rule: deptest.Rule{Packages: []string{m + "/a"}, Forbid: []string{m + "/c"}},
			want: []string{m + "/a " + m + "/d " + m + "/c"},
		},
		{
			// os/exec is reached only through c, which is already reported.
			name: "StopsAtForbidden",
			rule: deptest.Rule{Packages: []string{m + "/a"}, Forbid: []string{m + "/c", "os/exec"}},
			want: []string{m + "/a " + m + "/d " + m + "/c"},
		},
		{
			name: "Tree",
			rule: deptest.Rule{Packages: []string{m + "/..."}, Forbid: []string{m + "/c"}},
			want: []string{
				m + "/a " + m + "/d " + m + "/c",
				m + "/b " + m + "/x " + m + "/c",
				m + "/d " + m + "/c",
				m + "/e " + m + "/a " + m + "/d " + m + "/c",
				m + "/x " + m + "/c",
			},
		},
		{
			name: "Except",
			rule: deptest.Rule{Packages: []string{m + "/..."}, Except: []string{m + "/e"}, Forbid: []string{m + "/a"}},
		},
		{
			name: "ExceptNotGiven",
			rule: deptest.Rule{Packages: []string{m + "/..."}, Forbid: []string{m + "/a"}},
			want: []string{m + "/e " + m + "/a"},
		},
		{
			name: "Allow",
			rule: deptest.Rule{Packages: []string{m + "/a"}, Forbid: []string{m + "/..."}, Allow: []string{m + "/b", m + "/d", m + "/x"}},
			want: []string{m + "/a " + m + "/d " + m + "/c"},
		},
		{
			name: "DirectOnly",
			rule: deptest.Rule{Packages: []string{m + "/a"}, Forbid: []string{m + "/c", m + "/d"}, Direct: true},
			want: []string{m + "/a " + m + "/d"},
		},
		{
			name: "OnlyStd",
			rule: deptest.Rule{Packages: []string{m + "/leaf", m + "/c", m + "/b"}, Forbid: []string{"..."}, Allow: []string{"std"}},
			want: []string{m + "/b " + m + "/x"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vs, err := g.Check(tc.rule)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range vs {
				if v.Package != v.Chain[0] || v.Dep != v.Chain[len(v.Chain)-1] {
					t.Errorf("violation %+v: chain does not run from Package to Dep", v)
				}
				got = append(got, strings.Join(v.Chain, " "))
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("violations\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestCheckRejectsVacuousRules(t *testing.T) {
	t.Parallel()
	g, _, _ := testModule(t)
	for _, r := range []deptest.Rule{
		{Name: "renamed", Packages: []string{"example.com/m/gone/..."}, Forbid: []string{"os"}},
		{Name: "outside the module", Packages: []string{"os/exec"}, Forbid: []string{"os"}},
		{Name: "no forbid", Packages: []string{"example.com/m/a"}},
	} {
		if _, err := g.Check(r); err == nil {
			t.Errorf("rule %q: checked without error", r.Name)
		}
	}
}

func TestUnknown(t *testing.T) {
	t.Parallel()
	g, goBin, dir := testModule(t)
	rules := []deptest.Rule{
		{Forbid: []string{"example.com/m/c", "example.com/m/gone", "os/exec", "...", "std"}},
		// net/http is not in the module's graph but exists.
		{Forbid: []string{"net/http", "example.com/other/..."}, Allow: []string{"example.com/m/..."}},
	}
	got, err := g.Unknown(goBin, dir, rules)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{"example.com/m/gone", "example.com/other/..."}; !slices.Equal(got, want) {
		t.Fatalf("unknown %v, want %v", got, want)
	}
}
