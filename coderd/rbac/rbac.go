// Package rbac decides whether a subject (an authenticated user and its
// roles) may perform an action on an object. Every coderd handler asks it.
package rbac

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
)

// Action is something done to an object.
type Action string

// Actions.
const (
	ActionRead   Action = "read"
	ActionCreate Action = "create"
	ActionUpdate Action = "update"
	ActionDelete Action = "delete"
)

// ResourceType names a kind of object.
type ResourceType string

// Resource types.
const (
	// ResourceUser is a user account (its identity, status and profile).
	ResourceUser ResourceType = "user"
	// ResourceRoleAssignment is the set of roles of a user.
	ResourceRoleAssignment ResourceType = "assign_role"
	// ResourceAPIKey is an API key (session or token).
	ResourceAPIKey ResourceType = "api_key"
	// ResourceTemplate is a workspace template.
	ResourceTemplate ResourceType = "template"
	// ResourceWorkspace is a workspace.
	ResourceWorkspace ResourceType = "workspace"
	// ResourceProvisioner is a provisioner daemon or job.
	ResourceProvisioner ResourceType = "provisioner"
	// ResourceDeployment is deployment-wide configuration and statistics.
	ResourceDeployment ResourceType = "deployment"
)

// Role names.
const (
	RoleOwner         = "owner"
	RoleTemplateAdmin = "template-admin"
	RoleMember        = "member"
)

// Object is the target of an action. OwnerID is the user the object belongs
// to (for a user object: the user itself); uuid.Nil means the object is not
// owned by anyone, such as "all users".
type Object struct {
	Type    ResourceType
	OwnerID uuid.UUID
	// ID identifies the object in logs and errors; it does not affect the
	// decision.
	ID string
}

// WithOwner returns a copy of o owned by owner.
func (o Object) WithOwner(owner uuid.UUID) Object {
	o.OwnerID = owner
	return o
}

// WithID returns a copy of o with the given identifier.
func (o Object) WithID(id string) Object {
	o.ID = id
	return o
}

// Subject is who acts: a user and the site roles it holds. Every subject is
// implicitly a member.
type Subject struct {
	ID    uuid.UUID
	Roles []string
}

// permission grants actions on a resource type, optionally only on objects
// the subject owns.
type permission struct {
	resource  ResourceType
	actions   []Action
	onlyOwned bool
}

var allActions = []Action{ActionRead, ActionCreate, ActionUpdate, ActionDelete}

// Role describes a site role.
type Role struct {
	Name        string
	DisplayName string
	permissions []permission
}

// builtinRoles returns the roles known to the deployment, freshly built so
// no caller can mutate shared state.
func builtinRoles() map[string]Role {
	return map[string]Role{
		RoleOwner: {
			Name: RoleOwner, DisplayName: "Owner",
			permissions: []permission{{resource: "*", actions: allActions}},
		},
		RoleTemplateAdmin: {
			Name: RoleTemplateAdmin, DisplayName: "Template Admin",
			permissions: []permission{
				{resource: ResourceTemplate, actions: allActions},
				{resource: ResourceUser, actions: []Action{ActionRead}},
				{resource: ResourceWorkspace, actions: []Action{ActionRead}},
				{resource: ResourceProvisioner, actions: []Action{ActionRead}},
			},
		},
		RoleMember: {
			Name: RoleMember, DisplayName: "Member",
			permissions: []permission{
				{resource: ResourceUser, actions: []Action{ActionRead}, onlyOwned: true},
				{resource: ResourceAPIKey, actions: allActions, onlyOwned: true},
				{resource: ResourceWorkspace, actions: allActions, onlyOwned: true},
				{resource: ResourceTemplate, actions: []Action{ActionRead}},
			},
		},
	}
}

// AssignableRoles lists the site roles that can be granted explicitly
// (member is implicit).
func AssignableRoles() []string {
	return []string{RoleOwner, RoleTemplateAdmin}
}

// RoleByName returns a built-in role.
func RoleByName(name string) (Role, bool) {
	r, ok := builtinRoles()[name]
	return r, ok
}

// ErrUnauthorized is returned (wrapped) when an action is not allowed.
var ErrUnauthorized = errors.New("unauthorized")

// Authorizer decides on actions.
type Authorizer interface {
	// Authorize returns nil when subject may do action on object, and an
	// error wrapping ErrUnauthorized otherwise.
	Authorize(ctx context.Context, subject Subject, action Action, object Object) error
}

// RoleAuthorizer is the Authorizer based on the built-in roles.
type RoleAuthorizer struct {
	roles map[string]Role
}

// NewAuthorizer returns the built-in role authorizer.
func NewAuthorizer() *RoleAuthorizer {
	return &RoleAuthorizer{roles: builtinRoles()}
}

// Authorize implements Authorizer.
func (a *RoleAuthorizer) Authorize(ctx context.Context, subject Subject, action Action, object Object) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("authorize: %w", err)
	}
	if subject.ID == uuid.Nil {
		return fmt.Errorf("%w: anonymous subject", ErrUnauthorized)
	}
	roleNames := append([]string{RoleMember}, subject.Roles...)
	for _, name := range roleNames {
		role, ok := a.roles[name]
		if !ok {
			continue
		}
		for _, p := range role.permissions {
			if p.resource != "*" && p.resource != object.Type {
				continue
			}
			if !slices.Contains(p.actions, action) {
				continue
			}
			if p.onlyOwned && (object.OwnerID == uuid.Nil || object.OwnerID != subject.ID) {
				continue
			}
			return nil
		}
	}
	return fmt.Errorf("%w: subject %s (roles %v) may not %s %s %q", ErrUnauthorized,
		subject.ID, subject.Roles, action, object.Type, object.ID)
}
