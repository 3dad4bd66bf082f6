package main

// vatrun profile learn: flags and output. The recording (a notifying seccomp filter loaded by a
// helper right before the worker's execve) and the profile building live in seccompprofiles/learn.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/sandbox"
	"github.com/vatrun/vatrun/seccompprofiles"
	"github.com/vatrun/vatrun/seccompprofiles/learn"
)

const learnUsage = `usage: vatrun profile learn [--out FILE] [--base PROFILE] [--name NAME] -- WORKER [ARGS...]

Runs WORKER once, outside the sandbox, under a seccomp filter that lets every syscall through
and reports it to vatrun, then writes a minimal allowlist profile: the base profile's limits,
namespaces and exit codes, and a seccomp section that allows exactly the syscalls the worker
made (any other fails with EPERM). Drive the worker as your kernel would: fds 0, 3 and 4 of
this command are the worker's. The worker's stdout goes to stderr when the profile is written
to stdout. Exit status: 0 when the worker exited 0 and the profile was written; 1 when it was
written but the worker did not exit 0 (it covers only what ran); 125 on usage errors.`

// learnMain is `vatrun profile learn`.
func learnMain(args []string, stdout, stderr io.Writer) int {
	c := newCmdline("vatrun profile learn", learnUsage, stdout, stderr)
	fs := c.fs
	out := fs.String("out", "", "write the learned profile to FILE (default: stdout)")
	baseName := fs.String("base", "xsnap", "profile (built-in name or FILE) whose limits, namespaces and exit codes the learned profile keeps")
	name := fs.String("name", "", "name of the learned profile (default: learned-WORKER)")
	if code, ok := c.parse(args); !ok {
		return code
	}
	fail := c.fail
	worker := fs.Args()
	if len(worker) == 0 {
		return fail(exitUsage, "no worker given: vatrun profile learn [--out FILE] -- WORKER [ARGS...]")
	}
	base, err := seccompprofiles.Load(*baseName)
	if err != nil {
		return fail(exitUsage, "--base: %v", err)
	}
	path, code, err := resolveWorker(worker[0])
	if err != nil {
		return fail(code, "%v", err)
	}
	if *name == "" {
		*name = "learned-" + filepath.Base(path)
	}
	// Check the destination before the (possibly long) run, not after.
	var outFile *os.File
	if *out != "" {
		outFile, err = os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return fail(exitUsage, "--out: %v", err)
		}
		defer outFile.Close()
	}

	workerStdout := os.Stdout
	if outFile == nil {
		workerStdout = os.Stderr
	}
	usage, ws, err := learn.Run(learn.Worker{
		Path: path, Argv: worker,
		Stdin: os.Stdin, Stdout: workerStdout, Stderr: os.Stderr,
		Fd3: inheritedFile(3), Fd4: inheritedFile(4),
	})
	if err != nil {
		return fail(1, "%v", err)
	}

	desc := fmt.Sprintf("learned by vatrun profile learn from %s on %s (base %s %s); review before use",
		strings.Join(worker, " "), time.Now().UTC().Format("2006-01-02"), base.Name, base.Digest())
	prof, data, notes, err := learn.Learn(base, usage, learn.LearnOptions{Name: *name, Description: desc})
	for _, n := range notes {
		fmt.Fprintf(stderr, "vatrun profile learn: note: %s\n", n)
	}
	if err != nil {
		return fail(1, "%v", err)
	}
	dest := "stdout"
	if outFile != nil {
		dest = *out
		if _, err := outFile.Write(data); err != nil {
			return fail(1, "write %s: %v", *out, err)
		}
		if err := outFile.Close(); err != nil {
			return fail(1, "write %s: %v", *out, err)
		}
	} else if _, err := stdout.Write(data); err != nil {
		return fail(1, "write the profile: %v", err)
	}
	nsys := 0
	if prof.Seccomp != nil {
		for _, r := range prof.Seccomp.Syscalls {
			nsys += len(r.Names)
		}
	}
	fmt.Fprintf(stderr, "vatrun profile learn: worker %s; %d syscalls; profile %q written to %s, digest %s\n",
		sandbox.DescribeStatus(unix.WaitStatus(ws)), nsys, prof.Name, dest, prof.Digest())
	if !ws.Exited() || ws.ExitStatus() != 0 {
		fmt.Fprintln(stderr, "vatrun profile learn: the worker did not exit 0: the profile covers only the syscalls of what ran")
		return 1
	}
	return 0
}
