// Package templatearchive is the template source archive format: an uncompressed
// tar of a Terraform module's directory. `coder templates push` creates one with
// Create; the provisioner extracts it with Extract, which enforces the limits and
// path rules below so a template cannot write outside its job directory.
package templatearchive

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Limits applied when extracting a template archive.
const (
	// MaxFiles is the maximum number of entries in a template archive.
	MaxFiles = 10_000
	// MaxBytes is the maximum total size of the files in a template archive.
	MaxBytes = 128 << 20
)

// Extract extracts a template archive into dir, which must exist. Only regular
// files and directories are accepted; absolute paths, ".." components, links and
// devices are rejected, as are archives beyond MaxFiles entries or MaxBytes of
// file content. File modes are limited to 0755/0644, and an entry never
// overwrites an existing file.
func Extract(archive []byte, dir string) error {
	tr := tar.NewReader(bytes.NewReader(archive))
	var files int
	var total int64
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read template archive: %w", err)
		}
		files++
		if files > MaxFiles {
			return fmt.Errorf("template archive has more than %d entries", MaxFiles)
		}
		name, err := cleanArchivePath(hdr.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("create %s: %w", name, err)
			}
		case tar.TypeReg:
			if hdr.Size < 0 || total+hdr.Size > MaxBytes {
				return fmt.Errorf("template archive exceeds %d bytes", MaxBytes)
			}
			total += hdr.Size
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return fmt.Errorf("create directory for %s: %w", name, err)
			}
			mode := os.FileMode(0o644)
			if hdr.Mode&0o111 != 0 {
				mode = 0o755
			}
			if err := writeArchiveFile(target, mode, io.LimitReader(tr, hdr.Size)); err != nil {
				return fmt.Errorf("extract %s: %w", name, err)
			}
		case tar.TypeXGlobalHeader, tar.TypeXHeader:
			continue
		default:
			return fmt.Errorf("template archive entry %q: unsupported type %q (only files and directories)", hdr.Name, string(hdr.Typeflag))
		}
	}
}

// cleanArchivePath validates an archive entry name and returns it cleaned and
// relative ("" for the root itself).
func cleanArchivePath(name string) (string, error) {
	if strings.ContainsRune(name, 0) || strings.Contains(name, `\`) {
		return "", fmt.Errorf("template archive entry %q: invalid name", name)
	}
	if path.IsAbs(name) {
		return "", fmt.Errorf("template archive entry %q: absolute path", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("template archive entry %q: path traversal", name)
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", nil
	}
	return clean, nil
}

func writeArchiveFile(target string, mode os.FileMode, r io.Reader) error {
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// Create packs the regular files and directories under dir into a template
// archive with relative paths, skipping .terraform directories and state files
// and directories (terraform.tfstate*). Owners are cleared; symlinks and other special files are
// left out.
func Create(dir string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		base := d.Name()
		isState := strings.HasPrefix(base, "terraform.tfstate")
		if d.IsDir() && (base == ".terraform" || isState) {
			// Provider caches and state directories (terraform.tfstate.d
			// of CLI workspaces), with everything under them.
			return filepath.SkipDir
		}
		if isState {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() && !info.IsDir() {
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname, hdr.Uid, hdr.Gid = "", "", 0, 0
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tar %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar %s: %w", dir, err)
	}
	return buf.Bytes(), nil
}
