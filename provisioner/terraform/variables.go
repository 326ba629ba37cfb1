package terraform

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	tfjson "github.com/hashicorp/terraform-json"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
)

// varFileName is the var file a job writes its variable values to. It does
// not end in .auto.tfvars(.json): terraform reads it only through -var-file,
// and the template's own files cannot shadow or pick it up.
const varFileName = ".coder-variables.tfvars.json"

// WithVariables passes values for the template's Terraform variables (a
// -var-file in the job directory, removed after the plan).
func WithVariables(vals []codersdk.VariableValue) BuildOption {
	return func(o *buildOptions) { o.variables = vals }
}

// WithInheritedVariables passes values an import kept from the template's
// previous version: terraform gets them like WithVariables values, but one
// for a variable the template no longer declares is not an error (terraform
// warns about it), whereas a WithVariables value must be declared.
func WithInheritedVariables(vals []codersdk.VariableValue) BuildOption {
	return func(o *buildOptions) { o.inherited = vals }
}

// MissingVariablesError is returned when a template declares variables
// without a default and no value was given for them.
type MissingVariablesError struct {
	Names []string
}

func (e *MissingVariablesError) Error() string {
	quoted := make([]string, len(e.Names))
	for i, n := range e.Names {
		quoted[i] = fmt.Sprintf("%q", n)
	}
	example := e.Names[0]
	return fmt.Sprintf("the template requires a value for the Terraform variable(s) %s, which have no default: "+
		"pass --variable %s=VALUE (or --variables-file FILE) to coder templates push",
		strings.Join(quoted, ", "), example)
}

// writeVarFile writes the values to the job directory's var file (0600).
// A value that is a JSON list or object is passed as that structure (for
// list, map and object variables); every other value is a string, which
// terraform converts for number and bool variables.
func writeVarFile(dir string, vals []codersdk.VariableValue) (string, error) {
	m := make(map[string]json.RawMessage, len(vals))
	for _, v := range vals {
		if v.Name == "" {
			return "", fmt.Errorf("variable without a name")
		}
		trimmed := strings.TrimSpace(v.Value)
		if (strings.HasPrefix(trimmed, "[") || strings.HasPrefix(trimmed, "{")) && json.Valid([]byte(trimmed)) {
			m[v.Name] = json.RawMessage(trimmed)
			continue
		}
		s, err := json.Marshal(v.Value)
		if err != nil {
			return "", fmt.Errorf("encode variable %q: %w", v.Name, err)
		}
		m[v.Name] = s
	}
	data, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode var file: %w", err)
	}
	path := filepath.Join(dir, varFileName)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("write var file: %w", err)
	}
	return path, nil
}

// missingVariable matches terraform's diagnostic for a required variable
// without a value ("No value for required variable").
var missingVariable = regexp.MustCompile(`input variable "([^"]+)" is not set, and has no default value`)

// missingVariables returns the names of the required variables terraform
// reported without a value, sorted.
func (d *diagnostics) missingVariables() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, e := range d.errs {
		for _, m := range missingVariable.FindAllStringSubmatch(e, -1) {
			if !seen[m[1]] {
				seen[m[1]] = true
				out = append(out, m[1])
			}
		}
	}
	sort.Strings(out)
	return out
}

// TemplateVariables returns the root module's variable blocks of a plan,
// sorted by name. A value in given that names no variable of the template
// is an error (terraform only warns about it).
func TemplateVariables(plan *tfjson.Plan, given []codersdk.VariableValue) ([]provisionersdk.TemplateVariable, error) {
	var decl map[string]*tfjson.ConfigVariable
	if plan != nil && plan.Config != nil && plan.Config.RootModule != nil {
		decl = plan.Config.RootModule.Variables
	}
	var undeclared []string
	for _, v := range given {
		if _, ok := decl[v.Name]; !ok {
			undeclared = append(undeclared, fmt.Sprintf("%q", v.Name))
		}
	}
	if len(undeclared) > 0 {
		return nil, fmt.Errorf("the template declares no Terraform variable %s (a variable block is needed for each --variable)", strings.Join(undeclared, ", "))
	}
	out := make([]provisionersdk.TemplateVariable, 0, len(decl))
	for name, v := range decl {
		tv := provisionersdk.TemplateVariable{Name: name, Description: v.Description, Sensitive: v.Sensitive, Required: v.Default == nil}
		if v.Default != nil {
			tv.Type, tv.DefaultValue = describeDefault(v.Default)
		}
		out = append(out, tv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// describeDefault returns the type a default value shows and its text
// (strings as they are, other values as JSON).
func describeDefault(v any) (typ, text string) {
	switch d := v.(type) {
	case string:
		return "string", d
	case bool:
		return "bool", fmt.Sprint(d)
	case float64, json.Number, int, int64:
		return "number", fmt.Sprint(d)
	case []any:
		b, _ := json.Marshal(d)
		return "list", string(b)
	case map[string]any:
		b, _ := json.Marshal(d)
		return "map", string(b)
	default:
		b, _ := json.Marshal(d)
		return "", string(b)
	}
}
