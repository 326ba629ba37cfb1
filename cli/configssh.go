package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// Markers of the block config-ssh manages in an OpenSSH config file.
const (
	sshBlockStart = "# ------------START-CODER-----------"
	sshBlockEnd   = "# ------------END-CODER------------"
	// sshHostPrefix is the host alias prefix: `ssh coder.WORKSPACE`.
	sshHostPrefix = "coder."
)

// sshConfigBlock renders the managed block (without a trailing newline).
func sshConfigBlock(binary, configDir string, sshFlags ...string) string {
	extra := ""
	for _, f := range sshFlags {
		extra += " " + f
	}
	proxy := fmt.Sprintf("%s --global-config %s ssh --stdio%s --ssh-host-prefix %s %%h",
		shellQuote(binary), shellQuote(configDir), extra, sshHostPrefix)
	lines := []string{
		sshBlockStart,
		"# This block is managed by 'coder config-ssh'. Edits inside it are lost",
		"# on the next run; everything outside it is left alone.",
		"Host " + sshHostPrefix + "*",
		"  ConnectTimeout 0",
		"  StrictHostKeyChecking no",
		"  UserKnownHostsFile /dev/null",
		"  LogLevel ERROR",
		"  ProxyCommand " + proxy,
		sshBlockEnd,
	}
	return strings.Join(lines, "\n")
}

// shellQuote quotes s for the shell OpenSSH runs ProxyCommand with.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+=:@,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// findSSHBlock locates the managed block in content: start and end are
// byte offsets of the block's first byte and of the byte after its end
// marker line (including its newline). ok is false when there is none; a
// malformed block (unbalanced or repeated markers) is an error.
func findSSHBlock(content string) (start, end int, ok bool, err error) {
	lines := strings.SplitAfter(content, "\n")
	offset := 0
	start, end = -1, -1
	for i, line := range lines {
		trimmed := strings.TrimSpace(line)
		switch trimmed {
		case sshBlockStart:
			if start >= 0 {
				return 0, 0, false, fmt.Errorf("line %d: a second start marker %q", i+1, sshBlockStart)
			}
			start = offset
		case sshBlockEnd:
			if start < 0 {
				return 0, 0, false, fmt.Errorf("line %d: end marker %q without a start marker", i+1, sshBlockEnd)
			}
			if end >= 0 {
				return 0, 0, false, fmt.Errorf("line %d: a second end marker %q", i+1, sshBlockEnd)
			}
			end = offset + len(line)
		}
		offset += len(line)
	}
	switch {
	case start < 0:
		return 0, 0, false, nil
	case end < 0:
		return 0, 0, false, fmt.Errorf("start marker %q without an end marker", sshBlockStart)
	}
	return start, end, true, nil
}

// updateSSHConfig returns content with the managed block replaced by (or,
// when absent, appended as) block. Bytes outside the block never change.
func updateSSHConfig(content, block string) (string, error) {
	start, end, ok, err := findSSHBlock(content)
	if err != nil {
		return "", err
	}
	if ok {
		return content[:start] + block + "\n" + content[end:], nil
	}
	switch {
	case content == "":
		return block + "\n", nil
	case strings.HasSuffix(content, "\n\n"):
		return content + block + "\n", nil
	case strings.HasSuffix(content, "\n"):
		return content + "\n" + block + "\n", nil
	default:
		return content + "\n\n" + block + "\n", nil
	}
}

// blockDiff shows the lines of the managed block that change.
func blockDiff(path, before, after string) string {
	oldBlock, newBlock := "", ""
	if s, e, ok, _ := findSSHBlock(before); ok {
		oldBlock = before[s:e]
	}
	if s, e, ok, _ := findSSHBlock(after); ok {
		newBlock = after[s:e]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s\n+++ %s (new)\n", path, path)
	oldLines := strings.Split(strings.TrimSuffix(oldBlock, "\n"), "\n")
	newLines := strings.Split(strings.TrimSuffix(newBlock, "\n"), "\n")
	inNew := map[string]int{}
	for _, l := range newLines {
		inNew[l]++
	}
	inOld := map[string]int{}
	for _, l := range oldLines {
		inOld[l]++
	}
	for _, l := range oldLines {
		if oldBlock != "" && inNew[l] == 0 {
			fmt.Fprintf(&b, "-%s\n", l)
		}
	}
	for _, l := range newLines {
		if oldBlock == "" || inOld[l] == 0 {
			fmt.Fprintf(&b, "+%s\n", l)
		} else {
			fmt.Fprintf(&b, " %s\n", l)
		}
	}
	return b.String()
}

// writeFileAtomic replaces path with data, keeping its mode (0600 for a
// new file).
func writeFileAtomic(path string, data []byte) error {
	mode := fs.FileMode(0o600)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".coder-ssh-config-*")
	if err != nil {
		return fmt.Errorf("create temp file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write temp file: %w", err)
	}
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("chmod temp file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close temp file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

func (r *root) configSSHCommand() *cobra.Command {
	var (
		yes              bool
		dryRun           bool
		disableAutostart bool
		configFile       string
		binaryPath       string
	)
	cmd := &cobra.Command{
		Use:   "config-ssh",
		Short: "Add a block to the OpenSSH config so that `ssh coder.WORKSPACE` works",
		Long: "Write a marked block into ~/.ssh/config: hosts coder.WORKSPACE and coder.WORKSPACE.AGENT are reached\n" +
			"through `coder ssh --stdio` (ProxyCommand), so plain ssh, scp, sftp, rsync, git and VS Code\n" +
			"Remote-SSH work. Running it again changes nothing; content outside the block is never touched.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Fail early when not logged in: the ProxyCommand would fail later.
			if _, err := r.client(); err != nil {
				return err
			}
			dir, err := r.configDir()
			if err != nil {
				return err
			}
			absDir, err := filepath.Abs(string(dir))
			if err != nil {
				return fmt.Errorf("config dir: %w", err)
			}
			if binaryPath == "" {
				binaryPath, err = os.Executable()
				if err != nil {
					return fmt.Errorf("find the coder binary: %w", err)
				}
			}
			if configFile == "" {
				home, err := r.homeDir()
				if err != nil {
					return err
				}
				configFile = filepath.Join(home, ".ssh", "config")
			} else if strings.HasPrefix(configFile, "~/") {
				home, err := r.homeDir()
				if err != nil {
					return err
				}
				configFile = filepath.Join(home, configFile[2:])
			}
			raw, err := os.ReadFile(configFile)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("read %s: %w", configFile, err)
			}
			before := string(raw)
			var sshFlags []string
			if disableAutostart {
				sshFlags = append(sshFlags, "--disable-autostart")
			}
			after, err := updateSSHConfig(before, sshConfigBlock(binaryPath, absDir, sshFlags...))
			if err != nil {
				return fmt.Errorf("malformed coder block in %s: %w; fix or remove it by hand, nothing was changed", configFile, err)
			}
			if after == before {
				fmt.Fprintf(r.stdout, "No changes to %s: the coder block is up to date.\n", configFile)
				return nil
			}
			fmt.Fprint(r.stdout, blockDiff(configFile, before, after))
			if dryRun {
				fmt.Fprintln(r.stdout, "Dry run: nothing written.")
				return nil
			}
			if !yes {
				ok, err := r.confirm(fmt.Sprintf("Update %s?", configFile))
				if err != nil {
					return err
				}
				if !ok {
					return errors.New("canceled: nothing written")
				}
			}
			if err := writeFileAtomic(configFile, []byte(after)); err != nil {
				return err
			}
			fmt.Fprintf(r.stdout, "Updated %s: run `ssh %sWORKSPACE` to connect.\n", configFile, sshHostPrefix)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.BoolVarP(&yes, "yes", "y", false, "Write without asking.")
	fs.BoolVar(&dryRun, "dry-run", false, "Show the change without writing it.")
	fs.BoolVar(&disableAutostart, "disable-autostart", false, "The ProxyCommand does not start stopped workspaces (coder ssh --disable-autostart).")
	envFlag(fs, "disable-autostart", "CODER_CONFIGSSH_DISABLE_AUTOSTART")
	fs.StringVar(&configFile, "ssh-config-file", "", "OpenSSH config file to update (default ~/.ssh/config).")
	envFlag(fs, "ssh-config-file", "CODER_SSH_CONFIG_FILE")
	fs.StringVar(&binaryPath, "coder-binary-path", "", "The coder binary the ProxyCommand runs (default: this executable).")
	_ = fs.MarkHidden("coder-binary-path")
	return cmd
}
