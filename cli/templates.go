package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/examples"
	"github.com/wgmesh/coder/provisioner/templatearchive"
)

func (r *root) templatesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "templates",
		Aliases: []string{"template"},
		Short:   "Manage templates",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	versions := &cobra.Command{
		Use:   "versions",
		Short: "Manage template versions",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	versions.AddCommand(r.templateVersionsListCommand(), r.templateVersionsPromoteCommand(),
		r.templateVersionsArchiveCommand(true), r.templateVersionsArchiveCommand(false))
	cmd.AddCommand(r.templatesInitCommand(), r.templatesPushCommand(), r.templatesListCommand(), versions,
		r.templatesEditCommand(), r.templatesDeleteCommand(), r.templatesPullCommand())
	return cmd
}

func (r *root) templatesInitCommand() *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "init [directory]",
		Short: "Write an example template into a directory",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			dir := id
			if len(args) == 1 {
				dir = args[0]
			}
			src, err := examples.Template(id)
			if err != nil {
				return fmt.Errorf("example %q: %w", id, err)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("create %s: %w", dir, err)
			}
			err = fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				target := filepath.Join(dir, filepath.FromSlash(p))
				if d.IsDir() {
					return os.MkdirAll(target, 0o755)
				}
				data, err := fs.ReadFile(src, p)
				if err != nil {
					return err
				}
				if _, err := os.Stat(target); err == nil {
					return fmt.Errorf("%s already exists", target)
				}
				return os.WriteFile(target, data, 0o644)
			})
			if err != nil {
				return fmt.Errorf("write example: %w", err)
			}
			fmt.Fprintf(r.stdout, "Wrote the %q example template to %s.\nPush it with: coder templates push %s -d %s\n", id, dir, id, dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "local", "Example to write.")
	return cmd
}

func (r *root) templatesPushCommand() *cobra.Command {
	var (
		dir, versionName, message string
		yes, activate             bool
		rawTags, rawVars          []string
		varsFile                  string
	)
	cmd := &cobra.Command{
		Use:   "push [name]",
		Short: "Create or update a template from a directory",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			client, err := r.client()
			if err != nil {
				return err
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return fmt.Errorf("template directory: %w", err)
			}
			name := filepath.Base(abs)
			if len(args) == 1 {
				name = args[0]
			}
			if err := checkTemplateArg(name); err != nil {
				return err
			}
			tags, err := parseTags(rawTags)
			if err != nil {
				return err
			}
			vars, err := templateVariableValues(varsFile, rawVars)
			if err != nil {
				return err
			}
			existing, err := client.TemplateByName(ctx, name)
			exists := err == nil
			if err != nil {
				if apiErr, ok := codersdk.AsError(err); !ok || apiErr.StatusCode() != 404 {
					return err
				}
			}
			if !yes {
				verb := "create"
				if exists {
					verb = "update"
				}
				ok, err := r.confirm(fmt.Sprintf("Upload %s and %s template %q?", abs, verb, name))
				if err != nil {
					return err
				}
				if !ok {
					return errors.New("canceled")
				}
			}
			meta, err := readTemplateMeta(abs)
			if err != nil {
				return err
			}
			if meta.Warning != "" {
				fmt.Fprintf(r.stderr, "WARNING: template %q: %s\n", name, meta.Warning)
			}
			archive, err := templatearchive.Create(abs)
			if err != nil {
				return fmt.Errorf("archive %s: %w", abs, err)
			}
			up, err := client.Upload(ctx, codersdk.ContentTypeTar, bytes.NewReader(archive))
			if err != nil {
				return fmt.Errorf("upload template: %w", err)
			}
			req := codersdk.CreateTemplateVersionRequest{
				Name: versionName, Message: message, StorageMethod: "file", FileID: up.ID,
				Provisioner: "terraform", ProvisionerTags: tags, UserVariableValues: vars,
			}
			if exists {
				req.TemplateID = existing.ID
			}
			version, err := client.CreateTemplateVersion(ctx, req)
			if err != nil {
				return fmt.Errorf("create template version: %w", err)
			}
			fmt.Fprintf(r.stdout, "Template version %s: importing...\n", version.Name)
			job, err := r.followJob(ctx, client, version.Job, func(ctx context.Context, after int64) (<-chan codersdk.ProvisionerJobLog, io.Closer, error) {
				return client.TemplateVersionLogsAfter(ctx, version.ID, after, true)
			}, func(ctx context.Context) (codersdk.ProvisionerJob, error) {
				v, err := client.TemplateVersion(ctx, version.ID)
				return v.Job, err
			})
			if err != nil {
				return err
			}
			if job.Status != codersdk.ProvisionerJobSucceeded {
				return fmt.Errorf("template import %s: %s", job.Status, job.Error)
			}
			r.warnWithoutAgent(ctx, client, version.ID)
			if exists {
				if activate {
					if err := client.UpdateActiveTemplateVersion(ctx, existing.ID.String(), codersdk.UpdateActiveTemplateVersion{ID: version.ID}); err != nil {
						return fmt.Errorf("activate version: %w", err)
					}
				}
				fmt.Fprintf(r.stdout, "Updated template %q (version %s).\n", name, version.Name)
				return nil
			}
			t, err := client.CreateTemplate(ctx, codersdk.CreateTemplateRequest{
				Name: name, VersionID: version.ID, DisplayName: meta.DisplayName, Description: meta.Description,
			})
			if err != nil {
				return fmt.Errorf("create template: %w", err)
			}
			fmt.Fprintf(r.stdout, "Created template %q (%s).\n", t.Name, t.ID)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&dir, "directory", "d", ".", "Template directory.")
	fs.StringVar(&versionName, "name", "", "Version name (default: random).")
	fs.StringVarP(&message, "message", "m", "", "Version message.")
	fs.BoolVarP(&yes, "yes", "y", false, "Do not ask for confirmation.")
	fs.BoolVar(&activate, "activate", true, "Make the new version the active one.")
	fs.StringArrayVarP(&rawTags, "provisioner-tag", "t", nil, "Provisioner tag key=value the import and builds require (repeatable).")
	fs.StringArrayVar(&rawVars, "variable", nil, "Value of a Terraform variable of the template, name=value (repeatable; wins over --variables-file).")
	fs.StringVar(&varsFile, "variables-file", "", "YAML file of Terraform variable values (name: value per line).")
	return cmd
}

// warnWithoutAgent warns (on stderr) when an imported template defines no
// coder_agent: coderd accepts it, but its workspaces cannot be reached
// (no ssh, apps or port forwarding). An empty main.tf is the usual cause.
func (r *root) warnWithoutAgent(ctx context.Context, client *codersdk.Client, version uuid.UUID) {
	resources, err := client.TemplateVersionResources(ctx, version)
	if err != nil {
		fmt.Fprintf(r.stderr, "warning: could not check the template for a coder_agent: %v\n", err)
		return
	}
	for _, res := range resources {
		if len(res.Agents) > 0 {
			return
		}
	}
	what := "it has no resources at all"
	if len(resources) > 0 {
		what = "none of its resources has an agent"
	}
	fmt.Fprintf(r.stderr, "warning: the template defines no coder_agent (%s): workspaces built from it cannot be reached with ssh, apps or port forwarding\n", what)
}

// confirm asks a yes/no question on stderr (stdout stays clean for
// scripts); non-interactive input must pass -y/--yes.
func (r *root) confirm(question string) (bool, error) {
	fmt.Fprintf(r.stderr, "%s [y/N] ", question)
	buf := make([]byte, 64)
	n, err := r.stdin.Read(buf)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read answer: %w", err)
	}
	if n == 0 {
		return false, errors.New("no answer on stdin: pass -y to skip the confirmation")
	}
	answer := strings.ToLower(strings.TrimSpace(string(buf[:n])))
	return answer == "y" || answer == "yes", nil
}

func (r *root) templatesListCommand() *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List templates",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			client, err := r.client()
			if err != nil {
				return err
			}
			ts, err := client.Templates(cmd.Context())
			if err != nil {
				return err
			}
			if out.value == "json" {
				return writeJSON(r.stdout, ts)
			}
			rows := make([][]string, 0, len(ts))
			for _, t := range ts {
				rows = append(rows, []string{t.Name, humanTime(t.UpdatedAt), fmt.Sprint(t.ActiveUserCount), t.ActiveVersionID.String(), t.CreatedByName})
			}
			return writeTable(r.stdout, []string{"NAME", "LAST UPDATED", "WORKSPACES", "ACTIVE VERSION", "CREATED BY"}, rows)
		},
	}
	addOutputFlag(cmd, &out, "table")
	return cmd
}

func (r *root) templateVersionsListCommand() *cobra.Command {
	var (
		out             outputFormat
		includeArchived bool
	)
	cmd := &cobra.Command{
		Use:     "list TEMPLATE",
		Aliases: []string{"ls"},
		Short:   "List the versions of a template",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			client, err := r.client()
			if err != nil {
				return err
			}
			if err := checkTemplateArg(args[0]); err != nil {
				return err
			}
			t, err := client.TemplateByName(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			list := client.TemplateVersionsByTemplate
			if includeArchived {
				list = client.TemplateVersionsByTemplateIncludingArchived
			}
			vs, err := list(cmd.Context(), t.ID.String())
			if err != nil {
				return err
			}
			if out.value == "json" {
				return writeJSON(r.stdout, vs)
			}
			rows := make([][]string, 0, len(vs))
			for _, v := range vs {
				active := ""
				if v.ID == t.ActiveVersionID {
					active = "Active"
				} else if v.Archived {
					active = "Archived"
				}
				rows = append(rows, []string{v.Name, humanTime(v.CreatedAt), v.CreatedBy.Username, string(v.Job.Status), active})
			}
			return writeTable(r.stdout, []string{"NAME", "CREATED AT", "CREATED BY", "STATUS", "ACTIVE"}, rows)
		},
	}
	cmd.Flags().BoolVar(&includeArchived, "include-archived", false, "List archived versions too.")
	addOutputFlag(cmd, &out, "table")
	return cmd
}

// followJob streams a job's logs to stdout with a progress indicator (the
// current stage) until the job ends, and returns the final job; the caller
// reports a failed job's error.
func (r *root) followJob(ctx context.Context, _ *codersdk.Client, job codersdk.ProvisionerJob,
	logs func(context.Context, int64) (<-chan codersdk.ProvisionerJobLog, io.Closer, error),
	get func(context.Context) (codersdk.ProvisionerJob, error),
) (codersdk.ProvisionerJob, error) {
	if job.Status == codersdk.ProvisionerJobPending && job.Detail != "" {
		fmt.Fprintf(r.stdout, "⧗ Queued: %s\n", job.Detail)
	}
	ch, closer, err := logs(ctx, 0)
	if err != nil {
		return job, fmt.Errorf("follow logs: %w", err)
	}
	defer closer.Close()
	stage := ""
	for l := range ch {
		if l.Stage != stage {
			stage = l.Stage
			fmt.Fprintf(r.stdout, "==> ⧗ %s\n", stage)
		}
		fmt.Fprintf(r.stdout, "    %s\n", l.Output)
	}
	if ctx.Err() != nil {
		return job, ctx.Err()
	}
	final, err := get(ctx)
	if err != nil {
		return job, err
	}
	mark := "✔"
	if final.Status != codersdk.ProvisionerJobSucceeded {
		mark = "✘"
	}
	fmt.Fprintf(r.stdout, "==> %s %s\n", mark, strings.ToUpper(string(final.Status[:1]))+string(final.Status[1:]))
	// The job's error is the caller's to report (once, on stderr).
	return final, nil
}

// templateMeta is the front matter of a template's README.md: a block of
// "key: value" lines between two "---" lines at the top of the file
// (display_name, description, warning; other keys are ignored).
type templateMeta struct {
	DisplayName string
	Description string
	// Warning is printed by every push of the template (e.g. "single-user
	// only"); the template's description should say it too.
	Warning string
}

// readTemplateMeta reads the front matter of dir/README.md; a template
// without a README or without front matter has none.
func readTemplateMeta(dir string) (templateMeta, error) {
	var meta templateMeta
	data, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if errors.Is(err, fs.ErrNotExist) {
		return meta, nil
	}
	if err != nil {
		return meta, fmt.Errorf("read template README: %w", err)
	}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	if len(lines) == 0 || strings.TrimSpace(lines[0]) != "---" {
		return meta, nil
	}
	for _, line := range lines[1:] {
		if strings.TrimSpace(line) == "---" {
			return meta, checkTemplateMeta(meta)
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		value = strings.Trim(strings.TrimSpace(value), `"`)
		switch strings.TrimSpace(key) {
		case "display_name":
			meta.DisplayName = value
		case "description":
			meta.Description = value
		case "warning":
			meta.Warning = value
		}
	}
	// No closing "---": not front matter.
	return templateMeta{}, nil
}

// checkTemplateMeta bounds the front matter values by what a template
// stores (display name 64, description 128 characters).
func checkTemplateMeta(meta templateMeta) error {
	if n := utf8.RuneCountInString(meta.DisplayName); n > 64 {
		return fmt.Errorf("README.md front matter: display_name has %d characters, at most 64", n)
	}
	if n := utf8.RuneCountInString(meta.Description); n > 128 {
		return fmt.Errorf("README.md front matter: description has %d characters, at most 128", n)
	}
	return nil
}
