package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/codersdk"
)

// templateVersionByName finds a version of a template by name (archived
// versions included).
func templateVersionByName(ctx context.Context, client *codersdk.Client, t codersdk.Template, name string) (codersdk.TemplateVersion, error) {
	vs, err := client.TemplateVersionsByTemplateIncludingArchived(ctx, t.ID.String())
	if err != nil {
		return codersdk.TemplateVersion{}, fmt.Errorf("list versions of %q: %w", t.Name, err)
	}
	for _, v := range vs {
		if strings.EqualFold(v.Name, name) || v.ID.String() == name {
			return v, nil
		}
	}
	return codersdk.TemplateVersion{}, fmt.Errorf("template %q has no version %q (coder templates versions list %s --include-archived lists them)", t.Name, name, t.Name)
}

// templateByArg checks and looks up a template argument.
func (r *root) templateByArg(ctx context.Context, client *codersdk.Client, name string) (codersdk.Template, error) {
	if err := checkTemplateArg(name); err != nil {
		return codersdk.Template{}, err
	}
	t, err := client.TemplateByName(ctx, name)
	if err != nil {
		return t, fmt.Errorf("template %q: %w", name, err)
	}
	return t, nil
}

// templateVersionsPromoteCommand is `coder templates versions promote
// --template T --template-version V`: makes V the active version.
func (r *root) templateVersionsPromoteCommand() *cobra.Command {
	var template, version string
	cmd := &cobra.Command{
		Use:   "promote --template TEMPLATE --template-version VERSION",
		Short: "Make a template version the active one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if template == "" || version == "" {
				return errors.New("both --template and --template-version are required")
			}
			client, err := r.client()
			if err != nil {
				return err
			}
			t, err := r.templateByArg(ctx, client, template)
			if err != nil {
				return err
			}
			v, err := templateVersionByName(ctx, client, t, version)
			if err != nil {
				return err
			}
			if err := client.UpdateActiveTemplateVersion(ctx, t.ID.String(), codersdk.UpdateActiveTemplateVersion{ID: v.ID}); err != nil {
				return fmt.Errorf("promote %q: %w", v.Name, err)
			}
			fmt.Fprintf(r.stdout, "Version %q is now the active version of template %q.\n", v.Name, t.Name)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&template, "template", "t", "", "Template name.")
	envFlag(fs, "template", "CODER_TEMPLATE_NAME")
	fs.StringVar(&version, "template-version", "", "Name of the version to promote.")
	envFlag(fs, "template-version", "CODER_TEMPLATE_VERSION_NAME")
	return cmd
}

// templateVersionsArchiveCommand builds `coder templates versions archive`
// and `unarchive`: TEMPLATE VERSION... (archive also takes --all: every
// version except the active one and imports still running).
func (r *root) templateVersionsArchiveCommand(archive bool) *cobra.Command {
	var all, yes bool
	use, short := "archive", "Archive template versions (hidden, unusable by new builds)"
	if !archive {
		use, short = "unarchive", "Unarchive template versions"
	}
	cmd := &cobra.Command{
		Use:   use + " TEMPLATE [VERSION...]",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
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
			names := args[1:]
			if len(names) == 0 && !all {
				return fmt.Errorf("name the versions to %s (or pass --all)", use)
			}
			if len(names) > 0 && all {
				return errors.New("--all takes no version names")
			}
			var versions []codersdk.TemplateVersion
			if all {
				vs, err := client.TemplateVersionsByTemplateIncludingArchived(ctx, t.ID.String())
				if err != nil {
					return err
				}
				for _, v := range vs {
					if v.ID != t.ActiveVersionID && v.Archived != archive && !v.Job.Status.Active() {
						versions = append(versions, v)
					}
				}
				if len(versions) == 0 {
					fmt.Fprintf(r.stdout, "No version of template %q to %s.\n", t.Name, use)
					return nil
				}
			} else {
				for _, n := range names {
					v, err := templateVersionByName(ctx, client, t, n)
					if err != nil {
						return err
					}
					versions = append(versions, v)
				}
			}
			if !yes {
				list := make([]string, len(versions))
				for i, v := range versions {
					list[i] = v.Name
				}
				ok, err := r.confirm(fmt.Sprintf("%s version(s) %s of template %q?", strings.ToUpper(use[:1])+use[1:], strings.Join(list, ", "), t.Name))
				if err != nil {
					return err
				}
				if !ok {
					return errors.New("canceled")
				}
			}
			var errs []error
			for _, v := range versions {
				if archive {
					err = client.ArchiveTemplateVersion(ctx, v.ID)
				} else {
					err = client.UnarchiveTemplateVersion(ctx, v.ID)
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("%s %q: %w", use, v.Name, err))
					continue
				}
				fmt.Fprintf(r.stdout, "Version %q of template %q %sd.\n", v.Name, t.Name, use)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "Do not ask for confirmation.")
	if archive {
		cmd.Flags().BoolVar(&all, "all", false, "Archive every version except the active one (and imports still running).")
	}
	return cmd
}
