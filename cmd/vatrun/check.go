package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/cgroup"
	"github.com/vatrun/vatrun/hostfacts"
	"github.com/vatrun/vatrun/launcher"
	"github.com/vatrun/vatrun/launcher/plan"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// checkResult is what `vatrun check --json` prints.
type checkResult struct {
	Profile       string      `json:"profile"`
	ProfileDigest string      `json:"profileDigest"`
	Consensus     bool        `json:"consensus"`
	Kernel        string      `json:"kernel"`
	User          string      `json:"user"`
	Cgroup        cgroup.Host `json:"cgroup"`
	Seccomp       bool        `json:"seccomp"`
	SeccompNote   string      `json:"seccompNote,omitempty"`
	// SeccompWarnings are the profile filter's compilation warnings on this host (syscall names
	// this libseccomp does not know: their rules are ignored).
	SeccompWarnings []string `json:"seccompWarnings,omitempty"`
	// Memory says what holds the profile's memory limit on this host (the report's
	// limitsEnforced.memory): cgroup memory.max, or RLIMIT_DATA standing in for it, and then
	// whether the profile's filter lets the worker hold shared memory that RLIMIT_DATA does not count.
	Memory string `json:"memory,omitempty"`
	// LimitWarnings: limits that could fire before the engine's own meters (docs/limits.md).
	LimitWarnings []string    `json:"limitWarnings,omitempty"`
	SandboxProbe  probeResult `json:"sandboxProbe"`
	CanRun        bool        `json:"canRun"`
	Problems      []string    `json:"problems,omitempty"`
	// Host facts (hostfacts): what could still make two validators differ; compare two hosts
	// with `vatrun check --compare A.json B.json`.
	HostFactsDigest string                 `json:"hostFactsDigest"`
	HostFacts       hostfacts.Facts        `json:"hostFacts"`
	WorkerDigest    string                 `json:"workerDigest,omitempty"`
	WorkerFiles     []hostfacts.WorkerFile `json:"workerFiles,omitempty"`
}

type probeResult struct {
	OK         bool    `json:"ok"`
	Worker     string  `json:"worker"`
	Millis     float64 `json:"millis"`
	Error      string  `json:"error,omitempty"`
	Namespaces string  `json:"namespaces"`
	// WorkerUID and WorkerGID: the host ids the probe worker ran as (the report's workerUid and
	// workerGid: a root vatrun's workers run as an id that owns nothing, docs/worker-identity.md).
	WorkerUID *int `json:"workerUid,omitempty"`
	WorkerGID *int `json:"workerGid,omitempty"`
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// seccompAvailable asks the kernel whether seccomp filters exist (without installing one).
func seccompAvailable() (bool, string) {
	if _, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		return false, "prctl(PR_GET_SECCOMP): " + err.Error() + " (kernel built without CONFIG_SECCOMP)"
	}
	data, err := os.ReadFile("/proc/sys/kernel/seccomp/actions_avail")
	if err != nil {
		return false, "no /proc/sys/kernel/seccomp/actions_avail (kernel built without CONFIG_SECCOMP_FILTER?)"
	}
	if !strings.Contains(string(data), "kill_process") {
		return false, "seccomp actions available: " + strings.TrimSpace(string(data)) + " (kill_process missing: Linux >= 4.14 needed)"
	}
	return true, ""
}

// probeSandbox launches /bin/true under the profile's namespaces, rlimits and seccomp filter
// (cgroups aside: check only reads cgroups, it never creates one).
func probeSandbox(p *seccompprofiles.Profile) probeResult {
	var ns []string
	for _, n := range []struct {
		on   bool
		name string
	}{{p.Namespaces.Pid, "pid"}, {p.Namespaces.Net, "net"}, {p.Namespaces.IPC, "ipc"}, {p.Namespaces.UTS, "uts"}, {p.Namespaces.Mount, "mount"}} {
		if n.on {
			ns = append(ns, n.name)
		}
	}
	res := probeResult{Worker: "/bin/true", Namespaces: strings.Join(ns, " ")}
	probe := *p
	probe.Consensus = false // cgroups are judged separately, read-only
	start := time.Now()
	w, err := launcher.Launch(context.Background(), launcher.Spec{
		Profile: &probe,
		Path:    "/bin/true",
		Cgroup:  launcher.CgroupOptions{Disable: true},
	})
	if err != nil {
		res.Error = err.Error()
		return res
	}
	r := w.Wait()
	res.Millis = float64(time.Since(start).Microseconds()) / 1000
	res.WorkerUID, res.WorkerGID = r.WorkerUID, r.WorkerGID
	if r.ExitCode == nil || *r.ExitCode != 0 {
		res.Error = "/bin/true did not exit 0 in the sandbox: " + r.OneLine()
		return res
	}
	res.OK = true
	return res
}

func checkMain(args []string, stdout, stderr io.Writer) int {
	c := newCmdline("vatrun check", "usage: vatrun check [--profile NAME|PATH] [--worker PATH] [--json] | vatrun check --compare A.json B.json", stdout, stderr)
	fs := c.fs
	profileName := fs.String("profile", "consensus", "profile to judge this host against (built-in name or JSON file)")
	cgParent := cgroupParentFlag(fs, "cgroup v2 parent to check")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	workerPath := fs.String("worker", "", "also compute the worker digest of this executable (what a profile's pins.workerDigest names)")
	compare := fs.Bool("compare", false, "compare two `vatrun check --json` outputs: vatrun check --compare A.json B.json (exit 1 when a fact that can change a worker's outcome differs)")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if *compare {
		return compareMain(fs.Args(), *asJSON, stdout, stderr)
	}
	if fs.NArg() > 0 {
		return c.fail(exitUsage, "unexpected arguments %q (files are for --compare)", fs.Args())
	}
	p, err := seccompprofiles.Load(*profileName)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	res := checkResult{
		Profile:       p.Name,
		ProfileDigest: p.Digest(),
		Consensus:     p.Consensus,
		Kernel:        kernelRelease(),
		User:          fmt.Sprintf("uid %d", os.Geteuid()),
		Cgroup:        cgroup.Detect("", *cgParent),
	}
	res.HostFacts = hostfacts.Host()
	res.HostFactsDigest = hostfacts.HostDigest()
	workerResolved := ""
	if *workerPath != "" {
		path, code, err := resolveWorker(*workerPath)
		if err != nil {
			return c.fail(code, "--worker: %v", err)
		}
		res.WorkerDigest, res.WorkerFiles, err = hostfacts.WorkerDigest(path)
		if err != nil {
			return c.fail(exitNotExecutable, "--worker: %v", err)
		}
		workerResolved = path
	}
	if err := launcher.CheckPins(p, workerResolved); err != nil {
		res.Problems = append(res.Problems, err.Error())
	} else if p.Pins != nil && p.Pins.WorkerDigest != "" && workerResolved == "" {
		res.Problems = append(res.Problems, "profile pins workerDigest "+p.Pins.WorkerDigest+": give the worker with --worker PATH to check it")
	}
	res.Seccomp, res.SeccompNote = seccompAvailable()
	if pl, err := plan.Compile(p); err != nil {
		res.Problems = append(res.Problems, err.Error())
	} else {
		res.SeccompWarnings = pl.Warnings
		res.LimitWarnings = pl.LimitWarnings
		res.Memory = pl.Enforcement(res.Cgroup.Problem == "" && res.Cgroup.Mode == cgroup.ModeUnified)["memory"]
	}
	res.SandboxProbe = probeSandbox(p)
	if !res.SandboxProbe.OK {
		res.Problems = append(res.Problems, "sandbox probe failed: "+res.SandboxProbe.Error)
	}
	if !res.Seccomp && p.Seccomp != nil {
		res.Problems = append(res.Problems, "seccomp: "+res.SeccompNote)
	}
	if res.Cgroup.Problem != "" && p.Consensus {
		res.Problems = append(res.Problems, "cgroup v2 unusable (fix above; also in the cgroup.Fix field of --json)")
	}
	res.CanRun = len(res.Problems) == 0

	if *asJSON {
		out, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintln(stdout, string(out))
	} else {
		printCheck(stdout, res)
	}
	if !res.CanRun {
		return 1
	}
	return 0
}

func printCheck(w io.Writer, r checkResult) {
	mark := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "NO"
	}
	fmt.Fprintf(w, "vatrun check — profile %s (%s), consensus=%v\n\n", r.Profile, r.ProfileDigest, r.Consensus)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "kernel\t%s\t\n", r.Kernel)
	fmt.Fprintf(tw, "user\t%s\t\n", r.User)
	cg := r.Cgroup
	fmt.Fprintf(tw, "cgroup mode\t%s %s\t%s\n", cg.Mode, cg.Mountpoint, mark(cg.Mode == cgroup.ModeUnified))
	if cg.Mode == cgroup.ModeUnified {
		fmt.Fprintf(tw, "cgroup parent\t%s (vatrun is in %s)\t%s\n", cg.Parent, cg.Self, mark(cg.Writable))
		fmt.Fprintf(tw, "controllers\t%s\t%s\n", strings.Join(cg.Controllers, " "), mark(cg.Problem == ""))
	}
	fmt.Fprintf(tw, "seccomp filter\t%s\t%s\n", orDefault(r.SeccompNote, "available"), mark(r.Seccomp))
	probe := fmt.Sprintf("/bin/true in %s namespaces, rlimits, seccomp: %.1f ms", r.SandboxProbe.Namespaces, r.SandboxProbe.Millis)
	if !r.SandboxProbe.OK {
		probe = r.SandboxProbe.Error
	}
	fmt.Fprintf(tw, "sandbox probe\t%s\t%s\n", probe, mark(r.SandboxProbe.OK))
	if r.SandboxProbe.WorkerUID != nil && r.SandboxProbe.WorkerGID != nil {
		fmt.Fprintf(tw, "worker ids\t%s\t\n", workerIDs(*r.SandboxProbe.WorkerUID, *r.SandboxProbe.WorkerGID))
	}
	tw.Flush()
	for _, warn := range r.SeccompWarnings {
		fmt.Fprintf(w, "warning: seccomp filter: %s\n", warn)
	}
	if r.Memory != "" {
		fmt.Fprintf(w, "memory limit held by: %s\n", r.Memory)
	}
	for _, warn := range r.LimitWarnings {
		fmt.Fprintf(w, "warning: limits: %s\n", warn)
	}
	fmt.Fprintln(w)
	printFacts(w, r)
	if r.Cgroup.Problem != "" {
		if r.Consensus {
			fmt.Fprintf(w, "cgroup v2: %s\nfix: %s\n\n", r.Cgroup.Problem, r.Cgroup.Fix)
		} else {
			fmt.Fprintf(w, "cgroup v2 unusable here (%s): this non-consensus profile runs without cgroup limits, and its reports say the cgroup evidence is unavailable.\n\n", r.Cgroup.Problem)
		}
	}
	if r.CanRun {
		fmt.Fprintf(w, "verdict: profile %s can run here\n", r.Profile)
		return
	}
	fmt.Fprintf(w, "verdict: profile %s CANNOT run here:\n", r.Profile)
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}

// workerIDs says which host ids workers run as, and why (docs/worker-identity.md).
func workerIDs(uid, gid int) string {
	switch {
	case uid == 0 || gid == 0:
		return fmt.Sprintf("uid %d gid %d: ROOT, the worker owns the host's root-owned files", uid, gid)
	case uid == os.Getuid():
		return fmt.Sprintf("uid %d gid %d (vatrun's own: it runs unprivileged)", uid, gid)
	}
	return fmt.Sprintf("uid %d gid %d (owns no host file: vatrun runs as root)", uid, gid)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// printFacts prints the host facts (and the worker digest when asked for).
func printFacts(w io.Writer, r checkResult) {
	fmt.Fprintf(w, "host facts (digest of the outcome-relevant ones: %s)\n", r.HostFactsDigest)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  fact\tvalue\toutcome\twhy it matters")
	for _, f := range r.HostFacts {
		rel := "-"
		if f.OutcomeRelevant {
			rel = "relevant"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", f.Name, f.Value, rel, f.Why)
	}
	tw.Flush()
	if r.WorkerDigest != "" {
		fmt.Fprintf(w, "\nworker digest %s over:\n", r.WorkerDigest)
		for _, f := range r.WorkerFiles {
			fmt.Fprintf(w, "  %-28s %s  %s\n", f.Role, f.SHA256, f.Path)
		}
	}
	fmt.Fprintln(w)
}
