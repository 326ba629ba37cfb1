package terraform

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/terraform-exec/tfexec"
	tfjson "github.com/hashicorp/terraform-json"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
	"github.com/wgmesh/coder/provisioner/templatearchive"
)

// Flavor names of the infrastructure-as-code tool a Runner drives.
const (
	FlavorTerraform = "terraform"
	FlavorOpenTofu  = "opentofu"
)

// DefaultInterruptGrace is how long a canceled command may take to stop after SIGINT
// before it is killed.
const DefaultInterruptGrace = 30 * time.Second

// Runner runs template jobs with a terraform or OpenTofu binary. The zero value is
// usable: it runs terraform (else tofu) found on PATH with terraform's default CLI
// configuration. A Runner holds no per-job state and may run several jobs
// concurrently.
type Runner struct {
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// TerraformPath is the terraform (or tofu) binary. Default: "terraform" on
	// PATH, else "tofu" on PATH.
	TerraformPath string
	// CLIConfigPath is the terraform CLI configuration file, passed to terraform as
	// TF_CLI_CONFIG_FILE (typically a provider mirror configuration). Empty means
	// terraform's own default (~/.terraformrc): the runner's TF_* environment is
	// never inherited, so TF_CLI_CONFIG_FILE must be passed here to count.
	CLIConfigPath string
	// WorkDir is the directory under which each job gets a private working directory,
	// removed when the job ends. Default: os.TempDir().
	WorkDir string
	// Env adds to (or overrides) the environment terraform runs with. The runner's own
	// environment is inherited without CODER_* and TF_* variables; terraform-managed
	// variables (TF_VAR_*, TF_LOG, ...) are dropped from Env.
	Env map[string]string
	// InterruptGrace is how long terraform may take to stop after being interrupted
	// (SIGINT, sent when the job's context is canceled) before it is killed.
	// Default: DefaultInterruptGrace.
	InterruptGrace time.Duration
	// StatePollInterval is how often the state file is checked while a build
	// applies, for Build's WithStateUpdates. Default: DefaultStatePollInterval.
	StatePollInterval time.Duration
}

// VersionInfo describes the binary a Runner uses.
type VersionInfo struct {
	// Flavor is FlavorTerraform or FlavorOpenTofu.
	Flavor string `json:"flavor"`
	// Version is the version without a leading "v", e.g. "1.8.5" (binaries built
	// with go install carry a "-dev" suffix: "1.8.5-dev").
	Version string `json:"version"`
	// Path is the binary's path.
	Path string `json:"path"`
}

// ImportResult is what a template import finds in a template.
type ImportResult struct {
	// Parameters are the template's rich parameters (data.coder_parameter).
	Parameters []provisionersdk.RichParameter
	// Resources are the resources a start would create.
	Resources []provisionersdk.Resource
	// StopResources are the resources that exist while a workspace is stopped.
	StopResources []provisionersdk.Resource
	// Variables are the template's Terraform variable blocks.
	Variables []provisionersdk.TemplateVariable
}

// BuildResult is the outcome of a workspace build.
type BuildResult struct {
	// State is the Terraform state after the build; nil after a successful delete.
	State []byte
	// Resources are the workspace's resources after the build.
	Resources []provisionersdk.Resource
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

func (r *Runner) binaryPath() (string, error) {
	if r.TerraformPath != "" {
		return r.TerraformPath, nil
	}
	for _, name := range []string{"terraform", "tofu"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("find terraform: %w", ErrNoBinary)
}

// ErrNoBinary is returned (wrapped) when a Runner without TerraformPath finds
// neither terraform nor tofu on PATH.
var ErrNoBinary = errors.New("neither terraform nor tofu is on PATH")

func (r *Runner) cliConfigPath() string { return r.CLIConfigPath }

var versionLine = regexp.MustCompile(`^(Terraform|OpenTofu) v(\S+)`)

// Version reports which tool and version the Runner uses.
func (r *Runner) Version(ctx context.Context) (VersionInfo, error) {
	path, err := r.binaryPath()
	if err != nil {
		return VersionInfo{}, err
	}
	cmd := exec.CommandContext(ctx, path, "version")
	env := baseEnv()
	env["CHECKPOINT_DISABLE"] = "1"
	if rc := r.cliConfigPath(); rc != "" {
		env["TF_CLI_CONFIG_FILE"] = rc
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.Output()
	if err != nil {
		return VersionInfo{}, fmt.Errorf("run %s version: %w", path, err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	m := versionLine.FindStringSubmatch(strings.TrimSpace(first))
	if m == nil {
		return VersionInfo{}, fmt.Errorf("unrecognized %s version output %q", path, first)
	}
	flavor := FlavorTerraform
	if m[1] == "OpenTofu" {
		flavor = FlavorOpenTofu
	}
	return VersionInfo{Flavor: flavor, Version: m[2], Path: path}, nil
}

// job is one run of terraform in a private working directory.
type job struct {
	r     *Runner
	dir   string
	lock  *jobLock
	tf    *tfexec.Terraform
	logs  LogFunc
	diags *diagnostics
	// failed is set when a terraform command failed or was interrupted:
	// close then kills what the job left running.
	failed bool
}

func (r *Runner) newJob(archive []byte, env map[string]string, logs LogFunc) (*job, error) {
	path, err := r.binaryPath()
	if err != nil {
		return nil, err
	}
	dir, lock, err := newJobDir(r.workDir())
	if err != nil {
		return nil, err
	}
	j := &job{r: r, dir: dir, lock: lock, logs: logs, diags: &diagnostics{}}
	if err := templatearchive.Extract(archive, dir); err != nil {
		j.close()
		return nil, err
	}
	tf, err := tfexec.NewTerraform(dir, path)
	if err != nil {
		j.close()
		return nil, fmt.Errorf("terraform exec: %w", err)
	}
	full := baseEnv()
	for k, v := range tfexec.CleanEnv(copyMap(r.Env)) {
		full[k] = v
	}
	for k, v := range env {
		full[k] = v
	}
	full["CHECKPOINT_DISABLE"] = "1"
	full[JobDirEnv] = dir
	if rc := r.cliConfigPath(); rc != "" {
		full["TF_CLI_CONFIG_FILE"] = rc
	}
	if err := tf.SetEnv(full); err != nil {
		j.close()
		return nil, fmt.Errorf("terraform env: %w", err)
	}
	grace := r.InterruptGrace
	if grace <= 0 {
		grace = DefaultInterruptGrace
	}
	if err := tf.SetWaitDelay(grace); err != nil {
		j.close()
		return nil, fmt.Errorf("terraform wait delay: %w", err)
	}
	j.tf = tf
	return j, nil
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// close ends the job in every outcome: after a failure or a cancel it kills
// the processes terraform left in its process group (the `sh -c` of an
// interrupted local-exec and its children), then it removes the working
// directory (template, plan and state, which holds agent tokens) and
// releases the lock.
func (j *job) close() {
	if j.failed {
		if err := killJobProcesses(j.dir); err != nil {
			j.r.logger().Warn("kill processes left by terraform", "dir", j.dir, "error", err)
		}
	}
	if err := os.RemoveAll(j.dir); err != nil {
		j.r.logger().Warn("remove terraform job dir", "dir", j.dir, "error", err)
	}
	j.lock.release()
}

func (j *job) log(stage string, level codersdk.LogLevel, output string) {
	if j.logs != nil {
		j.logs(provisionersdk.Log{CreatedAt: time.Now().UTC(), Level: level, Stage: stage, Output: output})
	}
}

// writers returns a plain-text stdout writer and a stderr writer for stage.
func (j *job) writers(stage string, jsonOut bool) (*logWriter, *logWriter) {
	out := &logWriter{stage: stage, json: jsonOut, level: codersdk.LogLevelInfo, emit: j.logs, errs: j.diags}
	errw := &logWriter{stage: stage, level: codersdk.LogLevelError, emit: j.logs, errs: j.diags}
	return out, errw
}

// fail builds the error for a failed terraform command, preferring terraform's own
// diagnostics and reporting interruption when ctx was canceled.
func (j *job) fail(ctx context.Context, what string, err error) error {
	j.failed = true
	if ctx.Err() != nil {
		return fmt.Errorf("terraform %s interrupted: %w", what, errors.Join(ctx.Err(), err))
	}
	if msg := j.diags.String(); msg != "" {
		// terraform-exec appends terraform's whole stderr to the exit
		// error; the diagnostics already say it, so keep only the status.
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			err = exitErr
		}
		return fmt.Errorf("terraform %s: %s: %w", what, msg, err)
	}
	return fmt.Errorf("terraform %s: %w", what, err)
}

func (j *job) init(ctx context.Context) error {
	out, errw := j.writers(StageSetup, false)
	j.tf.SetStdout(out)
	j.tf.SetStderr(errw)
	defer j.tf.SetStdout(io.Discard)
	defer j.tf.SetStderr(io.Discard)
	err := j.tf.Init(ctx, tfexec.Upgrade(false))
	out.Flush()
	errw.Flush()
	if err != nil {
		return j.fail(ctx, "init", err)
	}
	return nil
}

func (j *job) plan(ctx context.Context, stage, planFile string, destroy bool, vars []codersdk.VariableValue) (*tfjson.Plan, error) {
	out, errw := j.writers(stage, true)
	j.tf.SetStdout(io.Discard)
	j.tf.SetStderr(errw)
	defer j.tf.SetStderr(io.Discard)
	opts := []tfexec.PlanOption{tfexec.Out(planFile), tfexec.Destroy(destroy), tfexec.Refresh(true), tfexec.Lock(false)}
	if len(vars) > 0 {
		// Values go through a file, never the command line (visible to
		// every local user) or the log; the plan file keeps them for apply.
		varFile, err := writeVarFile(j.dir, vars)
		if err != nil {
			return nil, err
		}
		defer os.Remove(varFile)
		opts = append(opts, tfexec.VarFile(varFile))
	}
	_, err := j.tf.PlanJSON(ctx, out, opts...)
	// PlanJSON installs out as terraform's stdout; every later command tees its
	// stdout there, so `show -json` (which holds sensitive values such as agent
	// tokens) would land in the build log. Detach it first.
	j.tf.SetStdout(io.Discard)
	out.Flush()
	errw.Flush()
	if err != nil {
		if missing := j.diags.missingVariables(); len(missing) > 0 {
			j.failed = true
			return nil, &MissingVariablesError{Names: missing}
		}
		return nil, j.fail(ctx, "plan", err)
	}
	plan, err := j.tf.ShowPlanFile(ctx, planFile)
	if err != nil {
		return nil, j.fail(ctx, "show plan", err)
	}
	return plan, nil
}

func (j *job) apply(ctx context.Context, stage, planFile string) error {
	out, errw := j.writers(stage, true)
	j.tf.SetStdout(io.Discard)
	j.tf.SetStderr(errw)
	defer j.tf.SetStderr(io.Discard)
	err := j.tf.ApplyJSON(ctx, out, tfexec.DirOrPlan(planFile), tfexec.Lock(false))
	j.tf.SetStdout(io.Discard) // see plan: keep `show -json` out of the log
	out.Flush()
	errw.Flush()
	if err != nil {
		return j.fail(ctx, "apply", err)
	}
	return nil
}

func (j *job) statePath() string { return filepath.Join(j.dir, "terraform.tfstate") }

// Import parses a template: it plans a start (and a stop) without applying anything
// and returns the rich parameters and the resources each transition would have.
//
// WithVariables gives values to the template's Terraform variables; an
// import fails with a *MissingVariablesError when a variable without a
// default has none, and when a value names a variable the template does not
// declare.
func (r *Runner) Import(ctx context.Context, archive []byte, md provisionersdk.Metadata, params []codersdk.WorkspaceBuildParameter, logs LogFunc, opts ...BuildOption) (*ImportResult, error) {
	var bo buildOptions
	for _, o := range opts {
		o(&bo)
	}
	if md.CoderURL == "" {
		// Never contacted: an import only plans.
		md.CoderURL = "http://127.0.0.1/"
	}
	// Inherited values go to terraform too; one for a variable the
	// template no longer declares is only a warning in a var file.
	vars := append(slices.Clone(bo.variables), bo.inherited...)
	res := &ImportResult{}
	for _, transition := range []codersdk.WorkspaceTransition{codersdk.WorkspaceTransitionStart, codersdk.WorkspaceTransitionStop} {
		md.WorkspaceTransition = transition
		plan, err := r.planOnly(ctx, archive, md, params, logs, vars)
		if err != nil {
			return nil, err
		}
		conv, err := ConvertPlan(plan)
		if err != nil {
			return nil, fmt.Errorf("parse %s plan: %w", transition, err)
		}
		if transition == codersdk.WorkspaceTransitionStart {
			vars, err := TemplateVariables(plan, bo.variables)
			if err != nil {
				return nil, err
			}
			res.Variables = vars
			res.Parameters = conv.Parameters
			res.Resources = conv.Resources
		} else {
			res.StopResources = conv.Resources
		}
	}
	return res, nil
}

// DryRun plans a workspace build (start by default) without applying it and returns
// the resources it would produce.
func (r *Runner) DryRun(ctx context.Context, archive []byte, md provisionersdk.Metadata, params []codersdk.WorkspaceBuildParameter, logs LogFunc, opts ...BuildOption) ([]provisionersdk.Resource, error) {
	var bo buildOptions
	for _, o := range opts {
		o(&bo)
	}
	if md.WorkspaceTransition == "" {
		md.WorkspaceTransition = codersdk.WorkspaceTransitionStart
	}
	plan, err := r.planOnly(ctx, archive, md, params, logs, bo.variables)
	if err != nil {
		return nil, err
	}
	conv, err := ConvertPlan(plan)
	if err != nil {
		return nil, fmt.Errorf("parse plan: %w", err)
	}
	return conv.Resources, nil
}

func (r *Runner) planOnly(ctx context.Context, archive []byte, md provisionersdk.Metadata, params []codersdk.WorkspaceBuildParameter, logs LogFunc, vars []codersdk.VariableValue) (*tfjson.Plan, error) {
	j, err := r.newJob(archive, ContractEnv(md, params), logs)
	if err != nil {
		return nil, err
	}
	defer j.close()
	if err := j.init(ctx); err != nil {
		return nil, err
	}
	return j.plan(ctx, StagePlan, filepath.Join(j.dir, "terraform.tfplan"), false, vars)
}

// Build applies a workspace transition (md.WorkspaceTransition: start, stop or
// delete) starting from the previous build's state. Logs are streamed to logs as
// terraform runs. On success it returns the new state (nil after a delete) and the
// resources found in it. On failure after terraform touched the state, the returned
// BuildResult (non-nil) carries the state terraform left, so it is not lost.
// Canceling ctx interrupts terraform (SIGINT) and waits for it to stop gracefully
// (up to InterruptGrace).
//
// Options may add a StateFunc (WithStateUpdates) that receives the state
// terraform writes while it applies.
func (r *Runner) Build(ctx context.Context, archive, state []byte, md provisionersdk.Metadata, params []codersdk.WorkspaceBuildParameter, logs LogFunc, opts ...BuildOption) (*BuildResult, error) {
	var bo buildOptions
	for _, o := range opts {
		o(&bo)
	}
	var stage string
	switch md.WorkspaceTransition {
	case codersdk.WorkspaceTransitionStart:
		stage = StageStart
	case codersdk.WorkspaceTransitionStop:
		stage = StageStop
	case codersdk.WorkspaceTransitionDelete:
		stage = StageDestroy
	default:
		return nil, fmt.Errorf("unknown workspace transition %q", md.WorkspaceTransition)
	}
	j, err := r.newJob(archive, ContractEnv(md, params), logs)
	if err != nil {
		return nil, err
	}
	defer j.close()
	if len(state) > 0 {
		if err := os.WriteFile(j.statePath(), state, 0o600); err != nil {
			return nil, fmt.Errorf("write previous state: %w", err)
		}
	}
	if err := j.init(ctx); err != nil {
		return nil, err
	}
	planFile := filepath.Join(j.dir, "terraform.tfplan")
	destroy := md.WorkspaceTransition == codersdk.WorkspaceTransitionDelete
	plan, err := j.plan(ctx, StagePlan, planFile, destroy, bo.variables)
	if err != nil {
		return nil, err
	}
	stopWatch := j.watchState(bo.onState, r.statePollInterval())
	applyErr := j.apply(ctx, stage, planFile)
	stopWatch()
	newState, readErr := os.ReadFile(j.statePath())
	if readErr != nil && !errors.Is(readErr, os.ErrNotExist) {
		return nil, errors.Join(applyErr, fmt.Errorf("read state: %w", readErr))
	}
	if applyErr != nil {
		if len(newState) == 0 {
			newState = state
		}
		return &BuildResult{State: newState}, applyErr
	}
	shown, err := j.tf.Show(ctx)
	if err != nil {
		return &BuildResult{State: newState}, j.fail(ctx, "show state", err)
	}
	conv, err := ConvertState(shown, plan)
	if err != nil {
		return &BuildResult{State: newState}, fmt.Errorf("parse state: %w", err)
	}
	if destroy && len(conv.Resources) == 0 && !stateHasResources(shown) {
		newState = nil
	}
	j.log(stage, codersdk.LogLevelInfo, fmt.Sprintf("%s: %d resource(s)", stage, len(conv.Resources)))
	return &BuildResult{State: newState, Resources: conv.Resources}, nil
}

func stateHasResources(s *tfjson.State) bool {
	if s == nil || s.Values == nil || s.Values.RootModule == nil {
		return false
	}
	var walk func(m *tfjson.StateModule) bool
	walk = func(m *tfjson.StateModule) bool {
		if len(m.Resources) > 0 {
			return true
		}
		for _, c := range m.ChildModules {
			if walk(c) {
				return true
			}
		}
		return false
	}
	return walk(s.Values.RootModule)
}
