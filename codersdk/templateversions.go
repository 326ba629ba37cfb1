package codersdk

import (
	"context"
	"net/http"
	"net/url"

	"github.com/google/uuid"
)

// This file holds the template version management API: archiving, the
// Terraform variables of a version, deleting templates.

// VariableValue is a value for a template's Terraform variable, given at push
// (coder templates push --variable name=value, --variables-file).
type VariableValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// TemplateVersionVariable is a Terraform variable block of a template
// version. A sensitive variable's Value and DefaultValue are never returned
// (always empty): they are write-only.
type TemplateVersionVariable struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Type is the variable's type as far as the import could tell it from its
	// default (string, number, bool, list, map), or "" when it has none.
	Type         string `json:"type"`
	Value        string `json:"value"`
	DefaultValue string `json:"default_value"`
	Required     bool   `json:"required"`
	Sensitive    bool   `json:"sensitive"`
}

// TemplateVersionVariables returns the Terraform variables of a template
// version (sensitive values left out).
func (c *Client) TemplateVersionVariables(ctx context.Context, id uuid.UUID) ([]TemplateVersionVariable, error) {
	var out []TemplateVersionVariable
	err := c.do(ctx, http.MethodGet, "/api/v2/templateversions/"+id.String()+"/variables", nil, http.StatusOK, &out)
	return out, err
}

// ArchiveTemplateVersion archives a template version: it is hidden from
// version lists and no new build may use it. The active version cannot be
// archived.
func (c *Client) ArchiveTemplateVersion(ctx context.Context, id uuid.UUID) error {
	return c.do(ctx, http.MethodPost, "/api/v2/templateversions/"+id.String()+"/archive", nil, http.StatusOK, nil)
}

// UnarchiveTemplateVersion makes an archived template version usable again.
func (c *Client) UnarchiveTemplateVersion(ctx context.Context, id uuid.UUID) error {
	return c.do(ctx, http.MethodPost, "/api/v2/templateversions/"+id.String()+"/unarchive", nil, http.StatusOK, nil)
}

// TemplateVersionsByTemplateIncludingArchived lists a template's versions,
// archived ones included.
func (c *Client) TemplateVersionsByTemplateIncludingArchived(ctx context.Context, template string) ([]TemplateVersion, error) {
	var out []TemplateVersion
	err := c.do(ctx, http.MethodGet, "/api/v2/templates/"+url.PathEscape(template)+"/versions?include_archived=true", nil, http.StatusOK, &out)
	return out, err
}

// DeleteTemplate deletes a template. It is refused (409) while workspaces
// that are not deleted use the template.
func (c *Client) DeleteTemplate(ctx context.Context, template string) error {
	return c.do(ctx, http.MethodDelete, "/api/v2/templates/"+url.PathEscape(template), nil, http.StatusOK, nil)
}
