# A workspace in a Docker container on the provisioner's Docker daemon, in the shape of
# Coder's own docker template:
#
# - a persistent home volume (docker_volume) per workspace: survives stop, removed on delete;
# - a container (docker_container, count = start_count) that runs the agent as the
#   unprivileged `coder` user: created on start, destroyed on stop;
# - code-server (the VS Code workbench in the browser) started by the agent and opened
#   through coderd's apps proxy, by path and by subdomain;
# - metadata (CPU, memory, home disk) from `coder stat` inside the container.
#
# coderd must be reachable from containers: the agent's init script names coderd's access
# URL, and a loopback one (127.0.0.1/localhost) is rewritten to host.docker.internal, which
# maps to the Docker bridge's gateway. `make run` listens there too (see docs/templates.md).
terraform {
  required_providers {
    coder = {
      source = "coder/coder"
    }
    docker = {
      source = "kreuzwerker/docker"
    }
  }
}

variable "docker_socket" {
  default     = ""
  description = "(Optional) Docker socket URI, e.g. unix:///var/run/docker.sock; empty uses DOCKER_HOST or the default socket."
  type        = string
}

variable "image" {
  default     = "coder-workspace-base:bookworm"
  description = "Workspace image: needs a `coder` user, curl (for the agent download) and code-server. scripts/workspace-image.sh builds the default offline."
  type        = string
}

provider "docker" {
  # null when empty: an optional variable without a default of our own.
  host = var.docker_socket != "" ? var.docker_socket : null
}

data "coder_provisioner" "me" {}
data "coder_workspace" "me" {}
data "coder_workspace_owner" "me" {}

locals {
  home             = "/home/coder"
  code_server_port = 13337
  # Docker container names must be lower case.
  container_name = "coder-${lower(data.coder_workspace_owner.me.name)}-${lower(data.coder_workspace.me.name)}"
  git_name       = coalesce(data.coder_workspace_owner.me.full_name, data.coder_workspace_owner.me.name)
}

resource "coder_agent" "main" {
  arch = data.coder_provisioner.me.arch
  os   = "linux"
  dir  = local.home

  startup_script_behavior = "non-blocking"
  startup_script          = <<-EOT
    set -e
    # Fill a new home volume with the default dotfiles on first start.
    if [ ! -f ~/.init_done ]; then
      cp -rT /etc/skel ~
      touch ~/.init_done
    fi
    # code-server for the code-server apps; only the agent (same container) reaches it.
    nohup code-server --auth none --bind-addr 127.0.0.1:${local.code_server_port} \
      --disable-telemetry --disable-update-check --disable-workspace-trust \
      "${local.home}" >/tmp/code-server.log 2>&1 &
  EOT

  # Git commits work right away with the owner's identity (overrides ~/.gitconfig).
  env = {
    GIT_AUTHOR_NAME     = local.git_name
    GIT_AUTHOR_EMAIL    = data.coder_workspace_owner.me.email
    GIT_COMMITTER_NAME  = local.git_name
    GIT_COMMITTER_EMAIL = data.coder_workspace_owner.me.email
  }

  # Shown in the dashboard; `coder stat` measures the container's cgroup (v1 or v2)
  # against its limits, --host the whole Docker host.
  metadata {
    display_name = "CPU Usage"
    key          = "0_cpu_usage"
    script       = "coder stat cpu"
    interval     = 10
    timeout      = 1
  }
  metadata {
    display_name = "RAM Usage"
    key          = "1_ram_usage"
    script       = "coder stat mem"
    interval     = 10
    timeout      = 1
  }
  metadata {
    display_name = "Home Disk"
    key          = "3_home_disk"
    script       = "coder stat disk --path $${HOME}"
    interval     = 60
    timeout      = 1
  }
  metadata {
    display_name = "CPU Usage (Host)"
    key          = "4_cpu_usage_host"
    script       = "coder stat cpu --host"
    interval     = 10
    timeout      = 1
  }
  metadata {
    display_name = "Memory Usage (Host)"
    key          = "5_mem_usage_host"
    script       = "coder stat mem --host"
    interval     = 10
    timeout      = 1
  }
  metadata {
    display_name = "Load Average (Host)"
    key          = "6_load_host"
    # The 1-minute load average per core.
    script   = <<-EOT
      echo "$(cut -d' ' -f1 /proc/loadavg) $(nproc)" | awk '{ printf "%0.2f", $1/$2 }'
    EOT
    interval = 60
    timeout  = 1
  }

  display_apps {
    vscode                 = false
    vscode_insiders        = false
    web_terminal           = true
    ssh_helper             = true
    port_forwarding_helper = true
  }
}

# code-server by path: /@owner/workspace.main/apps/code-server/ on the dashboard's origin.
resource "coder_app" "code-server" {
  agent_id     = coder_agent.main.id
  slug         = "code-server"
  display_name = "code-server"
  url          = "http://localhost:${local.code_server_port}/?folder=${local.home}"
  icon         = "/icon/code.svg"
  subdomain    = false
  share        = "owner"
  order        = 1

  healthcheck {
    url       = "http://localhost:${local.code_server_port}/healthz"
    interval  = 5
    threshold = 6
  }
}

# code-server on its own origin (needs the deployment's wildcard access URL).
resource "coder_app" "code-server-subdomain" {
  agent_id     = coder_agent.main.id
  slug         = "code-server-subdomain"
  display_name = "code-server (subdomain)"
  url          = "http://localhost:${local.code_server_port}/?folder=${local.home}"
  icon         = "/icon/code.svg"
  subdomain    = true
  share        = "owner"
  order        = 2

  healthcheck {
    url       = "http://localhost:${local.code_server_port}/healthz"
    interval  = 5
    threshold = 6
  }
}

# Persistent: the home directory, kept across stop/start, removed when the workspace is deleted.
resource "docker_volume" "home_volume" {
  name = "coder-${data.coder_workspace.me.id}-home"
  # Never replace (and so empty) the home because an attribute changed.
  lifecycle {
    ignore_changes = all
  }
  # Labels find the volumes of a workspace or owner, orphans included.
  labels {
    label = "coder.owner"
    value = data.coder_workspace_owner.me.name
  }
  labels {
    label = "coder.owner_id"
    value = data.coder_workspace_owner.me.id
  }
  labels {
    label = "coder.workspace_id"
    value = data.coder_workspace.me.id
  }
  # Outdated after a rename, but useful when cleaning up.
  labels {
    label = "coder.workspace_name_at_creation"
    value = data.coder_workspace.me.name
  }
}

# Computational: the container running the agent, only while the workspace is started.
resource "docker_container" "workspace" {
  count = data.coder_workspace.me.start_count
  image = var.image
  name  = local.container_name
  # coder@<workspace>:~$ in shells.
  hostname = data.coder_workspace.me.name
  # The image's unprivileged user; sudo works inside the container only.
  user = "coder"
  # A loopback access URL means the Docker host: reach it through the bridge gateway.
  entrypoint = ["sh", "-c", replace(coder_agent.main.init_script, "/localhost|127\\.0\\.0\\.1/", "host.docker.internal")]
  env        = ["CODER_AGENT_TOKEN=${coder_agent.main.token}"]
  # Reap the agent's orphaned children (the agent itself is not an init).
  init = true

  host {
    host = "host.docker.internal"
    ip   = "host-gateway"
  }

  volumes {
    container_path = local.home
    volume_name    = docker_volume.home_volume.name
    read_only      = false
  }

  labels {
    label = "coder.owner"
    value = data.coder_workspace_owner.me.name
  }
  labels {
    label = "coder.owner_id"
    value = data.coder_workspace_owner.me.id
  }
  labels {
    label = "coder.workspace_id"
    value = data.coder_workspace.me.id
  }
  labels {
    label = "coder.workspace_name"
    value = data.coder_workspace.me.name
  }
}
