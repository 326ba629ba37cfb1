package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/wgmesh/coder/codersdk"
)

// templateVariableValues reads the Terraform variable values of `coder
// templates push`: a YAML file of name: value pairs (--variables-file; a
// list or map value is passed as JSON), overridden by --variable
// name=value flags. Values are sent to coderd, never printed.
func templateVariableValues(file string, flags []string) ([]codersdk.VariableValue, error) {
	values := map[string]string{}
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read variables file: %w", err)
		}
		var raw map[string]any
		if err := yaml.Unmarshal(data, &raw); err != nil {
			return nil, fmt.Errorf("variables file %s: want a YAML map of name: value: %w", file, err)
		}
		for k, v := range raw {
			s, err := variableString(v)
			if err != nil {
				return nil, fmt.Errorf("variables file %s: %q: %w", file, k, err)
			}
			values[k] = s
		}
	}
	for _, kv := range flags {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("invalid --variable %q: want name=value", kv)
		}
		values[strings.TrimSpace(k)] = v
	}
	out := make([]codersdk.VariableValue, 0, len(values))
	for k, v := range values {
		out = append(out, codersdk.VariableValue{Name: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// variableString turns a YAML value into a variable value: scalars as
// text, lists and maps as JSON.
func variableString(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(x), nil
	case []any, map[string]any:
		b, err := json.Marshal(x)
		if err != nil {
			return "", err
		}
		return string(b), nil
	default:
		return "", fmt.Errorf("unsupported value of type %T", v)
	}
}
