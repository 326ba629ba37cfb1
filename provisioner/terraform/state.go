package terraform

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"

	tfjson "github.com/hashicorp/terraform-json"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
)

// Converted is what a plan or state says about a workspace.
type Converted struct {
	Resources  []provisionersdk.Resource
	Parameters []provisionersdk.RichParameter
}

// resource is one resource instance found in a plan or state.
type resource struct {
	address    string // instance address, e.g. module.m.terraform_data.agent[0]
	configAddr string // without instance keys, e.g. module.m.terraform_data.agent
	mode       tfjson.ResourceMode
	typ        string
	name       string
	values     map[string]any
	dependsOn  []string // config addresses
}

// ConvertPlan parses a plan (terraform show -json <planfile>): the resources it
// would leave (planned values) and the rich parameters read while planning.
func ConvertPlan(plan *tfjson.Plan) (*Converted, error) {
	if plan == nil {
		return nil, fmt.Errorf("no plan")
	}
	var all []resource
	seen := map[string]bool{}
	add := func(rs []resource) {
		for _, r := range rs {
			if !seen[r.address] {
				seen[r.address] = true
				all = append(all, r)
			}
		}
	}
	if plan.PlannedValues != nil {
		add(collect(plan.PlannedValues.RootModule))
	}
	if plan.PriorState != nil && plan.PriorState.Values != nil {
		for _, r := range collect(plan.PriorState.Values.RootModule) {
			if r.mode == tfjson.DataResourceMode {
				add([]resource{r})
			}
		}
	}
	return convert(all, configRefs(plan.Config))
}

// ConvertState parses the state after an apply (terraform show -json). plan, when
// given, supplies the configuration's references used to link agents, apps and
// metadata to the resources they belong to.
func ConvertState(state *tfjson.State, plan *tfjson.Plan) (*Converted, error) {
	var all []resource
	if state != nil && state.Values != nil {
		all = collect(state.Values.RootModule)
	}
	var refs map[string][]string
	if plan != nil {
		refs = configRefs(plan.Config)
	}
	return convert(all, refs)
}

func collect(m *tfjson.StateModule) []resource {
	if m == nil {
		return nil
	}
	var out []resource
	for _, r := range m.Resources {
		if r == nil {
			continue
		}
		prefix := ""
		if m.Address != "" {
			prefix = m.Address + "."
		}
		out = append(out, resource{
			address:    r.Address,
			configAddr: stripIndexes(prefix + string(modePrefix(r.Mode)) + r.Type + "." + r.Name),
			mode:       r.Mode,
			typ:        r.Type,
			name:       r.Name,
			values:     r.AttributeValues,
			dependsOn:  r.DependsOn,
		})
	}
	for _, c := range m.ChildModules {
		out = append(out, collect(c)...)
	}
	return out
}

func modePrefix(mode tfjson.ResourceMode) string {
	if mode == tfjson.DataResourceMode {
		return "data."
	}
	return ""
}

// stripIndexes removes instance keys ([0], ["x"]) from an address.
func stripIndexes(addr string) string {
	var b strings.Builder
	depth := 0
	inString := false
	for i := 0; i < len(addr); i++ {
		c := addr[i]
		switch {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
			}
		case c == '[':
			depth++
		case c == ']':
			depth--
		case depth > 0:
			if c == '"' {
				inString = true
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// configRefs maps each resource's config address to the references its
// configuration makes (arguments, nested blocks, provisioners, depends_on), made
// absolute by module path.
func configRefs(cfg *tfjson.Config) map[string][]string {
	refs := map[string][]string{}
	if cfg == nil {
		return refs
	}
	var walkModule func(m *tfjson.ConfigModule, prefix string)
	walkModule = func(m *tfjson.ConfigModule, prefix string) {
		if m == nil {
			return
		}
		for _, r := range m.Resources {
			addr := prefix + r.Address
			var list []string
			for _, e := range r.Expressions {
				list = append(list, exprRefs(e)...)
			}
			for _, p := range r.Provisioners {
				for _, e := range p.Expressions {
					list = append(list, exprRefs(e)...)
				}
			}
			list = append(list, exprRefs(r.CountExpression)...)
			list = append(list, exprRefs(r.ForEachExpression)...)
			list = append(list, r.DependsOn...)
			for i := range list {
				list[i] = prefix + list[i]
			}
			refs[addr] = list
		}
		for name, call := range m.ModuleCalls {
			walkModule(call.Module, prefix+"module."+name+".")
		}
	}
	walkModule(cfg.RootModule, "")
	return refs
}

func exprRefs(e *tfjson.Expression) []string {
	if e == nil || e.ExpressionData == nil {
		return nil
	}
	out := append([]string(nil), e.References...)
	for _, block := range e.NestedBlocks {
		for _, nested := range block {
			out = append(out, exprRefs(nested)...)
		}
	}
	return out
}

// refersTo reports whether a reference (e.g. "coder_agent.main.token") points at the
// resource with config address addr (e.g. "coder_agent.main").
func refersTo(ref, addr string) bool {
	ref = stripIndexes(ref)
	return ref == addr || strings.HasPrefix(ref, addr+".")
}

func anyRefersTo(refs []string, addr string) bool {
	for _, r := range refs {
		if refersTo(r, addr) {
			return true
		}
	}
	return false
}

func convert(all []resource, refs map[string][]string) (*Converted, error) {
	sort.SliceStable(all, func(i, j int) bool { return all[i].address < all[j].address })
	var (
		infra    []resource // managed resources that are not coder_* ones
		agents   []resource
		apps     []resource
		scripts  []resource
		envs     []resource
		metas    []resource
		params   []resource
		infraIdx = map[string]int{}
	)
	for _, r := range all {
		switch {
		case r.mode == tfjson.DataResourceMode && r.typ == "coder_parameter":
			params = append(params, r)
		case r.mode != tfjson.ManagedResourceMode:
		case r.typ == "coder_agent":
			agents = append(agents, r)
		case r.typ == "coder_app":
			apps = append(apps, r)
		case r.typ == "coder_script":
			scripts = append(scripts, r)
		case r.typ == "coder_env":
			envs = append(envs, r)
		case r.typ == "coder_metadata":
			metas = append(metas, r)
		case strings.HasPrefix(r.typ, "coder_"):
		default:
			infraIdx[r.address] = len(infra)
			infra = append(infra, r)
		}
	}

	out := &Converted{Resources: make([]provisionersdk.Resource, len(infra))}
	for i, r := range infra {
		out.Resources[i] = provisionersdk.Resource{Name: r.name, Type: r.typ}
	}

	// deps(r) reports whether resource r depends on config address addr, and whether
	// it does so directly in its own configuration.
	deps := func(r resource, addr string) (depends, direct bool) {
		if anyRefersTo(refs[r.configAddr], addr) {
			return true, true
		}
		return anyRefersTo(r.dependsOn, addr), false
	}

	for _, a := range agents {
		agent, err := convertAgent(a)
		if err != nil {
			return nil, err
		}
		for _, app := range apps {
			if linked(app, "agent_id", a, refs) {
				agent.Apps = append(agent.Apps, convertApp(app))
			}
		}
		for _, s := range scripts {
			if linked(s, "agent_id", a, refs) {
				agent.Scripts = append(agent.Scripts, convertScript(s))
			}
		}
		for _, e := range envs {
			if linked(e, "agent_id", a, refs) {
				name, value := str(e.values, "name"), str(e.values, "value")
				if name != "" {
					if agent.Env == nil {
						agent.Env = map[string]string{}
					}
					agent.Env[name] = value
				}
			}
		}
		// Attach the agent to the nearest resource that depends on it: direct
		// references win; among candidates, drop those depending on another candidate.
		var direct, indirect []int
		for i, r := range infra {
			dep, d := deps(r, a.configAddr)
			switch {
			case d:
				direct = append(direct, i)
			case dep:
				indirect = append(indirect, i)
			}
		}
		cands := direct
		if len(cands) == 0 {
			cands = indirect
		}
		target := -1
		for _, c := range cands {
			nearest := true
			for _, o := range cands {
				if o != c {
					if dep, _ := deps(infra[c], infra[o].configAddr); dep && infra[c].configAddr != infra[o].configAddr {
						nearest = false
						break
					}
				}
			}
			if nearest {
				target = c
				break
			}
		}
		if target < 0 {
			// An agent nothing runs (e.g. a stopped workspace) is not reported.
			continue
		}
		out.Resources[target].Agents = append(out.Resources[target].Agents, *agent)
	}

	for _, m := range metas {
		for i, r := range infra {
			if !linked(m, "resource_id", r, refs) {
				continue
			}
			res := &out.Resources[i]
			res.Hide = boolean(m.values, "hide")
			res.Icon = str(m.values, "icon")
			res.DailyCost = integer32(m.values, "daily_cost")
			for _, item := range blocks(m.values, "item") {
				res.Metadata = append(res.Metadata, provisionersdk.ResourceMetadata{
					WorkspaceResourceMetadata: codersdk.WorkspaceResourceMetadata{
						Key:       str(item, "key"),
						Value:     str(item, "value"),
						Sensitive: boolean(item, "sensitive"),
					},
					IsNull: boolean(item, "is_null"),
				})
			}
			break
		}
	}

	for _, p := range params {
		rp, err := convertParameter(p)
		if err != nil {
			return nil, err
		}
		out.Parameters = append(out.Parameters, rp)
	}
	sort.SliceStable(out.Parameters, func(i, j int) bool { return out.Parameters[i].Order < out.Parameters[j].Order })
	if out.Resources == nil {
		out.Resources = []provisionersdk.Resource{}
	}
	return out, nil
}

// linked reports whether child (a coder_app, coder_metadata, ...) points at target
// through its attribute attr: by value when both ids are known (state), otherwise by
// the reference in the child's configuration (plan).
func linked(child resource, attr string, target resource, refs map[string][]string) bool {
	childVal, targetID := str(child.values, attr), str(target.values, "id")
	if childVal != "" && targetID != "" {
		return childVal == targetID
	}
	return anyRefersTo(refs[child.configAddr], target.configAddr)
}

func convertAgent(a resource) (*provisionersdk.Agent, error) {
	v := a.values
	agent := &provisionersdk.Agent{
		ID:                       str(v, "id"),
		Name:                     a.name,
		Token:                    str(v, "token"),
		Auth:                     str(v, "auth"),
		OperatingSystem:          str(v, "os"),
		Architecture:             str(v, "arch"),
		Directory:                str(v, "dir"),
		ConnectionTimeoutSeconds: integer32(v, "connection_timeout"),
		TroubleshootingURL:       str(v, "troubleshooting_url"),
		MOTDFile:                 str(v, "motd_file"),
		Order:                    integer(v, "order"),
	}
	if env, ok := v["env"].(map[string]any); ok && len(env) > 0 {
		agent.Env = map[string]string{}
		for k, val := range env {
			agent.Env[k] = fmt.Sprint(val)
		}
	}
	if s := str(v, "startup_script"); s != "" {
		agent.Scripts = append(agent.Scripts, provisionersdk.AgentScript{
			DisplayName:      "Startup Script",
			Script:           s,
			RunOnStart:       true,
			StartBlocksLogin: str(v, "startup_script_behavior") == "blocking",
			LogPath:          "coder-startup-script.log",
		})
	}
	if s := str(v, "shutdown_script"); s != "" {
		agent.Scripts = append(agent.Scripts, provisionersdk.AgentScript{
			DisplayName: "Shutdown Script",
			Script:      s,
			RunOnStop:   true,
			LogPath:     "coder-shutdown-script.log",
		})
	}
	for _, m := range blocks(v, "metadata") {
		agent.Metadata = append(agent.Metadata, provisionersdk.AgentMetadata{
			WorkspaceAgentMetadataDescription: codersdk.WorkspaceAgentMetadataDescription{
				Key:         str(m, "key"),
				DisplayName: str(m, "display_name"),
				Script:      str(m, "script"),
				Interval:    integer(m, "interval"),
				Timeout:     integer(m, "timeout"),
			},
			Order: integer(m, "order"),
		})
	}
	if da := blocks(v, "display_apps"); len(da) > 0 {
		agent.DisplayApps = &provisionersdk.DisplayApps{
			VSCode:               boolean(da[0], "vscode"),
			VSCodeInsiders:       boolean(da[0], "vscode_insiders"),
			WebTerminal:          boolean(da[0], "web_terminal"),
			SSHHelper:            boolean(da[0], "ssh_helper"),
			PortForwardingHelper: boolean(da[0], "port_forwarding_helper"),
		}
	}
	return agent, nil
}

func convertApp(r resource) provisionersdk.App {
	v := r.values
	slug := str(v, "slug")
	if slug == "" {
		slug = r.name
	}
	app := provisionersdk.App{
		Slug:         slug,
		DisplayName:  str(v, "display_name"),
		URL:          str(v, "url"),
		Command:      str(v, "command"),
		Icon:         str(v, "icon"),
		Subdomain:    boolean(v, "subdomain"),
		SharingLevel: provisionersdk.AppSharingLevel(str(v, "share")),
		External:     boolean(v, "external"),
		Hidden:       boolean(v, "hidden"),
		Order:        integer(v, "order"),
		OpenIn:       str(v, "open_in"),
	}
	if app.SharingLevel == "" {
		app.SharingLevel = provisionersdk.AppSharingLevelOwner
	}
	if hc := blocks(v, "healthcheck"); len(hc) > 0 {
		app.Healthcheck = &codersdk.Healthcheck{
			URL:       str(hc[0], "url"),
			Interval:  integer32(hc[0], "interval"),
			Threshold: integer32(hc[0], "threshold"),
		}
	}
	return app
}

func convertScript(r resource) provisionersdk.AgentScript {
	v := r.values
	return provisionersdk.AgentScript{
		DisplayName:      str(v, "display_name"),
		Icon:             str(v, "icon"),
		Script:           str(v, "script"),
		Cron:             str(v, "cron"),
		RunOnStart:       boolean(v, "run_on_start"),
		RunOnStop:        boolean(v, "run_on_stop"),
		StartBlocksLogin: boolean(v, "start_blocks_login"),
		TimeoutSeconds:   integer32(v, "timeout"),
		LogPath:          str(v, "log_path"),
	}
}

func convertParameter(r resource) (provisionersdk.RichParameter, error) {
	v := r.values
	p := provisionersdk.RichParameter{
		TemplateVersionParameter: codersdk.TemplateVersionParameter{
			Name:         str(v, "name"),
			DisplayName:  str(v, "display_name"),
			Description:  str(v, "description"),
			Type:         str(v, "type"),
			FormType:     str(v, "form_type"),
			Mutable:      boolean(v, "mutable"),
			DefaultValue: str(v, "default"),
			Icon:         str(v, "icon"),
			Required:     !boolean(v, "optional"),
			Ephemeral:    boolean(v, "ephemeral"),
		},
		Order: integer32(v, "order"),
	}
	if p.Name == "" {
		return p, fmt.Errorf("%s: parameter without a name", r.address)
	}
	for _, o := range blocks(v, "option") {
		p.Options = append(p.Options, codersdk.TemplateVersionParameterOption{
			Name:        str(o, "name"),
			Description: str(o, "description"),
			Value:       str(o, "value"),
			Icon:        str(o, "icon"),
		})
	}
	if val := blocks(v, "validation"); len(val) > 0 {
		b := val[0]
		p.ValidationRegex = str(b, "regex")
		p.ValidationError = str(b, "error")
		p.ValidationMonotonic = str(b, "monotonic")
		if _, ok := b["min"]; ok && b["min"] != nil && !boolean(b, "min_disabled") {
			n := integer32(b, "min")
			p.ValidationMin = &n
		}
		if _, ok := b["max"]; ok && b["max"] != nil && !boolean(b, "max_disabled") {
			n := integer32(b, "max")
			p.ValidationMax = &n
		}
	}
	return p, nil
}

func str(m map[string]any, key string) string {
	switch v := m[key].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	default:
		return ""
	}
}

func boolean(m map[string]any, key string) bool {
	b, _ := m[key].(bool)
	return b
}

// integer reads a whole number: a fraction is truncated toward zero and a
// number beyond int64 saturates at its bounds (a decimal string as
// strconv.ParseInt reads it); anything else is 0.
func integer(m map[string]any, key string) int64 {
	switch v := m[key].(type) {
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return n
		}
		f, _, err := big.ParseFloat(string(v), 10, 128, big.ToZero)
		if err != nil {
			return 0
		}
		n, _ := f.Int64() // truncates toward zero, saturates at the bounds
		return n
	case float64:
		if math.IsNaN(v) {
			return 0
		}
		n, _ := big.NewFloat(v).Int64()
		return n
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return 0
		}
		return n // ParseInt saturates on ErrRange
	default:
		return 0
	}
}

// integer32 is integer saturated at the int32 bounds, for the fields
// stored as int32 (timeouts, costs, intervals, orders, parameter bounds): a
// value of 2^31 must not wrap to a negative one.
func integer32(m map[string]any, key string) int32 {
	n := integer(m, key)
	switch {
	case n > math.MaxInt32:
		return math.MaxInt32
	case n < math.MinInt32:
		return math.MinInt32
	}
	return int32(n)
}

func blocks(m map[string]any, key string) []map[string]any {
	list, _ := m[key].([]any)
	var out []map[string]any
	for _, item := range list {
		if b, ok := item.(map[string]any); ok {
			out = append(out, b)
		}
	}
	return out
}
