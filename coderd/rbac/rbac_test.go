package rbac_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/rbac"
)

func TestAuthorize(t *testing.T) {
	t.Parallel()
	self := uuid.New()
	other := uuid.New()
	member := rbac.Subject{ID: self}
	owner := rbac.Subject{ID: self, Roles: []string{rbac.RoleOwner}}
	templateAdmin := rbac.Subject{ID: self, Roles: []string{rbac.RoleTemplateAdmin}}

	userSelf := rbac.Object{Type: rbac.ResourceUser, OwnerID: self}
	userOther := rbac.Object{Type: rbac.ResourceUser, OwnerID: other}
	allUsers := rbac.Object{Type: rbac.ResourceUser}
	keySelf := rbac.Object{Type: rbac.ResourceAPIKey, OwnerID: self}
	keyOther := rbac.Object{Type: rbac.ResourceAPIKey, OwnerID: other}
	template := rbac.Object{Type: rbac.ResourceTemplate}
	roles := rbac.Object{Type: rbac.ResourceRoleAssignment}

	for _, tc := range []struct {
		name    string
		subject rbac.Subject
		action  rbac.Action
		object  rbac.Object
		allowed bool
	}{
		{"member reads self", member, rbac.ActionRead, userSelf, true},
		{"member cannot update self status", member, rbac.ActionUpdate, userSelf, false},
		{"member cannot read other user", member, rbac.ActionRead, userOther, false},
		{"member cannot read all users", member, rbac.ActionRead, allUsers, false},
		{"member creates own key", member, rbac.ActionCreate, keySelf, true},
		{"member deletes own key", member, rbac.ActionDelete, keySelf, true},
		{"member cannot read other's keys", member, rbac.ActionRead, keyOther, false},
		{"member reads templates", member, rbac.ActionRead, template, true},
		{"member cannot create templates", member, rbac.ActionCreate, template, false},
		{"member cannot assign roles", member, rbac.ActionUpdate, roles, false},
		{"owner reads other user", owner, rbac.ActionRead, userOther, true},
		{"owner deletes other's key", owner, rbac.ActionDelete, keyOther, true},
		{"owner assigns roles", owner, rbac.ActionUpdate, roles, true},
		{"template admin creates templates", templateAdmin, rbac.ActionCreate, template, true},
		{"template admin reads all users", templateAdmin, rbac.ActionRead, allUsers, true},
		{"template admin cannot update users", templateAdmin, rbac.ActionUpdate, userOther, false},
		{"template admin cannot read other's keys", templateAdmin, rbac.ActionRead, keyOther, false},
		{"unknown role grants nothing extra", rbac.Subject{ID: self, Roles: []string{"wizard"}}, rbac.ActionRead, allUsers, false},
		{"anonymous subject denied", rbac.Subject{}, rbac.ActionRead, template, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := rbac.NewAuthorizer().Authorize(context.Background(), tc.subject, tc.action, tc.object)
			if tc.allowed && err != nil {
				t.Fatalf("want allowed, got %v", err)
			}
			if !tc.allowed && !errors.Is(err, rbac.ErrUnauthorized) {
				t.Fatalf("want ErrUnauthorized, got %v", err)
			}
		})
	}
}
