# A workspace that runs as a plain process on the provisioner's host.
#
# WARNING: SINGLE-USER LAPTOPS ONLY. Every workspace runs as the provisioner's own
# user on the server host: anyone who can create a workspace from this template gets
# a shell as that user (root if coder runs as root). For more than one user use the
# docker template (examples/templates/docker).
#
# - A persistent home directory per workspace survives stop and is removed on delete.
# - The agent runs detached (setsid + nohup) while the workspace is started and is
#   killed (its whole process group) when the workspace stops.
terraform {
  required_providers {
    coder = {
      source  = "coder/coder"
      version = "2.20.0"
    }
  }
}

data "coder_workspace" "me" {}
data "coder_workspace_owner" "me" {}

data "coder_parameter" "greeting" {
  name         = "greeting"
  display_name = "Greeting"
  description  = "Printed by the hello app and exported as GREETING in the workspace."
  type         = "string"
  default      = "hello"
  mutable      = true
  order        = 1
}

locals {
  # Workspaces live under the provisioner user's home (HOME of the provisioner),
  # named after owner and workspace when created. The path is kept in the home
  # resource: a renamed workspace keeps its home (and delete removes that one).
  new_home  = "${pathexpand("~")}/.coder-workspaces/${data.coder_workspace_owner.me.name}-${data.coder_workspace.me.name}"
  home      = terraform_data.home.output.path
  agent_dir = "${local.home}/.coder-agent"
  # The files app's port: one per workspace (all workspaces share this host's loopback).
  files_port = 20000 + parseint(substr(md5(data.coder_workspace.me.id), 0, 4), 16) % 10000
}

# Persistent: exists while the workspace exists, across stop/start.
resource "terraform_data" "home" {
  input = {
    path = local.new_home
  }
  lifecycle {
    # A rename changes new_home; the workspace keeps the home it has.
    ignore_changes = [input]
  }

  provisioner "local-exec" {
    command = "mkdir -p \"$HOME_DIR\""
    environment = {
      HOME_DIR = self.output.path
    }
  }

  # Also ends an agent whose resource the workspace's state lost (see the
  # agent below), so that deleting the workspace never leaves one running.
  provisioner "local-exec" {
    when    = destroy
    command = <<-EOT
      agent_dir="$HOME_DIR/.coder-agent"
      if [ -f "$agent_dir/agent.pid" ]; then
        old="$(cat "$agent_dir/agent.pid")"
        if tr '\0' '\n' <"/proc/$old/environ" 2>/dev/null | grep -qx "AGENT_DIR=$agent_dir"; then
          pkill -TERM -s "$old" 2>/dev/null || true
        fi
      fi
      rm -rf "$HOME_DIR"
    EOT
    environment = {
      HOME_DIR = self.output.path
    }
  }
}

resource "coder_agent" "main" {
  os   = "linux"
  arch = "amd64"
  dir  = local.home

  startup_script_behavior = "non-blocking"
  startup_script          = <<-EOT
    #!/bin/sh
    # Serve the home directory for the "files" app.
    nohup python3 -m http.server ${local.files_port} --bind 127.0.0.1 --directory "${local.home}" >"${local.agent_dir}/files-app.log" 2>&1 &
  EOT

  env = {
    GREETING = data.coder_parameter.greeting.value
  }

  metadata {
    key          = "load"
    display_name = "Load average"
    script       = "cut -d' ' -f1 /proc/loadavg"
    interval     = 10
    timeout      = 1
  }

  display_apps {
    vscode                 = false
    vscode_insiders        = false
    web_terminal           = true
    ssh_helper             = true
    port_forwarding_helper = true
  }
}

# Computational: the agent process, only while the workspace is started.
resource "terraform_data" "agent" {
  count = data.coder_workspace.me.start_count

  input = {
    dir      = local.agent_dir
    pid_file = "${local.agent_dir}/agent.pid"
    token    = coder_agent.main.token
  }

  # The provider hands out a new agent token on every build. A start that
  # finds the agent already running (the previous start failed after
  # starting it, e.g. its provisioner was killed) must restart it with the
  # new token, or coderd refuses the old one for good.
  triggers_replace = [coder_agent.main.token]

  provisioner "local-exec" {
    # Output must be detached, otherwise terraform waits for the agent to exit.
    # An agent left by a build whose state was lost (its provisioner was killed
    # before recording this resource) is ended first: it runs with a token
    # coderd no longer accepts. Its environment tells it from a reused PID.
    command = <<-EOT
      set -e
      mkdir -p "$AGENT_DIR"
      if [ -f "$PID_FILE" ]; then
        old="$(cat "$PID_FILE")"
        if tr '\0' '\n' <"/proc/$old/environ" 2>/dev/null | grep -qx "AGENT_DIR=$AGENT_DIR"; then
          pkill -TERM -s "$old" 2>/dev/null || true
        fi
        rm -f "$PID_FILE"
      fi
      setsid nohup sh -c "$INIT_SCRIPT" >"$AGENT_DIR/agent.log" 2>&1 </dev/null &
      echo $! >"$PID_FILE"
    EOT
    environment = {
      AGENT_DIR         = local.agent_dir
      PID_FILE          = "${local.agent_dir}/agent.pid"
      INIT_SCRIPT       = coder_agent.main.init_script
      CODER_AGENT_TOKEN = coder_agent.main.token
      HOME              = local.home
    }
  }

  provisioner "local-exec" {
    when    = destroy
    command = <<-EOT
      if [ -f "$PID_FILE" ]; then
        pid="$(cat "$PID_FILE")"
        # The agent runs as a session leader (setsid): end the whole session, so
        # what its scripts started in the background (the files app) goes too.
        pkill -TERM -s "$pid" 2>/dev/null || kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        rm -f "$PID_FILE"
      fi
    EOT
    environment = {
      PID_FILE = self.output.pid_file
    }
  }

  depends_on = [terraform_data.home]
}

resource "coder_app" "files" {
  agent_id     = coder_agent.main.id
  slug         = "files"
  display_name = "Files"
  url          = "http://localhost:${local.files_port}"
  icon         = "/icon/folder.svg"
  subdomain    = false
  share        = "owner"

  healthcheck {
    url       = "http://localhost:${local.files_port}"
    interval  = 5
    threshold = 6
  }
}

resource "coder_app" "hello" {
  agent_id     = coder_agent.main.id
  slug         = "hello"
  display_name = "Hello"
  command      = "echo \"$GREETING from ${data.coder_workspace.me.name}\""
  icon         = "/icon/terminal.svg"
}

resource "coder_metadata" "home" {
  resource_id = terraform_data.home.id
  icon        = "/icon/folder.svg"

  item {
    key   = "path"
    value = local.home
  }
  item {
    key   = "owner"
    value = data.coder_workspace_owner.me.name
  }
}
