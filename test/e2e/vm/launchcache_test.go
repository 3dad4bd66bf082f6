package vm

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vatrun/vatrun/internal/proctree"
	"github.com/vatrun/vatrun/report"
)

// The C-first launch with a real cgroup (sandbox/prelaunch.c): the second identical `vatrun run`
// starts its init stage before the Go runtime; Go creates the worker's leaf, moves the waiting
// stage into it, and only then lets it fork the worker. So the worker must be in its leaf from
// birth, and its OOM over the leaf's limit must read oom-limit, exactly as without the cache.

var lcLine = regexp.MustCompile(`msg="launch cache" state=(\S+) why=(?:"(?:[^"\\]|\\.)*"|\S*) used=(\S+) mismatch=("(?:[^"\\]|\\.)*"|\S*) saved=(\S+)`)

func TestLaunchCacheCgroup(t *testing.T)       { launchCacheCgroup(t) }
func TestUnprivLaunchCacheCgroup(t *testing.T) { launchCacheCgroup(t) }

func launchCacheCgroup(t *testing.T) {
	vmTest(t)
	profile := matrixProfile(t, "lc", map[string]any{"memory": "32M"})
	cache := t.TempDir()
	env := []string{"VATRUN_CACHE_DIR=" + cache}
	// An entry is written only for files that changed over 2 s ago.
	for _, f := range []string{profile, "/bin/vatrun-testworker"} {
		var st syscall.Stat_t
		if err := syscall.Stat(f, &st); err != nil {
			t.Fatal(err)
		}
		if wait := 2100*time.Millisecond - time.Since(time.Unix(st.Ctim.Sec, st.Ctim.Nsec)); wait > 0 {
			time.Sleep(wait)
		}
	}
	type result struct {
		state, used, mismatch, saved string
		leaf                         string
		rep                          *report.Report
		code                         int
	}
	run := func() result {
		start := time.Now()
		v := launchVatrun(t, profile, env, "--log-level", "debug")
		if got := v.reply(); got != "ready" {
			t.Fatalf("first reply %q, want ready (stderr: %s)", got, v.stderr())
		}
		var r result
		if inits := proctree.Children(v.cmd.Process.Pid); len(inits) == 1 {
			if ws := proctree.Children(inits[0]); len(ws) == 1 {
				b, _ := os.ReadFile("/proc/" + strconv.Itoa(ws[0]) + "/cgroup")
				r.leaf = strings.TrimSpace(strings.TrimPrefix(string(b), "0::"))
			}
		}
		v.send("alloc:134217728")
		// A worker that survives its allocation (outside its leaf: no limit) ends at EOF, so
		// the case fails instead of hanging.
		v.cmdW.Close()
		out := v.wait()
		m := lcLine.FindStringSubmatch(out.stderr)
		if m == nil {
			t.Fatalf("no launch cache line in vatrun's log: %s", out.stderr)
		}
		r.state, r.used, r.mismatch, r.saved = m[1], m[2], strings.Trim(m[3], `"`), m[4]
		r.rep, r.code = out.report, out.code
		row(t, "launch cache "+r.state, "worker in its leaf, oom-limit", r.leaf+" "+causeOf(r.rep), time.Since(start))
		return r
	}
	first := run()
	second := run()
	if first.state != "miss" || first.saved != "true" {
		t.Fatalf("first run: want a miss that saves its entry, got state %s saved %s", first.state, first.saved)
	}
	if second.state != "hit" || second.used != "true" {
		t.Fatalf("second run: want the C-first launch used, got state %s used %s mismatch %q", second.state, second.used, second.mismatch)
	}
	for i, r := range []result{first, second} {
		if !strings.Contains(r.leaf, "/vatrun-") || strings.HasSuffix(r.leaf, "vatrun-supervisor") {
			t.Errorf("run %d: the worker was in %q, not in a leaf of its own", i+1, r.leaf)
		}
		if r.rep == nil || r.rep.Cause != report.CauseOOMLimit || r.rep.Class != report.ClassResourceExhaustion || r.code != 128+int(syscall.SIGKILL) {
			t.Errorf("run %d: want oom-limit/resource-exhaustion and exit 137, got %s, exit %d", i+1, causeOf(r.rep), r.code)
		}
	}
	if first.rep != nil && second.rep != nil && (first.rep.OOMKills == nil) != (second.rep.OOMKills == nil) {
		t.Errorf("OOM evidence differs: ordinary %v, cached %v", first.rep.OOMKills, second.rep.OOMKills)
	}
}

func causeOf(r *report.Report) string {
	if r == nil {
		return "no report"
	}
	return string(r.Cause) + "/" + string(r.Class)
}
