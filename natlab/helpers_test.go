package natlab_test

import (
	"context"
	"os/exec"
)

func runCmd(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func execCommand(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }
