package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/wgmesh/coder/codersdk"
)

// parameterFlags are the rich parameter inputs of create, start, restart.
type parameterFlags struct {
	values          []string // --parameter name=value
	file            string   // --rich-parameter-file params.yaml
	ephemeral       []string // --ephemeral-parameter name=value
	promptEphemeral bool     // --prompt-ephemeral-parameters
	copyFrom        string   // --copy-parameters-from WORKSPACE (create)
}

func addParameterFlags(cmd *cobra.Command, p *parameterFlags, create bool) {
	fs := cmd.Flags()
	fs.StringArrayVar(&p.values, "parameter", nil, "Rich parameter name=value (repeatable).")
	envFlag(fs, "parameter", "CODER_RICH_PARAMETER")
	fs.StringVar(&p.file, "rich-parameter-file", "", "YAML file of rich parameter values (name: value).")
	envFlag(fs, "rich-parameter-file", "CODER_RICH_PARAMETER_FILE")
	if create {
		fs.StringVar(&p.copyFrom, "copy-parameters-from", "", "Take parameter values from this workspace's latest build (flags and the file still win).")
		envFlag(fs, "copy-parameters-from", "CODER_WORKSPACE_COPY_PARAMETERS_FROM")
		return
	}
	fs.StringArrayVar(&p.ephemeral, "ephemeral-parameter", nil, "Ephemeral parameter name=value for this build only (repeatable).")
	envFlag(fs, "ephemeral-parameter", "CODER_EPHEMERAL_PARAMETER")
	fs.BoolVar(&p.promptEphemeral, "prompt-ephemeral-parameters", false, "Ask for the value of every ephemeral parameter.")
	envFlag(fs, "prompt-ephemeral-parameters", "CODER_PROMPT_EPHEMERAL_PARAMETERS")
}

// readParameterFile reads a YAML map of parameter values. Scalars become
// their text; lists (for list(string) parameters) become JSON arrays.
func readParameterFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read rich parameter file: %w", err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("rich parameter file %s: want a YAML map of name: value: %w", path, err)
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		switch v := v.(type) {
		case string:
			out[k] = v
		case []any:
			b, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("rich parameter file %s: %s: %w", path, k, err)
			}
			out[k] = string(b)
		case map[string]any:
			return nil, fmt.Errorf("rich parameter file %s: %s: a value must be a scalar or a list", path, k)
		case nil:
			out[k] = ""
		default:
			out[k] = fmt.Sprint(v)
		}
	}
	return out, nil
}

// buildParameterRequest is what resolveBuildParameters needs besides the
// flags.
type buildParameterRequest struct {
	versionID uuid.UUID
	// creating is true for a new workspace: parameters without a value
	// are asked for (or left to their defaults with -y).
	creating bool
	// yes skips every prompt (defaults are used; a required parameter
	// without a value is an error).
	yes bool
	// copied are the values of --copy-parameters-from.
	copied map[string]string
}

// resolveBuildParameters turns the flags into the values sent with a build:
// --parameter over --rich-parameter-file over copied values; on create,
// parameters left without a value are asked for on a terminal. Ephemeral
// parameters are sent only when given by --ephemeral-parameter or asked
// for (--prompt-ephemeral-parameters); otherwise the build uses their
// defaults. coderd validates everything again.
func (r *root) resolveBuildParameters(ctx context.Context, client *codersdk.Client, f parameterFlags, req buildParameterRequest) ([]codersdk.WorkspaceBuildParameter, error) {
	given := map[string]string{}
	for k, v := range req.copied {
		given[k] = v
	}
	if f.file != "" {
		fromFile, err := readParameterFile(f.file)
		if err != nil {
			return nil, err
		}
		for k, v := range fromFile {
			given[k] = v
		}
	}
	flagValues, err := parseParameters(f.values)
	if err != nil {
		return nil, err
	}
	for _, v := range flagValues {
		given[v.Name] = v.Value
	}
	ephemeral, err := parseParameters(f.ephemeral)
	if err != nil {
		return nil, err
	}
	params, err := client.TemplateVersionRichParameters(ctx, req.versionID)
	if err != nil {
		return nil, fmt.Errorf("get the template's parameters: %w", err)
	}
	known := map[string]codersdk.TemplateVersionParameter{}
	for _, p := range params {
		known[p.Name] = p
	}
	for _, e := range ephemeral {
		p, ok := known[e.Name]
		if !ok {
			return nil, fmt.Errorf("--ephemeral-parameter %q: the template has no such parameter", e.Name)
		}
		if !p.Ephemeral {
			return nil, fmt.Errorf("--ephemeral-parameter %q: the parameter is not ephemeral (use --parameter)", e.Name)
		}
	}
	var pr *prompter
	ask := func(p codersdk.TemplateVersionParameter) (string, error) {
		if pr == nil {
			var ok bool
			if pr, ok = r.prompter(); !ok {
				return "", fmt.Errorf("parameter %q needs a value: pass --parameter %s=VALUE or --rich-parameter-file (stdin is not a terminal)", p.Name, p.Name)
			}
		}
		return pr.parameter(p)
	}
	var out []codersdk.WorkspaceBuildParameter
	for _, p := range params {
		if p.Ephemeral {
			if i := slices.IndexFunc(ephemeral, func(e codersdk.WorkspaceBuildParameter) bool { return e.Name == p.Name }); i >= 0 {
				out = append(out, ephemeral[i])
				continue
			}
			if v, ok := given[p.Name]; ok && flagHas(flagValues, p.Name) {
				out = append(out, codersdk.WorkspaceBuildParameter{Name: p.Name, Value: v})
				continue
			}
			if f.promptEphemeral {
				v, err := ask(p)
				if err != nil {
					return nil, err
				}
				out = append(out, codersdk.WorkspaceBuildParameter{Name: p.Name, Value: v})
			}
			continue
		}
		if v, ok := given[p.Name]; ok {
			out = append(out, codersdk.WorkspaceBuildParameter{Name: p.Name, Value: v})
			continue
		}
		if !req.creating {
			continue // the previous build's value is kept by coderd
		}
		if req.yes {
			if p.Required {
				return nil, fmt.Errorf("parameter %q is required: pass --parameter %s=VALUE or --rich-parameter-file", p.Name, p.Name)
			}
			continue
		}
		if _, ok := r.stdinTerminal(); !ok && !p.Required {
			continue // scripts get the defaults
		}
		v, err := ask(p)
		if err != nil {
			return nil, err
		}
		out = append(out, codersdk.WorkspaceBuildParameter{Name: p.Name, Value: v})
	}
	// Values for parameters the template does not define go to coderd,
	// which names them in its refusal.
	for _, v := range flagValues {
		if _, ok := known[v.Name]; !ok {
			out = append(out, v)
		}
	}
	return out, nil
}

func flagHas(values []codersdk.WorkspaceBuildParameter, name string) bool {
	return slices.ContainsFunc(values, func(v codersdk.WorkspaceBuildParameter) bool { return v.Name == name })
}

// copyParameters returns the values of a workspace's latest build.
func (r *root) copyParameters(ctx context.Context, client *codersdk.Client, arg string) (map[string]string, error) {
	ws, err := r.workspaceByArg(ctx, client, arg)
	if err != nil {
		return nil, fmt.Errorf("--copy-parameters-from: %w", err)
	}
	values, err := client.WorkspaceBuildParameters(ctx, ws.LatestBuild.ID)
	if err != nil {
		return nil, fmt.Errorf("--copy-parameters-from %s: get its parameters: %w", arg, err)
	}
	out := make(map[string]string, len(values))
	for _, v := range values {
		out[v.Name] = v.Value
	}
	return out, nil
}

// parameter asks for one parameter's value: options by number or value,
// Enter for the default, re-asking until the value is acceptable.
func (p *prompter) parameter(tp codersdk.TemplateVersionParameter) (string, error) {
	name := tp.DisplayName
	if name == "" {
		name = tp.Name
	}
	fmt.Fprintf(p.out, "\n%s", name)
	if tp.Required {
		fmt.Fprint(p.out, " (required)")
	}
	if tp.Mutable {
		fmt.Fprintln(p.out)
	} else {
		fmt.Fprintln(p.out, " — cannot be changed after the workspace is created")
	}
	if tp.Description != "" {
		fmt.Fprintf(p.out, "  %s\n", strings.TrimSpace(tp.Description))
	}
	for i, o := range tp.Options {
		fmt.Fprintf(p.out, "  %d) %s (%s)\n", i+1, o.Name, o.Value)
	}
	question := tp.Name
	if !tp.Required {
		question += fmt.Sprintf(" [default %q]", tp.DefaultValue)
	}
	for {
		fmt.Fprintf(p.out, "> %s: ", question)
		s, err := p.in.ReadString('\n')
		s = strings.TrimSpace(s)
		if err != nil && s == "" {
			return "", fmt.Errorf("read parameter %s: %w", tp.Name, err)
		}
		if s == "" {
			if tp.Required {
				fmt.Fprintln(p.out, "  a value is required")
				continue
			}
			s = tp.DefaultValue
		}
		if n, err := strconv.Atoi(s); err == nil && len(tp.Options) > 0 && n >= 1 && n <= len(tp.Options) && !optionValue(tp, s) {
			s = tp.Options[n-1].Value
		}
		if msg := checkParameterInput(tp, s); msg != "" {
			fmt.Fprintf(p.out, "  %s\n", msg)
			continue
		}
		return s, nil
	}
}

func optionValue(tp codersdk.TemplateVersionParameter, v string) bool {
	return slices.ContainsFunc(tp.Options, func(o codersdk.TemplateVersionParameterOption) bool { return o.Value == v })
}

// checkParameterInput is the prompt's early check (coderd checks again):
// options, number bounds, regex, bool. It returns "" for an acceptable
// value; a failed bound or regex shows the template's validation message
// when it has one ({min}, {max} and {value} expanded, as coderd does).
func checkParameterInput(tp codersdk.TemplateVersionParameter, v string) string {
	msg := checkParameterShape(tp, v)
	if msg == "" || tp.ValidationError == "" || (tp.Type != "number" && tp.ValidationRegex == "") {
		return msg
	}
	bound := func(b *int32) string {
		if b == nil {
			return ""
		}
		return strconv.Itoa(int(*b))
	}
	return strings.NewReplacer("{min}", bound(tp.ValidationMin), "{max}", bound(tp.ValidationMax), "{value}", v).Replace(tp.ValidationError) + " (" + msg + ")"
}

func checkParameterShape(tp codersdk.TemplateVersionParameter, v string) string {
	if len(tp.Options) > 0 && tp.Type != "list(string)" && !optionValue(tp, v) {
		return fmt.Sprintf("pick one of the options (1-%d or its value)", len(tp.Options))
	}
	switch tp.Type {
	case "number":
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Sprintf("%q is not a number", v)
		}
		if tp.ValidationMin != nil && n < float64(*tp.ValidationMin) {
			return fmt.Sprintf("must be at least %d", *tp.ValidationMin)
		}
		if tp.ValidationMax != nil && n > float64(*tp.ValidationMax) {
			return fmt.Sprintf("must be at most %d", *tp.ValidationMax)
		}
	case "bool":
		if v != "true" && v != "false" {
			return "answer true or false"
		}
	case "string":
		if tp.ValidationRegex != "" {
			if re, err := regexp.Compile(tp.ValidationRegex); err == nil && !re.MatchString(v) {
				return fmt.Sprintf("must match %s", tp.ValidationRegex)
			}
		}
	case "list(string)":
		var list []string
		if err := json.Unmarshal([]byte(v), &list); err != nil {
			return `enter a JSON list of strings, e.g. ["a","b"]`
		}
	}
	return ""
}

// pickTemplate asks for a template on a terminal (by number or name).
func (r *root) pickTemplate(ctx context.Context, client *codersdk.Client) (codersdk.Template, error) {
	pr, ok := r.prompter()
	if !ok {
		return codersdk.Template{}, errors.New("a template is required: -t TEMPLATE (stdin is not a terminal to ask for one)")
	}
	list, err := client.Templates(ctx)
	if err != nil {
		return codersdk.Template{}, fmt.Errorf("list templates: %w", err)
	}
	if len(list) == 0 {
		return codersdk.Template{}, errors.New("there are no templates yet: create one with 'coder templates push'")
	}
	fmt.Fprintln(pr.out, "Templates:")
	for i, t := range list {
		line := fmt.Sprintf("  %d) %s", i+1, t.Name)
		if t.Description != "" {
			line += " — " + t.Description
		}
		fmt.Fprintln(pr.out, line)
	}
	var picked codersdk.Template
	_, err = pr.line("Template (number or name)", func(s string) string {
		if n, err := strconv.Atoi(s); err == nil && n >= 1 && n <= len(list) {
			picked = list[n-1]
			return ""
		}
		for _, t := range list {
			if strings.EqualFold(t.Name, s) {
				picked = t
				return ""
			}
		}
		return fmt.Sprintf("no template %q", s)
	})
	return picked, err
}

// confirmAny asks a yes/no question through the invocation's prompter
// when one is in use (its buffer may hold the answer), else from stdin.
func (r *root) confirmAny(question string) (bool, error) {
	if r.prompt == nil {
		return r.confirm(question)
	}
	fmt.Fprintf(r.prompt.out, "%s [y/N] ", question)
	s, err := r.prompt.in.ReadString('\n')
	s = strings.ToLower(strings.TrimSpace(s))
	if err != nil && s == "" {
		return false, fmt.Errorf("read answer: %w", err)
	}
	return s == "y" || s == "yes", nil
}
