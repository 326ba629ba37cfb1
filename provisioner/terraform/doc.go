// Package terraform runs Coder templates with a real terraform (or OpenTofu) binary:
// it extracts a template archive, passes the template contract through the
// environment, streams terraform's machine-readable logs, and turns plans and state
// into the resources, agents, apps and parameters coderd stores.
//
// The package never imports the database; it talks to coderd only through the types
// in codersdk/provisionersdk; template archives are read with provisioner/templatearchive.
package terraform
