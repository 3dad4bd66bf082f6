// Package node runs test/node/interop.mjs: a Node.js kernel spawning workers through vatrun the
// way agoric's kernel spawns xsnap (stdio ['ignore', out, err, 'pipe', 'pipe'] plus 'pipe' for
// the report on fd 5).
package node

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/vatrun/vatrun/internal/testbin"
)

func TestNodeInterop(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node (Node.js) is not in $PATH: the Node interop test needs it (Debian: apt-get install nodejs)")
	}
	bin, worker := testbin.Vatrun(t), testbin.Worker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "interop.mjs", bin, worker)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node interop.mjs %s %s: %v\n%s", bin, worker, err, out)
	}
	t.Logf("%s", out)
}
