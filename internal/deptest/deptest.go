// Package deptest checks dependency rules of a Go module: which packages
// may not link (or directly import) which others. The module's import graph
// is loaded once with `go list -deps -json ./...`; each Rule is then checked
// by walking that graph from every package it constrains, so a violation is
// reported with the shortest import chain that causes it.
//
// Patterns, in Rule fields, are import paths: "p" matches p only, "p/..."
// matches p and every package below it, "..." matches every package and
// "std" matches the standard library (and cgo's "C").
package deptest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"sort"
	"strings"
)

// Rule forbids the packages matching Packages (minus Except) to depend on
// packages matching Forbid (minus Allow).
type Rule struct {
	// Name identifies the rule in reports (a subtest name).
	Name string
	// Packages are patterns of the module's packages the rule constrains.
	Packages []string
	// Except are patterns of packages the rule does not constrain.
	Except []string
	// Forbid are patterns of packages they must not depend on.
	Forbid []string
	// Allow are patterns exempt from Forbid.
	Allow []string
	// Direct limits the rule to direct imports; by default it covers
	// everything the packages link (their transitive imports).
	Direct bool
	// Why explains the rule; reports repeat it.
	Why string
	// Pending, when not empty, marks a rule that does not hold yet and
	// says why (the work that will make it hold). Callers report its
	// violations without failing, and fail once it holds so that it gets
	// enforced.
	Pending string
}

// Violation is one forbidden dependency of one package.
type Violation struct {
	// Package is the constrained package.
	Package string
	// Dep is the forbidden package it depends on.
	Dep string
	// Chain is the shortest import chain from Package to Dep, both
	// included.
	Chain []string
}

// String renders the violation with its import chain, one package a line.
func (v Violation) String() string {
	return fmt.Sprintf("%s depends on %s:\n\t%s", v.Package, v.Dep, strings.Join(v.Chain, "\n\t-> "))
}

// Package is a node of the import graph.
type Package struct {
	ImportPath string
	// Imports are the package's direct imports (resolved paths, tests
	// excluded).
	Imports []string
	// Standard reports a standard library package.
	Standard bool
	// DepOnly reports a package listed only as a dependency (not part of
	// the module).
	DepOnly bool
}

// Graph is the import graph of a module's packages and everything they
// import, as `go list -deps` sees it with the caller's environment (build
// tags from GOFLAGS, GOOS, GOARCH).
type Graph struct {
	// Module is the module path.
	Module string
	pkgs   map[string]*Package
	// own are the module's packages, sorted.
	own []string
}

// Load lists the module rooted at dir (any directory inside it) with the
// go command goBin.
func Load(goBin, dir string) (*Graph, error) {
	modOut, err := run(goBin, dir, "list", "-m", "-f", "{{.Path}}")
	if err != nil {
		return nil, fmt.Errorf("find module: %w", err)
	}
	g := &Graph{Module: strings.TrimSpace(string(modOut)), pkgs: map[string]*Package{}}
	out, err := run(goBin, dir, "list", "-deps", "-json=ImportPath,Imports,Standard,DepOnly", g.Module+"/...")
	if err != nil {
		return nil, fmt.Errorf("list packages: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p Package
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		g.pkgs[p.ImportPath] = &p
		if !p.DepOnly {
			g.own = append(g.own, p.ImportPath)
		}
	}
	if len(g.own) == 0 {
		return nil, fmt.Errorf("module %s in %s has no packages", g.Module, dir)
	}
	sort.Strings(g.own)
	return g, nil
}

func run(goBin, dir string, args ...string) ([]byte, error) {
	cmd := exec.Command(goBin, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}

// match reports whether package p matches pattern.
func (g *Graph) match(pattern, p string) bool {
	switch {
	case pattern == "...":
		return true
	case pattern == "std":
		// "C" is cgo's pseudo-package, part of the toolchain like std.
		pkg := g.pkgs[p]
		return p == "C" || pkg != nil && pkg.Standard
	case strings.HasSuffix(pattern, "/..."):
		root := strings.TrimSuffix(pattern, "/...")
		return p == root || strings.HasPrefix(p, root+"/")
	default:
		return p == pattern
	}
}

func (g *Graph) matchAny(patterns []string, p string) bool {
	return slices.ContainsFunc(patterns, func(pat string) bool { return g.match(pat, p) })
}

// Check returns the violations of r, sorted by package. It returns an
// error for a rule that cannot be checked: no Packages or Forbid, or
// Packages matching none of the module's packages (a renamed package
// would otherwise turn the rule into a silent no-op).
func (g *Graph) Check(r Rule) ([]Violation, error) {
	if len(r.Packages) == 0 || len(r.Forbid) == 0 {
		return nil, fmt.Errorf("rule %q needs Packages and Forbid", r.Name)
	}
	var roots []string
	for _, p := range g.own {
		if g.matchAny(r.Packages, p) && !g.matchAny(r.Except, p) {
			roots = append(roots, p)
		}
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("rule %q: %v matches none of the packages of %s", r.Name, r.Packages, g.Module)
	}
	forbidden := func(p string) bool { return g.matchAny(r.Forbid, p) && !g.matchAny(r.Allow, p) }
	var out []Violation
	for _, root := range roots {
		out = append(out, g.walk(root, r.Direct, forbidden)...)
	}
	return out, nil
}

// walk visits what root imports breadth first, so the chain recorded for
// each forbidden package is a shortest one. It does not look past a
// forbidden package: its own imports are its business.
func (g *Graph) walk(root string, direct bool, forbidden func(string) bool) []Violation {
	parent := map[string]string{root: ""}
	queue := []string{root}
	var out []Violation
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		pkg := g.pkgs[p]
		if pkg == nil {
			continue
		}
		for _, imp := range pkg.Imports {
			if _, seen := parent[imp]; seen {
				continue
			}
			parent[imp] = p
			if forbidden(imp) {
				var chain []string
				for q := imp; q != ""; q = parent[q] {
					chain = append(chain, q)
				}
				slices.Reverse(chain)
				out = append(out, Violation{Package: root, Dep: imp, Chain: chain})
				continue
			}
			if !direct {
				queue = append(queue, imp)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dep < out[j].Dep })
	return out
}

// Unknown returns the patterns of Forbid and Allow in rules that name no
// package, neither in the graph nor (asked of the go command in one call)
// in the module's dependencies: a forbidden package that was renamed
// upstream would otherwise never match again.
func (g *Graph) Unknown(goBin, dir string, rules []Rule) ([]string, error) {
	paths := make([]string, 0, len(g.pkgs))
	for p := range g.pkgs {
		paths = append(paths, p)
	}
	var missing []string
	seen := map[string]bool{}
	for _, r := range rules {
		for _, pat := range slices.Concat(r.Forbid, r.Allow) {
			if seen[pat] || pat == "..." || pat == "std" {
				continue
			}
			seen[pat] = true
			if !slices.ContainsFunc(paths, func(p string) bool { return g.match(pat, p) }) {
				missing = append(missing, pat)
			}
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	// Listed with -e, a package that does not exist carries an error, and
	// a "/..." pattern that matches nothing prints nothing.
	out, err := run(goBin, dir, append([]string{"list", "-e", "-f", "{{if not .Error}}{{.ImportPath}}{{end}}"}, missing...)...)
	if err != nil {
		return nil, err
	}
	found := strings.Fields(string(out))
	var unknown []string
	for _, pat := range missing {
		if !slices.ContainsFunc(found, func(p string) bool { return g.match(pat, p) }) {
			unknown = append(unknown, pat)
		}
	}
	return unknown, nil
}
