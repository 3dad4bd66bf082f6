package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/kernel"
	"github.com/vatrun/vatrun/kernel/launchstarter"
	"github.com/vatrun/vatrun/kernel/policy"
	"github.com/vatrun/vatrun/launcher"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// Exit codes of `vatrun kernel`.
const (
	kernelExitOK     = 0
	kernelExitError  = 1         // store or worker start failure
	kernelExitUsage  = exitUsage // as every vatrun command (docs/cli.md)
	kernelExitHalted = 3         // the crash policy halted the kernel; nothing of the crank was committed
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

const kernelUsage = `usage: vatrun kernel --db FILE [--mode consensus|solo] [flags] (--step STEP)... [--script FILE]

The reference kernel: vats with a transcript and state in a bbolt store, one worker per vat,
each crank committed atomically after the worker's reply, and the crash policy applied to every
worker death. It resumes from the last commit (replaying transcripts) at each start.

Steps, in order (--step repeated, or one per line in --script; # starts a comment):
  VAT:COMMAND      deliver COMMAND to vat VAT (e.g. v1:add:5, v1:abort, v2:exit:11)
  idle:DURATION    let time pass with every worker idle (deaths are noticed at once)
  signal:VAT:SIG   send SIG (TERM, KILL, HUP, ...) to VAT's worker from outside the policy

Exit codes: 0 done, 1 error, 125 usage, 3 halted by the crash policy (restart the kernel: it
resumes from the last commit).

Flags:`

func kernelMain(args []string, stdout, stderr io.Writer) (code int) {
	c := newCmdline("vatrun kernel", kernelUsage, stdout, stderr)
	c.usageCode = kernelExitUsage
	fs := c.fs
	db := fs.String("db", "", "the kernel's store (bbolt file; created if missing)")
	mode := fs.String("mode", "consensus", "crash policy mode: consensus or solo")
	onFault := fs.String("solo-policy", "restart", "solo mode, resource exhaustion / sandbox violation / unknown: restart (bounded retries) or halt")
	retries := fs.Int("retries", policy.DefaultRetries, "solo mode: retries per vat per kernel process before terminating the vat (0: none)")
	maxExternal := fs.Int("max-external-restarts", policy.DefaultMaxExternalRestarts, "solo mode: restarts after external deaths per vat per kernel process before halting (0: none)")
	base := fs.Duration("backoff-base", policy.DefaultBackoff.Base, "solo mode: first restart delay (then doubling, randomized)")
	capD := fs.Duration("backoff-cap", policy.DefaultBackoff.Cap, "solo mode: longest restart delay")
	profileName := fs.String("profile", "consensus", "sandbox profile of the workers")
	pin := fs.String("pin-digest", "", "consensus mode: the profile digest every validator runs (required)")
	allowNonConsensus := fs.Bool("allow-nonconsensus-profile", false, "consensus mode with a profile that is not a consensus profile (demo on a host without cgroup v2)")
	workerPath := fs.String("worker", "", "worker executable (default: vatrun-testworker next to vatrun)")
	cgParent := cgroupParentFlag(fs, "cgroup v2 parent for the workers' leaves")
	noCgroup := fs.Bool("no-cgroup", false, "do not use cgroups (refused by consensus profiles)")
	var steps multiFlag
	fs.Var(&steps, "step", "a step (repeatable; see above)")
	script := fs.String("script", "", "a file of steps, one per line")
	c.logFlags("debug, info, warn, error", false)
	if code, ok := c.parse(args); !ok {
		return code
	}
	fail := c.fail
	log, err := c.logger()
	if err != nil {
		return fail(kernelExitUsage, "%v", err)
	}
	if *db == "" {
		return fail(kernelExitUsage, "--db is required")
	}
	if fs.NArg() > 0 {
		return fail(kernelExitUsage, "unexpected arguments %q (steps go in --step or --script)", fs.Args())
	}
	if *script != "" {
		lines, err := readScript(*script)
		if err != nil {
			return fail(kernelExitUsage, "%v", err)
		}
		steps = append(steps, lines...)
	}
	prof, err := seccompprofiles.Load(*profileName)
	if err != nil {
		return fail(kernelExitUsage, "%v", err)
	}
	pol, err := kernelPolicy(*mode, *onFault, *retries, *maxExternal, *base, *capD)
	if err != nil {
		return fail(kernelExitUsage, "%v", err)
	}
	if pol.Mode == policy.Consensus && !prof.Consensus && !*allowNonConsensus {
		return fail(kernelExitUsage, "consensus mode with profile %q, which is not a consensus profile (no mandatory cgroup v2, worker output not discarded); use --profile consensus, or --allow-nonconsensus-profile for a demo", prof.Name)
	}
	wp, err := kernelWorker(*workerPath)
	if err != nil {
		return fail(kernelExitUsage, "%v", err)
	}
	var output *os.File
	if pol.Mode == policy.Solo {
		output = os.Stderr // solo mode keeps the worker's console for debugging
	}
	store, err := kernel.OpenStore(*db)
	if err != nil {
		return fail(kernelExitError, "%v", err)
	}
	defer func() {
		if err := store.Close(); err != nil {
			fmt.Fprintf(stderr, "vatrun kernel: %v\n", err)
			if code == kernelExitOK {
				code = kernelExitError
			}
		}
	}()
	k, err := kernel.New(kernel.Config{
		Policy:        pol,
		ProfileDigest: prof.Digest(),
		PinDigest:     *pin,
		Starter: &launchstarter.Starter{Profile: prof, Path: wp, Output: output, Logger: log,
			Cgroup: launcher.CgroupOptions{Parent: *cgParent, Disable: *noCgroup}},
		Out:    stdout,
		Logger: log,
	}, store)
	if err != nil {
		return fail(kernelExitUsage, "%v", err)
	}
	defer k.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	err = k.Start(ctx)
	for _, s := range steps {
		if err != nil {
			break
		}
		err = runStep(ctx, k, s, stdout)
	}
	var halt *kernel.HaltError
	if errors.As(err, &halt) {
		fmt.Fprintf(stdout, "kernel HALTED (exit %d): %s; the store holds the last commit, restart to resume\n", kernelExitHalted, halt.Reason)
		return kernelExitHalted
	}
	if err != nil {
		return fail(kernelExitError, "%v", err)
	}
	return kernelExitOK
}

func readScript(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--script: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line != "" {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}

func runStep(ctx context.Context, k *kernel.Kernel, step string, stdout io.Writer) error {
	switch {
	case strings.HasPrefix(step, "idle:"):
		d, err := time.ParseDuration(strings.TrimPrefix(step, "idle:"))
		if err != nil {
			return fmt.Errorf("step %q: %w", step, err)
		}
		fmt.Fprintf(stdout, "idle %v\n", d)
		return k.Idle(ctx, d)
	case strings.HasPrefix(step, "signal:"):
		f := strings.SplitN(strings.TrimPrefix(step, "signal:"), ":", 2)
		if len(f) != 2 {
			return fmt.Errorf("step %q: want signal:VAT:SIG", step)
		}
		sig := unix.SignalNum("SIG" + strings.TrimPrefix(strings.ToUpper(f[1]), "SIG"))
		if sig == 0 {
			return fmt.Errorf("step %q: unknown signal %q", step, f[1])
		}
		fmt.Fprintf(stdout, "sending %s to vat %s's worker from outside\n", unix.SignalName(sig), f[0])
		return k.Signal(f[0], sig)
	}
	vat, cmd, ok := strings.Cut(step, ":")
	if !ok || vat == "" || cmd == "" {
		return fmt.Errorf("step %q: want VAT:COMMAND, idle:DURATION or signal:VAT:SIG", step)
	}
	_, err := k.Deliver(ctx, vat, cmd)
	if errors.Is(err, kernel.ErrTerminated) {
		fmt.Fprintln(stdout, err)
		return nil
	}
	return err
}

// kernelPolicy is the crash policy the flags ask for, validated.
func kernelPolicy(mode, onFault string, retries, maxExternal int, base, capD time.Duration) (policy.Config, error) {
	pol := policy.Config{
		Mode:                policy.Mode(mode),
		Retries:             retries,
		MaxExternalRestarts: maxExternal,
		Backoff:             policy.Backoff{Base: base, Factor: policy.DefaultBackoff.Factor, Cap: capD, Jitter: policy.DefaultBackoff.Jitter},
	}
	switch onFault {
	case "restart":
	case "halt":
		pol.HaltOnFault = true
	default:
		return pol, fmt.Errorf("--solo-policy %q: want restart or halt", onFault)
	}
	return pol, pol.Validate()
}

// kernelWorker is the worker executable: --worker, else vatrun-testworker next to vatrun.
func kernelWorker(path string) (string, error) {
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("finding the default worker next to vatrun: %v (give --worker PATH)", err)
		}
		path = filepath.Join(filepath.Dir(exe), "vatrun-testworker")
	}
	if _, err := launcher.ResolvePath(path); err != nil {
		return "", fmt.Errorf("%v (give --worker PATH)", err)
	}
	return path, nil
}
