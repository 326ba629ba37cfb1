package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// maxStderrInError bounds how much of a failed program's stderr lands in the
// diagnostic.
const maxStderrInError = 16 << 10

func newExternalDataSource() datasource.DataSource { return &externalDataSource{} }

type externalDataSource struct{}

// externalModel is the data source's configuration and result.
type externalModel struct {
	Program    types.List   `tfsdk:"program"`
	WorkingDir types.String `tfsdk:"working_dir"`
	Query      types.Map    `tfsdk:"query"`
	Result     types.Map    `tfsdk:"result"`
	ID         types.String `tfsdk:"id"`
}

func (d *externalDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	// The data source is named like the provider: data "external" "x" {}.
	resp.TypeName = req.ProviderTypeName
}

func (d *externalDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Runs a program that reads a JSON object from stdin and prints a JSON object of strings.",
		Attributes: map[string]schema.Attribute{
			"program": schema.ListAttribute{
				Description: "The program and its arguments; the first element is looked up in PATH.",
				ElementType: types.StringType,
				Required:    true,
			},
			"working_dir": schema.StringAttribute{
				Description: "Working directory of the program; default: terraform's.",
				Optional:    true,
			},
			"query": schema.MapAttribute{
				Description: "String values passed to the program as a JSON object on stdin.",
				ElementType: types.StringType,
				Optional:    true,
			},
			"result": schema.MapAttribute{
				Description: "The JSON object of strings the program printed on stdout.",
				ElementType: types.StringType,
				Computed:    true,
			},
			"id": schema.StringAttribute{
				Description: "Always \"-\".",
				Computed:    true,
			},
		},
	}
}

func (d *externalDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m externalModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var program []types.String
	resp.Diagnostics.Append(m.Program.ElementsAs(ctx, &program, false)...)
	if resp.Diagnostics.HasError() {
		return
	}
	args := make([]string, 0, len(program))
	for i, p := range program {
		if p.IsNull() || p.IsUnknown() {
			resp.Diagnostics.AddAttributeError(path.Root("program").AtListIndex(i), "Invalid program",
				fmt.Sprintf("program element %d must be a known, non-null string", i))
			return
		}
		args = append(args, p.ValueString())
	}
	if len(args) == 0 || args[0] == "" {
		resp.Diagnostics.AddAttributeError(path.Root("program"), "Invalid program", "program must name at least the program to run")
		return
	}
	query := map[string]string{}
	if !m.Query.IsNull() {
		var q map[string]types.String
		resp.Diagnostics.Append(m.Query.ElementsAs(ctx, &q, false)...)
		if resp.Diagnostics.HasError() {
			return
		}
		for k, v := range q {
			if v.IsNull() {
				resp.Diagnostics.AddAttributeError(path.Root("query").AtMapKey(k), "Invalid query",
					fmt.Sprintf("query value %q is null; the program receives strings only", k))
				return
			}
			query[k] = v.ValueString()
		}
	}
	result, err := run(ctx, args, m.WorkingDir.ValueString(), query)
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("program"), "External program failed", err.Error())
		return
	}
	values := make(map[string]attr.Value, len(result))
	for k, v := range result {
		values[k] = types.StringValue(v)
	}
	res, diags := types.MapValue(types.StringType, values)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	m.Result = res
	m.ID = types.StringValue("-")
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// run executes args with query as JSON on stdin and decodes its stdout, which
// must be one JSON object whose values are all strings.
func run(ctx context.Context, args []string, dir string, query map[string]string) (map[string]string, error) {
	bin, err := exec.LookPath(args[0])
	if err != nil {
		return nil, fmt.Errorf("find program %q: %w", args[0], err)
	}
	input, err := json.Marshal(query)
	if err != nil {
		return nil, fmt.Errorf("encode query: %w", err)
	}
	cmd := exec.CommandContext(ctx, bin, args[1:]...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(input)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > maxStderrInError {
			msg = msg[:maxStderrInError] + "…"
		}
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) && msg != "" {
			return nil, fmt.Errorf("program %q exited with status %d: %s", args[0], exitErr.ExitCode(), msg)
		}
		return nil, fmt.Errorf("run program %q: %w", args[0], err)
	}
	var raw map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &raw); err != nil {
		return nil, fmt.Errorf("program %q must print a JSON object of strings on stdout: %w (output: %.200q)", args[0], err, stdout.String())
	}
	if raw == nil {
		return nil, fmt.Errorf("program %q printed null, not a JSON object of strings", args[0])
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("program %q printed a non-string value for %q (%T); every value must be a string", args[0], k, v)
		}
		out[k] = s
	}
	return out, nil
}
