package terraform

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
)

// ParameterEnvName is the environment variable through which the Coder provider
// (v2) reads the value of the rich parameter called name:
// CODER_PARAMETER_ followed by the hex SHA-256 of the name.
func ParameterEnvName(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "CODER_PARAMETER_" + hex.EncodeToString(sum[:])
}

// ContractEnv returns the template contract for a job as environment variables: the
// CODER_* values read by the Coder provider, the agent init scripts and the
// parameter values.
func ContractEnv(md provisionersdk.Metadata, params []codersdk.WorkspaceBuildParameter) map[string]string {
	env := map[string]string{
		"CODER_AGENT_URL":                         md.CoderURL,
		"CODER_WORKSPACE_TRANSITION":              string(md.WorkspaceTransition),
		"CODER_WORKSPACE_NAME":                    md.WorkspaceName,
		"CODER_WORKSPACE_OWNER":                   md.WorkspaceOwner,
		"CODER_WORKSPACE_OWNER_EMAIL":             md.WorkspaceOwnerEmail,
		"CODER_WORKSPACE_OWNER_NAME":              md.WorkspaceOwnerName,
		"CODER_WORKSPACE_OWNER_ID":                md.WorkspaceOwnerID,
		"CODER_WORKSPACE_OWNER_SESSION_TOKEN":     md.WorkspaceOwnerSessionToken,
		"CODER_WORKSPACE_OWNER_OIDC_ACCESS_TOKEN": md.WorkspaceOwnerOIDCAccessToken,
		"CODER_WORKSPACE_OWNER_SSH_PUBLIC_KEY":    md.WorkspaceOwnerSSHPublicKey,
		"CODER_WORKSPACE_OWNER_SSH_PRIVATE_KEY":   md.WorkspaceOwnerSSHPrivateKey,
		"CODER_WORKSPACE_OWNER_LOGIN_TYPE":        md.WorkspaceOwnerLoginType,
		"CODER_WORKSPACE_ID":                      md.WorkspaceID,
		"CODER_WORKSPACE_BUILD_ID":                md.WorkspaceBuildID,
		"CODER_WORKSPACE_TEMPLATE_ID":             md.TemplateID,
		"CODER_WORKSPACE_TEMPLATE_NAME":           md.TemplateName,
		"CODER_WORKSPACE_TEMPLATE_VERSION":        md.TemplateVersion,
	}
	if len(md.WorkspaceOwnerGroups) > 0 {
		env["CODER_WORKSPACE_OWNER_GROUPS"] = toJSONList(md.WorkspaceOwnerGroups)
	}
	for _, p := range AgentPlatforms() {
		// The provider looks up CODER_AGENT_SCRIPT_<os>_<arch> with the attribute
		// values as written (lower case).
		env[fmt.Sprintf("CODER_AGENT_SCRIPT_%s_%s", p.OS, p.Arch)] = AgentInitScript(p.OS, p.Arch, "")
	}
	for _, p := range params {
		env[ParameterEnvName(p.Name)] = p.Value
	}
	return env
}

func toJSONList(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(quoted, ",") + "]"
}

// baseEnv returns the runner's own environment without the variables that belong to
// coderd or would change terraform's behaviour behind our back: everything starting
// with CODER_ or TF_, and CHECKPOINT_DISABLE.
func baseEnv() map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		if strings.HasPrefix(k, "CODER_") || strings.HasPrefix(k, "TF_") || k == "CHECKPOINT_DISABLE" {
			continue
		}
		env[k] = v
	}
	return env
}
