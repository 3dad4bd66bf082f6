// Command vatrun launches untrusted worker processes in a cgroup v2 + seccomp + rlimit +
// namespace sandbox and says why they died.
//
//	vatrun run --profile NAME|PATH [--report-fd N | --report-file F] -- WORKER [ARGS...]
//	vatrun profile list|show|validate|digest
//	vatrun check [--profile NAME|PATH] [--json]
//	vatrun kernel ...   (the reference kernel)
//	vatrun report [--json] FILE|-
//	vatrun version
//
// Every command and subcommand takes -h/--help (usage on stdout, exit 0). Exit codes of vatrun
// itself are the exit* constants below; docs/cli.md lists them, for every command.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vatrun/vatrun/launcher"
)

// Exit codes of vatrun itself (the worker's own code, or 128+signal, otherwise).
const (
	exitUsage         = 125 // bad flag, bad profile, report destination unusable: nothing started
	exitNotExecutable = 126 // the worker exists but cannot be executed
	exitNotFound      = 127 // the worker does not exist
	exitSetupFailed   = 122 // the sandbox could not be set up; the worker never ran
	exitReportLost    = 123 // the worker ran and was reaped, but its report could not be written
)

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "run a worker in the sandbox: vatrun run --profile P [--report-fd N|--report-file F] -- WORKER [ARGS...]", runMain},
		{"profile", "list, show, validate and digest sandbox profiles", profileMain},
		{"report", "print a JSON death report as one readable line and its warnings (--json: indented)", reportMain},
		{"check", "say what this host supports and whether a profile can run here", checkMain},
		{"kernel", "run the reference kernel (vats, transcripts, crash policy)", kernelMain},
		{"version", "the version, commit, libseccomp and built-in profile digests", versionMain},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: vatrun COMMAND [FLAGS] (vatrun COMMAND -h for details; vatrun --version)")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	case "-version", "--version", "-V":
		return versionMain(args[1:], stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "vatrun: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

// resolveWorker finds the worker executable; on failure it returns the exit code that says why
// (127 not found, 126 not executable).
func resolveWorker(path string) (string, int, error) {
	p, err := launcher.ResolvePath(path)
	switch {
	case err == nil:
		return p, 0, nil
	case errors.Is(err, launcher.ErrNotFound):
		return "", exitNotFound, err
	}
	return "", exitNotExecutable, err
}
