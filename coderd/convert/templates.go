package convert

import (
	"encoding/json"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// Template turns a template into its API shape, given its creator's
// username (empty when the user is gone) and the number of workspaces not
// deleted that use it.
func Template(t database.Template, createdByName string, workspaceCount int) codersdk.Template {
	return codersdk.Template{
		ID: t.ID, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, Name: t.Name, DisplayName: t.DisplayName,
		Description: t.Description, Icon: t.Icon, Provisioner: string(t.Provisioner), ActiveVersionID: t.ActiveVersionID,
		ActiveUserCount: workspaceCount, CreatedByID: t.CreatedBy, CreatedByName: createdByName,
		DefaultTTLMillis: t.DefaultTtl / 1e6, AllowUserCancelWorkspaceJobs: t.AllowUserCancelWorkspaceJobs,
		RequireActiveVersion: t.RequireActiveVersion,
	}
}

// TemplateVersion turns a template version into its API shape, given its
// converted import job and its creator's username (empty when the user is gone).
func TemplateVersion(v database.TemplateVersion, job codersdk.ProvisionerJob, createdByName string) codersdk.TemplateVersion {
	out := codersdk.TemplateVersion{
		ID: v.ID, CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt, Name: v.Name, Message: v.Message,
		Job: job, Readme: v.Readme, CreatedBy: codersdk.MinimalUser{ID: v.CreatedBy, Username: createdByName},
		Archived: v.Archived,
	}
	if v.TemplateID.Valid {
		id := v.TemplateID.UUID
		out.TemplateID = &id
	}
	return out
}

// TemplateVersionParameter turns a template version's parameter into its
// API shape (options decoded; an empty list when there are none).
func TemplateVersionParameter(p database.TemplateVersionParameter) codersdk.TemplateVersionParameter {
	out := codersdk.TemplateVersionParameter{
		Name: p.Name, DisplayName: p.DisplayName, Description: p.Description, Type: p.Type, FormType: p.FormType,
		Mutable: p.Mutable, DefaultValue: p.DefaultValue, Icon: p.Icon, ValidationError: p.ValidationError,
		ValidationRegex: p.ValidationRegex, ValidationMonotonic: p.ValidationMonotonic, Required: p.Required,
		Ephemeral: p.Ephemeral, Options: []codersdk.TemplateVersionParameterOption{},
	}
	_ = json.Unmarshal(p.Options, &out.Options)
	if p.ValidationMin.Valid {
		v := p.ValidationMin.Int32
		out.ValidationMin = &v
	}
	if p.ValidationMax.Valid {
		v := p.ValidationMax.Int32
		out.ValidationMax = &v
	}
	return out
}
