package templatearchive

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExtract extracts arbitrary bytes as a template archive into a fresh
// directory next to a sentinel directory and checks, whatever the archive:
//   - nothing is created, changed or linked outside the target directory
//     (the sentinel and the parent hold exactly what they held);
//   - only regular files and directories exist in the target, files with
//     mode 0644 or 0755, no symlinks, devices or FIFOs;
//   - the file bytes written never exceed MaxBytes;
//   - on success, every file and directory in the target is named by an
//     archive entry (or is a parent of one), and each regular entry's file
//     holds exactly the entry's bytes;
//   - on success, Create of the target and Extract of that archive into a
//     second directory reproduce the same tree (round trip).
func FuzzExtract(f *testing.F) {
	f.Fuzz(func(t *testing.T, archive []byte) {
		checkExtract(t, archive)
	})
}

// FuzzExtractEntries builds archives from a textual spec so the fuzzer
// mutates names, types and link targets rather than tar checksums. Each line
// of spec is one entry, "T NAME" or "T NAME LINK", where T is the tar type
// flag byte ('0' file, '5' directory, '2' symlink, '1' hard link, ...);
// regular files get body as content. The archive is checked like
// FuzzExtract's.
func FuzzExtractEntries(f *testing.F) {
	f.Fuzz(func(t *testing.T, spec string, body []byte) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		lines := strings.Split(spec, "\n")
		if len(lines) > 64 {
			lines = lines[:64]
		}
		for _, line := range lines {
			if len(line) < 3 || line[1] != ' ' {
				continue
			}
			name, link, _ := strings.Cut(line[2:], " ")
			hdr := &tar.Header{Typeflag: line[0], Name: name, Linkname: link, Mode: 0o644, Format: tar.FormatPAX}
			var content []byte
			if hdr.Typeflag == tar.TypeReg {
				content = body
				hdr.Size = int64(len(content))
				if strings.HasSuffix(name, ".sh") {
					hdr.Mode = 0o4777 // setuid and world-writable: must come out 0755
				}
			}
			if err := tw.WriteHeader(hdr); err != nil {
				// The writer refuses some headers (e.g. NUL in names);
				// the reader's side is FuzzExtract's job.
				return
			}
			if _, err := tw.Write(content); err != nil {
				return
			}
		}
		if err := tw.Close(); err != nil {
			return
		}
		checkExtract(t, buf.Bytes())
	})
}

// checkExtract runs Extract on archive and asserts FuzzExtract's properties.
func checkExtract(t *testing.T, archive []byte) {
	t.Helper()
	parent := t.TempDir()
	root := filepath.Join(parent, "job")
	sentinel := filepath.Join(parent, "outside")
	for _, d := range []string{root, sentinel} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(sentinel, "secret")
	if err := os.WriteFile(secret, []byte("untouched"), 0o600); err != nil {
		t.Fatal(err)
	}

	extractErr := Extract(archive, root)

	// Nothing outside root.
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("extract created %d entries next to the target dir", len(entries)-2)
	}
	if out, err := os.ReadDir(sentinel); err != nil || len(out) != 1 {
		t.Fatalf("sentinel dir changed: %d entries, %v", len(out), err)
	}
	if data, err := os.ReadFile(secret); err != nil || string(data) != "untouched" {
		t.Fatalf("file outside the target changed: %q, %v", data, err)
	}
	if fi, err := os.Lstat(root); err != nil || !fi.IsDir() {
		t.Fatalf("target dir replaced: %v %v", fi, err)
	}

	tree := walkTree(t, root)
	var total int64
	for rel, e := range tree {
		switch {
		case e.mode.IsDir():
		case e.mode.IsRegular():
			if perm := e.mode.Perm(); perm&^0o755 != 0 || e.mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
				t.Fatalf("%s has mode %v", rel, e.mode)
			}
			total += int64(len(e.content))
		default:
			t.Fatalf("%s is not a regular file or directory: %v", rel, e.mode)
		}
	}
	if total > MaxBytes {
		t.Fatalf("extracted %d bytes, more than MaxBytes", total)
	}
	if extractErr != nil {
		if extractErr.Error() == "" {
			t.Fatal("empty error")
		}
		return
	}

	// Every file matches an entry; every entry's content is on disk.
	want := expectedTree(t, archive)
	for rel, e := range tree {
		w, ok := want[rel]
		if !ok {
			t.Fatalf("%s is on disk but named by no entry", rel)
		}
		if w.mode.IsDir() != e.mode.IsDir() {
			t.Fatalf("%s: dir on disk %v, dir in archive %v", rel, e.mode.IsDir(), w.mode.IsDir())
		}
		if !e.mode.IsDir() && !bytes.Equal(e.content, w.content) {
			t.Fatalf("%s: content %q on disk, %q in archive", rel, e.content, w.content)
		}
	}
	for rel := range want {
		if _, ok := tree[rel]; !ok {
			t.Fatalf("entry %s was not extracted", rel)
		}
	}

	// Round trip through Create.
	again, err := Create(root)
	if err != nil {
		t.Fatalf("create from extracted tree: %v", err)
	}
	root2 := filepath.Join(t.TempDir(), "again")
	if err := os.Mkdir(root2, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Extract(again, root2); err != nil {
		t.Fatalf("extract of Create's archive: %v", err)
	}
	tree2 := walkTree(t, root2)
	kept := 0
	for rel, e := range tree {
		if skippedByCreate(rel) {
			continue
		}
		kept++
		e2, ok := tree2[rel]
		if !ok || e2.mode != e.mode || !bytes.Equal(e2.content, e.content) {
			t.Fatalf("round trip: %s differs (%v %v)", rel, e2.mode, e.mode)
		}
	}
	if len(tree2) != kept {
		t.Fatalf("round trip: %d entries, want %d", len(tree2), kept)
	}
}

// skippedByCreate reports whether Create leaves rel out: state files,
// state directories (terraform.tfstate.d) and .terraform directories, with
// everything under them.
func skippedByCreate(rel string) bool {
	for _, part := range strings.Split(rel, "/") {
		if part == ".terraform" || strings.HasPrefix(part, "terraform.tfstate") {
			return true
		}
	}
	return false
}

type treeEntry struct {
	mode    fs.FileMode
	content []byte
}

// walkTree lists everything under root (slash-separated relative paths),
// without following links.
func walkTree(t *testing.T, root string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := treeEntry{mode: fi.Mode()}
		if fi.Mode().IsRegular() {
			if e.content, err = os.ReadFile(p); err != nil {
				return err
			}
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

// expectedTree is what a successful extraction of archive must leave: each
// entry's cleaned name (regular files with their content) and the parent
// directories of every entry.
func expectedTree(t *testing.T, archive []byte) map[string]treeEntry {
	t.Helper()
	want := map[string]treeEntry{}
	addParents := func(name string) {
		for dir := path.Dir(name); dir != "." && dir != "/"; dir = path.Dir(dir) {
			if _, ok := want[dir]; !ok {
				want[dir] = treeEntry{mode: fs.ModeDir}
			}
		}
	}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return want
		}
		if err != nil {
			t.Fatalf("Extract accepted an archive tar cannot read: %v", err)
		}
		name := path.Clean(hdr.Name)
		if name == "." {
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			want[name] = treeEntry{mode: fs.ModeDir}
			addParents(name)
		case tar.TypeReg:
			content, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("Extract accepted an entry tar cannot read: %v", err)
			}
			want[name] = treeEntry{content: content}
			addParents(name)
		case tar.TypeXGlobalHeader, tar.TypeXHeader:
		default:
			t.Fatalf("Extract accepted entry %q of type %q", hdr.Name, hdr.Typeflag)
		}
	}
}
