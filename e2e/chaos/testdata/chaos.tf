# Added by the chaos test (e2e/chaos) next to examples/templates/local/main.tf:
# slow resources that echo numbered lines during every build, so that a fault
# can be injected at a chosen line and the build logs checked for lost lines.
#
# Each line is first appended to $CHAOS_LEDGER (set in the provisioner
# daemon's environment, inherited by terraform and local-exec), then written
# to stdout, which terraform turns into build log lines. Without CHAOS_LEDGER
# the lines are only echoed.

locals {
  chaos_echo = <<-EOT
    set -eu
    i=1
    while [ "$i" -le 3 ]; do
      line="chaos-log build=$CODER_WORKSPACE_BUILD_ID phase=$PHASE n=$i"
      if [ -n "$${CHAOS_LEDGER:-}" ]; then
        printf '%s\n' "$line" >>"$CHAOS_LEDGER"
      fi
      printf '%s\n' "$line"
      sleep 1
      i=$((i + 1))
    done
  EOT
}

# Created once with the workspace (after its home), destroyed with it.
resource "terraform_data" "chaos_home_log" {
  depends_on = [terraform_data.home]

  provisioner "local-exec" {
    command     = local.chaos_echo
    environment = { PHASE = "home-create" }
  }
  provisioner "local-exec" {
    when        = destroy
    command     = self.input
    environment = { PHASE = "home-destroy" }
  }
  input = local.chaos_echo
}

# Created by every start (after the agent process was started), destroyed by
# every stop and the delete (before the agent process is killed). It also
# follows chaos_home_log, so that no two resources echo at the same time.
resource "terraform_data" "chaos_agent_log" {
  count      = data.coder_workspace.me.start_count
  depends_on = [terraform_data.agent, terraform_data.chaos_home_log]

  provisioner "local-exec" {
    command     = local.chaos_echo
    environment = { PHASE = "agent-create" }
  }
  provisioner "local-exec" {
    when        = destroy
    command     = self.input
    environment = { PHASE = "agent-destroy" }
  }
  input = local.chaos_echo
}
