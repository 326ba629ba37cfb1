package provisionersdk_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
)

// The legacy* types are the protocol's encoding before the daemon SDK reused
// user API types (RichParameter, ResourceMetadata, AgentMetadata, build
// parameters). Daemons and servers of either side must keep understanding each
// other, so a value sent by one decodes to the same value on the other.

type legacyOption struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Value       string `json:"value"`
	Icon        string `json:"icon,omitempty"`
}

type legacyParameter struct {
	Name                string         `json:"name"`
	DisplayName         string         `json:"display_name,omitempty"`
	Description         string         `json:"description,omitempty"`
	Type                string         `json:"type"`
	FormType            string         `json:"form_type,omitempty"`
	Mutable             bool           `json:"mutable"`
	DefaultValue        string         `json:"default_value"`
	Icon                string         `json:"icon,omitempty"`
	Options             []legacyOption `json:"options,omitempty"`
	Required            bool           `json:"required"`
	ValidationRegex     string         `json:"validation_regex,omitempty"`
	ValidationError     string         `json:"validation_error,omitempty"`
	ValidationMin       *int32         `json:"validation_min,omitempty"`
	ValidationMax       *int32         `json:"validation_max,omitempty"`
	ValidationMonotonic string         `json:"validation_monotonic,omitempty"`
	Ephemeral           bool           `json:"ephemeral"`
	Order               int32          `json:"order"`
}

type legacyResourceMetadata struct {
	Key       string `json:"key"`
	Value     string `json:"value"`
	Sensitive bool   `json:"sensitive"`
	IsNull    bool   `json:"is_null,omitempty"`
}

type legacyAgentMetadata struct {
	Key         string `json:"key"`
	DisplayName string `json:"display_name"`
	Script      string `json:"script"`
	Interval    int64  `json:"interval"`
	Timeout     int64  `json:"timeout"`
	Order       int64  `json:"order"`
}

type legacyAgent struct {
	Name     string                `json:"name"`
	Token    string                `json:"token,omitempty"`
	Metadata []legacyAgentMetadata `json:"metadata,omitempty"`
}

type legacyResource struct {
	Name     string                   `json:"name"`
	Type     string                   `json:"type"`
	Agents   []legacyAgent            `json:"agents,omitempty"`
	Metadata []legacyResourceMetadata `json:"metadata,omitempty"`
}

type legacyCompletedJob struct {
	JobID      uuid.UUID         `json:"job_id"`
	Resources  []legacyResource  `json:"resources"`
	Parameters []legacyParameter `json:"parameters,omitempty"`
}

type legacyParameterValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type legacyAcquiredJob struct {
	JobID           uuid.UUID              `json:"job_id"`
	ParameterValues []legacyParameterValue `json:"parameter_values,omitempty"`
}

func fixtures() (provisionersdk.CompletedJob, legacyCompletedJob) {
	id := uuid.MustParse("7b4c2f1e-0000-4000-8000-000000000001")
	lo, hi := int32(1), int32(9)
	cur := provisionersdk.CompletedJob{
		JobID: id,
		Resources: []provisionersdk.Resource{{
			Name: "dev", Type: "null_resource",
			Agents: []provisionersdk.Agent{{
				Name: "main", Token: "secret",
				Metadata: []provisionersdk.AgentMetadata{{
					WorkspaceAgentMetadataDescription: codersdk.WorkspaceAgentMetadataDescription{
						Key: "load", DisplayName: "Load", Script: "uptime", Interval: 10, Timeout: 2,
					},
					Order: 3,
				}},
			}},
			Metadata: []provisionersdk.ResourceMetadata{
				{WorkspaceResourceMetadata: codersdk.WorkspaceResourceMetadata{Key: "region", Value: "eu", Sensitive: true}},
				{WorkspaceResourceMetadata: codersdk.WorkspaceResourceMetadata{Key: "none"}, IsNull: true},
			},
		}},
		Parameters: []provisionersdk.RichParameter{
			{
				TemplateVersionParameter: codersdk.TemplateVersionParameter{
					Name: "size", DisplayName: "Size", Description: "Disk size", Type: "number", Mutable: true,
					DefaultValue: "5", Icon: "/disk.svg", Required: true, ValidationMin: &lo, ValidationMax: &hi,
					ValidationMonotonic: "increasing", ValidationError: "too big",
					Options: []codersdk.TemplateVersionParameterOption{{Name: "Small", Description: "s", Value: "1", Icon: "/s.svg"}, {Name: "Bare", Value: "2"}},
				},
				Order: 2,
			},
			// A parameter with every optional field empty.
			{TemplateVersionParameter: codersdk.TemplateVersionParameter{Name: "plain", Type: "string"}},
		},
	}
	old := legacyCompletedJob{
		JobID: id,
		Resources: []legacyResource{{
			Name: "dev", Type: "null_resource",
			Agents: []legacyAgent{{
				Name: "main", Token: "secret",
				Metadata: []legacyAgentMetadata{{Key: "load", DisplayName: "Load", Script: "uptime", Interval: 10, Timeout: 2, Order: 3}},
			}},
			Metadata: []legacyResourceMetadata{{Key: "region", Value: "eu", Sensitive: true}, {Key: "none", IsNull: true}},
		}},
		Parameters: []legacyParameter{
			{
				Name: "size", DisplayName: "Size", Description: "Disk size", Type: "number", Mutable: true,
				DefaultValue: "5", Icon: "/disk.svg", Required: true, ValidationMin: &lo, ValidationMax: &hi,
				ValidationMonotonic: "increasing", ValidationError: "too big",
				Options: []legacyOption{{Name: "Small", Description: "s", Value: "1", Icon: "/s.svg"}, {Name: "Bare", Value: "2"}},
				Order:   2,
			},
			{Name: "plain", Type: "string"},
		},
	}
	return cur, old
}

// roundTrip encodes in and decodes the bytes into out.
func roundTrip(t *testing.T, in, out any) {
	t.Helper()
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
}

func TestCompletedJobWireCompatible(t *testing.T) {
	t.Parallel()
	cur, old := fixtures()

	// A current daemon reporting to a server that decodes the legacy types.
	var gotOld legacyCompletedJob
	roundTrip(t, cur, &gotOld)
	if !reflect.DeepEqual(gotOld, old) {
		t.Errorf("legacy decoding of a current report:\n got %+v\nwant %+v", gotOld, old)
	}

	// A legacy daemon reporting to the current server.
	var gotCur provisionersdk.CompletedJob
	roundTrip(t, old, &gotCur)
	if !reflect.DeepEqual(gotCur, cur) {
		t.Errorf("current decoding of a legacy report:\n got %+v\nwant %+v", gotCur, cur)
	}
}

func TestAcquiredJobParameterValuesWireCompatible(t *testing.T) {
	t.Parallel()
	id := uuid.New()
	cur := provisionersdk.AcquiredJob{JobID: id, ParameterValues: []codersdk.WorkspaceBuildParameter{{Name: "region", Value: "eu"}, {Name: "empty"}}}
	old := legacyAcquiredJob{JobID: id, ParameterValues: []legacyParameterValue{{Name: "region", Value: "eu"}, {Name: "empty"}}}
	var gotOld legacyAcquiredJob
	roundTrip(t, cur, &gotOld)
	if !reflect.DeepEqual(gotOld, old) {
		t.Errorf("legacy decoding: got %+v, want %+v", gotOld, old)
	}
	var gotCur provisionersdk.AcquiredJob
	roundTrip(t, old, &gotCur)
	if !reflect.DeepEqual(gotCur.ParameterValues, cur.ParameterValues) {
		t.Errorf("current decoding: got %+v, want %+v", gotCur.ParameterValues, cur.ParameterValues)
	}
}
