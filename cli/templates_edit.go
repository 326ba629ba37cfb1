package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/provisioner/templatearchive"
)

// templatesEditCommand is `coder templates edit TEMPLATE`: changes the
// template's settings (only the flags given) through PATCH
// /api/v2/templates/{template}.
func (r *root) templatesEditCommand() *cobra.Command {
	var (
		displayName, description, icon                        string
		defaultTTL, maxTTL, failureTTL, dormancy, dormantDel  time.Duration
		allowCancel, allowAutostart, allowAutostop, reqActive bool
	)
	cmd := &cobra.Command{
		Use:   "edit TEMPLATE",
		Short: "Edit a template's settings",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			client, err := r.client()
			if err != nil {
				return err
			}
			t, err := r.templateByArg(ctx, client, args[0])
			if err != nil {
				return err
			}
			fs := cmd.Flags()
			var req codersdk.UpdateTemplateMeta
			changed := false
			str := func(name string, v string, dst **string) {
				if fs.Changed(name) {
					*dst, changed = &v, true
				}
			}
			boolean := func(name string, v bool, dst **bool) {
				if fs.Changed(name) {
					*dst, changed = &v, true
				}
			}
			var durErr error
			dur := func(name string, v time.Duration, dst **int64) {
				if !fs.Changed(name) {
					return
				}
				if v < 0 {
					durErr = errors.Join(durErr, fmt.Errorf("--%s must not be negative", name))
					return
				}
				ms := v.Milliseconds()
				*dst, changed = &ms, true
			}
			str("display-name", displayName, &req.DisplayName)
			str("description", description, &req.Description)
			str("icon", icon, &req.Icon)
			boolean("allow-user-cancel-workspace-jobs", allowCancel, &req.AllowUserCancelWorkspaceJobs)
			boolean("require-active-version", reqActive, &req.RequireActiveVersion)
			boolean("allow-user-autostart", allowAutostart, &req.AllowUserAutostart)
			boolean("allow-user-autostop", allowAutostop, &req.AllowUserAutostop)
			dur("default-ttl", defaultTTL, &req.DefaultTTLMillis)
			dur("max-ttl", maxTTL, &req.MaxTTLMillis)
			dur("failure-ttl", failureTTL, &req.FailureTTLMillis)
			dur("dormancy-threshold", dormancy, &req.TimeTilDormantMillis)
			dur("dormancy-auto-deletion", dormantDel, &req.TimeTilDormantAutoDeleteMillis)
			if durErr != nil {
				return durErr
			}
			if !changed {
				return errors.New("nothing to change: pass at least one setting flag (see coder templates edit --help)")
			}
			updated, err := client.UpdateTemplateMeta(ctx, t.ID.String(), req)
			if err != nil {
				return fmt.Errorf("update template %q: %w", t.Name, err)
			}
			fmt.Fprintf(r.stdout, "Updated template %q.\n", updated.Name)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&displayName, "display-name", "", "Display name shown in the dashboard.")
	fs.StringVar(&description, "description", "", "Description.")
	fs.StringVar(&icon, "icon", "", "Icon URL or path (e.g. /icon/docker.svg).")
	fs.DurationVar(&defaultTTL, "default-ttl", 0, "Default time a started workspace runs before it stops (e.g. 8h; 0 never).")
	fs.DurationVar(&maxTTL, "max-ttl", 0, "Longest time a started workspace may run (0: no limit).")
	fs.DurationVar(&failureTTL, "failure-ttl", 0, "Delete workspaces whose latest build failed after this long (0 never).")
	fs.DurationVar(&dormancy, "dormancy-threshold", 0, "Mark workspaces dormant after this long without use (0 never).")
	fs.DurationVar(&dormantDel, "dormancy-auto-deletion", 0, "Delete dormant workspaces after this long (0 never).")
	fs.BoolVar(&allowCancel, "allow-user-cancel-workspace-jobs", true, "Let workspace owners cancel their builds.")
	fs.BoolVar(&allowAutostart, "allow-user-autostart", true, "Let users set an autostart schedule.")
	fs.BoolVar(&allowAutostop, "allow-user-autostop", true, "Let users set their own autostop TTL.")
	fs.BoolVar(&reqActive, "require-active-version", false, "Every start of a workspace builds the template's active version.")
	fs.BoolP("yes", "y", false, "Do not ask for confirmation (accepted for scripts; edit does not ask).")
	return cmd
}

// templatesDeleteCommand is `coder templates delete TEMPLATE...`: the
// server refuses a template that workspaces still use.
func (r *root) templatesDeleteCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:     "delete TEMPLATE...",
		Aliases: []string{"rm"},
		Short:   "Delete templates (refused while workspaces use them)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			client, err := r.client()
			if err != nil {
				return err
			}
			var ts []codersdk.Template
			for _, name := range args {
				t, err := r.templateByArg(ctx, client, name)
				if err != nil {
					return err
				}
				ts = append(ts, t)
			}
			if !yes {
				ok, err := r.confirm(fmt.Sprintf("Delete %d template(s): %v?", len(args), args))
				if err != nil {
					return err
				}
				if !ok {
					return errors.New("canceled")
				}
			}
			var errs []error
			for _, t := range ts {
				if err := client.DeleteTemplate(ctx, t.ID.String()); err != nil {
					errs = append(errs, fmt.Errorf("delete template %q: %w", t.Name, err))
					continue
				}
				fmt.Fprintf(r.stdout, "Deleted template %q.\n", t.Name)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "Do not ask for confirmation.")
	return cmd
}

// templatesPullCommand is `coder templates pull TEMPLATE [DIR]`: downloads
// a version's source archive (the active one unless --version) and
// extracts it into DIR (default: the template's name), which must be empty
// or absent; --tar writes the archive to stdout instead.
func (r *root) templatesPullCommand() *cobra.Command {
	var (
		version string
		asTar   bool
	)
	cmd := &cobra.Command{
		Use:   "pull TEMPLATE [DIR]",
		Short: "Download a template version's source into a directory",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			client, err := r.client()
			if err != nil {
				return err
			}
			t, err := r.templateByArg(ctx, client, args[0])
			if err != nil {
				return err
			}
			var v codersdk.TemplateVersion
			if version != "" {
				if v, err = templateVersionByName(ctx, client, t, version); err != nil {
					return err
				}
			} else if v, err = client.TemplateVersion(ctx, t.ActiveVersionID); err != nil {
				return fmt.Errorf("active version of %q: %w", t.Name, err)
			}
			data, _, err := client.Download(ctx, v.Job.FileID)
			if err != nil {
				return fmt.Errorf("download version %q: %w", v.Name, err)
			}
			if asTar {
				if len(args) == 2 {
					return errors.New("--tar writes to stdout and takes no directory")
				}
				_, err := bytes.NewReader(data).WriteTo(r.stdout)
				return err
			}
			dir := t.Name
			if len(args) == 2 {
				dir = args[1]
			}
			if err := emptyDir(dir); err != nil {
				return err
			}
			// Extract rejects absolute paths, "..", links and devices, and
			// never overwrites: an archive cannot write outside dir.
			if err := templatearchive.Extract(data, dir); err != nil {
				return fmt.Errorf("extract version %q into %s: %w", v.Name, dir, err)
			}
			abs, _ := filepath.Abs(dir)
			fmt.Fprintf(r.stdout, "Wrote version %q of template %q to %s.\n", v.Name, t.Name, abs)
			return nil
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "Version name (default: the active version).")
	cmd.Flags().BoolVar(&asTar, "tar", false, "Write the version's tar archive to stdout.")
	return cmd
}

// emptyDir creates dir when it is absent and fails unless it is an empty
// directory (not a symlink).
func emptyDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s exists and is not a directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s is not empty: pull into a new or empty directory", dir)
	}
	return nil
}
