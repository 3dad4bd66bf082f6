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
	"github.com/vatrun/vatrun/sandbox"
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
	// Where is where vatrun runs (a container, its runtime, its seccomp filter, capabilities,
	// masked /proc, the cgroup namespace); Refusals what will refuse the sandbox, each with the
	// fix for this runtime; Launch what a `vatrun run` with the same flags does.
	Where    hostfacts.Where     `json:"where"`
	Refusals []hostfacts.Refusal `json:"refusals,omitempty"`
	Launch   launchPlan          `json:"launch"`
	// LandlockABI is the kernel's Landlock ABI (0: none), what the no-namespace mode needs.
	LandlockABI int      `json:"landlockABI"`
	CanRun      bool     `json:"canRun"`
	Problems    []string `json:"problems,omitempty"`
	// Host facts (hostfacts): what could still make two validators differ; compare two hosts
	// with `vatrun check --compare A.json B.json`.
	HostFactsDigest string                 `json:"hostFactsDigest"`
	HostFacts       hostfacts.Facts        `json:"hostFacts"`
	WorkerDigest    string                 `json:"workerDigest,omitempty"`
	WorkerFiles     []hostfacts.WorkerFile `json:"workerFiles,omitempty"`
}

// launchPlan is what `vatrun run` with the same profile and flags will do (launcher.Check: the
// same decisions a launch makes).
type launchPlan struct {
	Cgroup     string   `json:"cgroup"` // "leaf under <parent>", or "none"
	Warnings   []string `json:"warnings,omitempty"`
	UserNS     bool     `json:"userNS"`
	Namespaces string   `json:"namespaces"`
	Refused    string   `json:"refused,omitempty"` // the error `run` exits 122 (or 125) with
	// Isolation is what will confine the worker (the report's isolation); NoNamespaceMode: the
	// profile accepts Landlock instead of its namespaces, and gets it here.
	Isolation       []string `json:"isolation,omitempty"`
	NoNamespaceMode bool     `json:"noNamespaceMode,omitempty"`
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
func probeSandbox(p *seccompprofiles.Profile, namespaces string) probeResult {
	res := probeResult{Worker: "/bin/true", Namespaces: namespaces}
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
	noCgroup := fs.Bool("no-cgroup", false, "check a run with --no-cgroup (refused by consensus profiles)")
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
	// The decisions a launch makes, made once here: what `run` with these flags will do (a plan
	// that does not compile is among them: pf.Err; pf.Plan is the compiled one).
	pf := launcher.Check(launcher.Spec{Profile: p, Path: workerResolved, Cgroup: launcher.CgroupOptions{Parent: *cgParent, Disable: *noCgroup}}, os.Getenv)
	if pl := pf.Plan; pl != nil {
		res.SeccompWarnings = pl.Warnings
		res.LimitWarnings = pl.LimitWarnings
		res.Memory = pl.Enforcement(pf.UseCgroup)["memory"]
	}
	res.Where, res.Refusals = pf.Where, pf.Refusals
	res.LandlockABI = sandbox.LandlockABI()
	res.Cgroup = pf.Cgroup
	if *noCgroup {
		res.Cgroup = cgroup.Host{Mode: "disabled (--no-cgroup)"}
	}
	res.Launch = launchPlan{Warnings: pf.CgroupWarnings, UserNS: pf.UserNS, Namespaces: pf.Namespaces, Cgroup: "none", Isolation: pf.Isolation, NoNamespaceMode: pf.NoNamespaceMode}
	if pf.UseCgroup {
		res.Launch.Cgroup = "a leaf under " + pf.Cgroup.Parent
	}
	if pf.Err != nil {
		res.Launch.Refused = pf.Err.Error()
		if len(pf.Refusals) == 0 {
			res.Problems = append(res.Problems, "vatrun run refuses: "+pf.Err.Error())
		}
		for _, r := range pf.Refusals {
			res.Problems = append(res.Problems, r.Problem+" (fix below)")
		}
		res.SandboxProbe = probeResult{Worker: "/bin/true", Namespaces: pf.Namespaces, Error: "not run: vatrun run would refuse (above)"}
	} else {
		res.SandboxProbe = probeSandbox(p, pf.Namespaces)
		if !res.SandboxProbe.OK {
			res.Problems = append(res.Problems, "sandbox probe failed: "+res.SandboxProbe.Error)
			if r, ok := hostfacts.JudgeAppArmor(pf.Where); ok && pf.UserNS {
				res.Refusals = append(res.Refusals, r)
			}
		}
	}
	if !res.Seccomp && p.Seccomp != nil {
		res.Problems = append(res.Problems, "seccomp: "+res.SeccompNote)
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
	fmt.Fprintf(w, "vatrun check — profile %s, consensus=%v\n  %s\n\n", r.Profile, r.Consensus, r.ProfileDigest)
	// Every cell is short (cell caps it); the long texts (problems, fixes, probe errors) are
	// printed below the table, wrapped.
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(name, value, verdict string) {
		if verdict == "" { // the value ends the line: no padding after it
			fmt.Fprintf(tw, "%s\t%s\n", name, cell(value))
			return
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, cell(value), verdict)
	}
	row("kernel", r.Kernel, "")
	row("user", r.User, "")
	wh := r.Where
	where := "not a container (no evidence)"
	if wh.InContainer {
		where = "container, runtime " + wh.Runtime
	}
	row("runs in", where, "")
	switch wh.Seccomp {
	case 2:
		row("inherited seccomp", fmt.Sprintf("a filter applies to vatrun (%d filter(s))", wh.SeccompFilters), "")
	case 0:
		row("inherited seccomp", "none", "")
	default:
		row("inherited seccomp", "unknown", "")
	}
	caps := "none"
	if len(wh.CapEff) > 0 {
		caps = fmt.Sprintf("%d effective", len(wh.CapEff))
		if hostfacts.HasCap(wh.CapEff, "SYS_ADMIN") {
			caps += ", CAP_SYS_ADMIN"
		} else {
			caps += ", no CAP_SYS_ADMIN"
		}
	}
	row("capabilities", caps, "")
	if len(wh.MaskedProc)+len(wh.ReadOnlyProc) > 0 {
		row("/proc", fmt.Sprintf("%d masked, %d read-only paths", len(wh.MaskedProc), len(wh.ReadOnlyProc)), "")
	}
	cg := r.Cgroup
	row("cgroup mode", cg.Mode+" "+cg.Mountpoint, mark(cg.Mode == cgroup.ModeUnified || strings.HasPrefix(cg.Mode, "disabled")))
	if cg.Mode == cgroup.ModeUnified {
		row("cgroup parent", fmt.Sprintf("%s (vatrun is in %s)", cg.Parent, cg.Self), mark(cg.Writable))
		row("controllers", strings.Join(cg.Controllers, " "), mark(cg.Problem == ""))
	}
	if wh.Cgroup.Mounted && wh.InContainer {
		ns := "host cgroup namespace"
		if wh.Cgroup.PrivateNS {
			ns = "private cgroup namespace"
		}
		ro := "writable"
		if wh.Cgroup.ReadOnly {
			ro = "read-only"
		}
		row("cgroup view", fmt.Sprintf("%s, %s, subtree_control %q", ns, ro, strings.Join(wh.Cgroup.SubtreeControl, " ")), "")
	}
	row("seccomp filter", orDefault(r.SeccompNote, "available"), mark(r.Seccomp))
	ll := fmt.Sprintf("ABI %d", r.LandlockABI)
	if r.LandlockABI == 0 {
		ll = "none (the no-namespace mode needs it)"
	}
	row("landlock", ll, "")
	userns := "not needed (CAP_SYS_ADMIN or no namespaces)"
	if r.Launch.UserNS {
		userns = "needed: created"
		for _, ref := range r.Refusals {
			if ref.Cause != hostfacts.CauseMaskedProc && ref.Cause != hostfacts.CauseAppArmor {
				userns = "needed: REFUSED (" + ref.Cause + ")"
			}
		}
	}
	if r.Launch.NoNamespaceMode {
		userns = "not used: the no-namespace mode"
	}
	row("user namespace", userns, mark(!strings.Contains(userns, "REFUSED")))
	plan := fmt.Sprintf("namespaces %s; cgroup %s", r.Launch.Namespaces, r.Launch.Cgroup)
	if r.Launch.Refused != "" {
		plan = "refuse (exit 122 or 125): below"
	}
	row("vatrun run would", plan, mark(r.Launch.Refused == ""))
	if r.Launch.NoNamespaceMode {
		row("isolation", "the no-namespace mode: Landlock (below)", "ok")
	}
	probe := fmt.Sprintf("/bin/true ran in the sandbox: %.1f ms", r.SandboxProbe.Millis)
	if !r.SandboxProbe.OK {
		probe = "failed (below)"
		if r.Launch.Refused != "" {
			probe = "not run: run would refuse"
		}
	}
	row("sandbox probe", probe, mark(r.SandboxProbe.OK))
	if r.SandboxProbe.WorkerUID != nil && r.SandboxProbe.WorkerGID != nil {
		row("worker ids", workerIDs(*r.SandboxProbe.WorkerUID, *r.SandboxProbe.WorkerGID), "")
	}
	tw.Flush()
	for _, warn := range r.SeccompWarnings {
		fmt.Fprint(w, wrapText("warning: seccomp filter: "+warn, "  ", 100), "\n")
	}
	if r.Memory != "" {
		fmt.Fprint(w, wrapText("memory limit held by: "+r.Memory, "  ", 100), "\n")
	}
	for _, warn := range r.LimitWarnings {
		fmt.Fprint(w, wrapText("warning: limits: "+warn, "  ", 100), "\n")
	}
	fmt.Fprintln(w)
	printFacts(w, r)
	if r.Cgroup.Problem != "" && r.Launch.Refused == "" {
		fmt.Fprint(w, wrapText("cgroup v2 unusable here ("+r.Cgroup.Problem+"): this non-consensus profile runs without cgroup limits, and its reports say the cgroup evidence is unavailable.", "", 100), "\n\n")
	}
	if r.Launch.NoNamespaceMode {
		fmt.Fprint(w, wrapText("isolation (the no-namespace mode): "+strings.Join(r.Launch.Isolation, "; "), "  ", 100), "\n\n")
		if len(r.Refusals) > 0 {
			fmt.Fprint(w, wrapText(fmt.Sprintf("the namespaces are refused here, and profile %s accepts the no-namespace mode instead:", r.Profile), "  ", 100), "\n")
		}
	}
	for _, ref := range r.Refusals {
		fmt.Fprint(w, wrapText("refused: "+ref.Problem, "  ", 100), "\n")
		for _, f := range ref.FixFor(r.Where.Runtime) {
			fmt.Fprint(w, wrapText("fix ("+f.Runtime+"): "+f.How, "    ", 100), "\n")
		}
		fmt.Fprintln(w)
	}
	if r.CanRun {
		fmt.Fprintf(w, "verdict: profile %s can run here\n", r.Profile)
		return
	}
	fmt.Fprintf(w, "verdict: profile %s CANNOT run here:\n", r.Profile)
	for _, p := range r.Problems {
		fmt.Fprint(w, wrapText("  - "+p, "    ", 100), "\n")
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

// cellMax is the widest a table cell may be; longer values are cut (their full text is below
// the table or in --json).
const cellMax = 64

func cell(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if r := []rune(s); len(r) > cellMax {
		return string(r[:cellMax-1]) + "…"
	}
	return s
}

// wrapText breaks s (which may hold newlines) into lines of at most width columns, the
// continuation lines prefixed by indent; a word longer than the width stays whole.
func wrapText(s, indent string, width int) string {
	var out []string
	for i, para := range strings.Split(s, "\n") {
		line := ""
		if i > 0 {
			line = indent
		}
		for _, word := range strings.Fields(para) {
			switch {
			case strings.TrimSpace(line) == "":
				line += word
			case len([]rune(line))+1+len([]rune(word)) > width:
				out = append(out, line)
				line = indent + word
			default:
				line += " " + word
			}
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// printFacts prints the host facts (and the worker digest when asked for): one row per fact,
// and why it matters wrapped on the lines below it, so that no line is wider than ~100 columns.
func printFacts(w io.Writer, r checkResult) {
	fmt.Fprintf(w, "host facts, each with why it matters (digest of the outcome-relevant ones, for --compare):\n  %s\n", r.HostFactsDigest)
	nameW, valueW := len("fact"), len("value")
	for _, f := range r.HostFacts {
		nameW, valueW = max(nameW, len(f.Name)), max(valueW, len([]rune(cell(f.Value))))
	}
	fmt.Fprintf(w, "  %-*s  %-*s  %s\n", nameW, "fact", valueW, "value", "outcome")
	for _, f := range r.HostFacts {
		rel := "-"
		if f.OutcomeRelevant {
			rel = "relevant"
		}
		v := cell(f.Value)
		fmt.Fprintf(w, "  %-*s  %s%s  %s\n", nameW, f.Name, v, strings.Repeat(" ", valueW-len([]rune(v))), rel)
		fmt.Fprintf(w, "      %s\n", wrapText(f.Why, "      ", 94))
	}
	if r.WorkerDigest != "" {
		fmt.Fprintf(w, "\nworker digest %s over:\n", r.WorkerDigest)
		for _, f := range r.WorkerFiles {
			fmt.Fprintf(w, "  %-28s %s  %s\n", f.Role, f.SHA256, f.Path)
		}
	}
	fmt.Fprintln(w)
}
