package terraform

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"

	tfjson "github.com/hashicorp/terraform-json"

	"github.com/wgmesh/coder/codersdk/provisionersdk"
)

// FuzzConvertState parses arbitrary `terraform show -json` output (a state,
// and optionally the plan whose configuration links resources) the way the
// runner does (terraform-exec decodes numbers as json.Number) and checks:
//   - ConvertState and ConvertPlan never panic and are deterministic;
//   - every managed, non-coder_ resource of the input is reported exactly
//     once, and nothing else is;
//   - every agent reported comes from a coder_agent of the input (ID, name,
//     token) and is attached to at most one resource; no agent is invented;
//   - numbers keep their value when it fits the field and saturate at the
//     field's bounds when it does not (never wrap: a connection timeout of
//     2^31 must not become negative);
//   - the result survives the JSON wire to coderd unchanged;
//   - errors are non-empty.
func FuzzConvertState(f *testing.F) {
	f.Fuzz(func(t *testing.T, stateJSON, planJSON []byte) {
		var state *tfjson.State
		if len(stateJSON) > 0 {
			state = &tfjson.State{}
			state.UseJSONNumber(true)
			if err := json.Unmarshal(stateJSON, state); err != nil {
				state = nil
			}
		}
		var plan *tfjson.Plan
		if len(planJSON) > 0 {
			plan = &tfjson.Plan{}
			plan.UseJSONNumber(true)
			if err := json.Unmarshal(planJSON, plan); err != nil {
				plan = nil
			}
		}
		if state == nil && plan == nil {
			return
		}

		var stateRes []resource
		if state != nil && state.Values != nil {
			stateRes = collect(state.Values.RootModule)
		}
		got, err := ConvertState(state, plan)
		again, err2 := ConvertState(state, plan)
		checkConverted(t, "state", stateRes, got, err)
		if !reflect.DeepEqual(got, again) || (err == nil) != (err2 == nil) {
			t.Fatalf("ConvertState is not deterministic")
		}

		if plan != nil {
			// A plan names each resource once by address: planned values,
			// then the data sources read into the prior state.
			var planRes []resource
			seen := map[string]bool{}
			add := func(r resource) {
				if !seen[r.address] {
					seen[r.address] = true
					planRes = append(planRes, r)
				}
			}
			if plan.PlannedValues != nil {
				for _, r := range collect(plan.PlannedValues.RootModule) {
					add(r)
				}
			}
			if plan.PriorState != nil && plan.PriorState.Values != nil {
				for _, r := range collect(plan.PriorState.Values.RootModule) {
					if r.mode == tfjson.DataResourceMode {
						add(r)
					}
				}
			}
			conv, err := ConvertPlan(plan)
			checkConverted(t, "plan", planRes, conv, err)
		}
	})
}

// checkConverted asserts FuzzConvertState's properties of one conversion of
// the input resources in.
func checkConverted(t *testing.T, what string, in []resource, got *Converted, err error) {
	t.Helper()
	if err != nil {
		if err.Error() == "" {
			t.Fatalf("%s: empty error", what)
		}
		return
	}
	if got == nil {
		t.Fatalf("%s: nil result without error", what)
	}
	var wantInfra, inAgents int
	for _, r := range in {
		if r.mode == tfjson.ManagedResourceMode && !strings.HasPrefix(r.typ, "coder_") {
			wantInfra++
		}
		if r.mode == tfjson.ManagedResourceMode && r.typ == "coder_agent" {
			inAgents++
		}
	}
	if len(got.Resources) != wantInfra {
		t.Fatalf("%s: %d resources reported, %d in the input", what, len(got.Resources), wantInfra)
	}
	var outAgents int
	for _, res := range got.Resources {
		if strings.HasPrefix(res.Type, "coder_") {
			t.Fatalf("%s: coder resource %s reported as infrastructure", what, res.Type)
		}
		for _, a := range res.Agents {
			outAgents++
			if !agentFromInput(a, in) {
				t.Fatalf("%s: agent %+v matches no coder_agent of the input", what, a)
			}
		}
	}
	if outAgents > inAgents {
		t.Fatalf("%s: %d agents reported, %d in the input", what, outAgents, inAgents)
	}
	for _, p := range got.Parameters {
		if !parameterFromInput(p, in) {
			t.Fatalf("%s: parameter %+v matches no coder_parameter of the input (or a number changed)", what, p)
		}
	}

	// The wire to coderd.
	wire, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("%s: marshal: %v", what, err)
	}
	var back Converted
	if err := json.Unmarshal(wire, &back); err != nil {
		t.Fatalf("%s: unmarshal: %v", what, err)
	}
	wire2, err := json.Marshal(&back)
	if err != nil || !bytes.Equal(wire, wire2) {
		t.Fatalf("%s: not stable over JSON:\n%s\n%s", what, wire, wire2)
	}
}

// agentFromInput reports whether a came from one of in's coder_agents with
// its numbers converted faithfully.
func agentFromInput(a provisionersdk.Agent, in []resource) bool {
	for _, r := range in {
		if r.mode != tfjson.ManagedResourceMode || r.typ != "coder_agent" || r.name != a.Name {
			continue
		}
		if str(r.values, "id") != a.ID || str(r.values, "token") != a.Token {
			continue
		}
		if int64(a.ConnectionTimeoutSeconds) != wantInt(r.values["connection_timeout"], math.MinInt32, math.MaxInt32) {
			continue
		}
		if a.Order != wantInt(r.values["order"], math.MinInt64, math.MaxInt64) {
			continue
		}
		return true
	}
	return false
}

// parameterFromInput reports whether p came from one of in's
// coder_parameters with its numbers converted faithfully.
func parameterFromInput(p provisionersdk.RichParameter, in []resource) bool {
	for _, r := range in {
		if r.mode != tfjson.DataResourceMode || r.typ != "coder_parameter" || str(r.values, "name") != p.Name {
			continue
		}
		if int64(p.Order) != wantInt(r.values["order"], math.MinInt32, math.MaxInt32) {
			continue
		}
		if v := blocks(r.values, "validation"); len(v) > 0 {
			if p.ValidationMin != nil && int64(*p.ValidationMin) != wantInt(v[0]["min"], math.MinInt32, math.MaxInt32) {
				continue
			}
			if p.ValidationMax != nil && int64(*p.ValidationMax) != wantInt(v[0]["max"], math.MinInt32, math.MaxInt32) {
				continue
			}
		}
		return true
	}
	return false
}

// wantInt is the value a number field must get from the state value v: the
// number (json.Number, or float64 where terraform-json decodes without
// json.Number) truncated toward zero and saturated at [lo, hi]; a decimal
// string as strconv.ParseInt reads it (saturated on overflow); 0 for
// anything else.
func wantInt(v any, lo, hi int64) int64 {
	var n *big.Int
	switch x := v.(type) {
	case json.Number:
		f, _, err := big.ParseFloat(string(x), 10, 2048, big.ToZero)
		if err != nil {
			return 0
		}
		if f.IsInf() {
			if f.Sign() > 0 {
				return hi
			}
			return lo
		}
		n, _ = f.Int(nil)
	case float64:
		// A plan's prior state is decoded without json.Number by
		// terraform-json.
		switch {
		case math.IsNaN(x):
			return 0
		case math.IsInf(x, 1):
			return hi
		case math.IsInf(x, -1):
			return lo
		}
		n, _ = big.NewFloat(x).Int(nil)
	case string:
		i, err := strconv.ParseInt(x, 10, 64)
		if err != nil && !strings.Contains(err.Error(), "out of range") {
			return 0
		}
		n = big.NewInt(i)
	default:
		return 0
	}
	switch {
	case n.Cmp(big.NewInt(lo)) < 0:
		return lo
	case n.Cmp(big.NewInt(hi)) > 0:
		return hi
	}
	return n.Int64()
}
