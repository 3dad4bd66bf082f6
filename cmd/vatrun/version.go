package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	libseccomp "github.com/seccomp/libseccomp-golang"

	"github.com/vatrun/vatrun/seccompprofiles"
)

// versionInfo is what `vatrun version` prints: the module version and commit the binary was built
// from (Go's build info: vcs.revision, vcs.time, vcs.modified), the Go toolchain, the libseccomp
// linked in, and the digest of each built-in profile (what validators compare).
type versionInfo struct {
	Module, Version, Commit, CommitTime string
	Modified                            bool
	Go, Libseccomp                      string
	Profiles                            [][2]string // name, digest
}

// Set by the Makefile (-ldflags -X) from git, for builds where Go's own VCS stamping is off
// (-buildvcs=false, -trimpath in a worktree): git describe and the commit hash.
var buildVersionTag, buildCommit string

func buildVersion() versionInfo {
	v := versionInfo{Module: "github.com/vatrun/vatrun", Version: "(unknown)", Commit: "(unknown)", Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v.Module, v.Version = bi.Main.Path, bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.time":
				v.CommitTime = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if (v.Version == "(devel)" || v.Version == "") && buildVersionTag != "" {
		v.Version = buildVersionTag
	}
	if v.Commit == "(unknown)" && buildCommit != "" {
		v.Commit = buildCommit
	}
	a, b, c := libseccomp.GetLibraryVersion()
	v.Libseccomp = fmt.Sprintf("%d.%d.%d", a, b, c)
	for _, n := range seccompprofiles.BuiltinNames() {
		p, _ := seccompprofiles.Builtin(n)
		v.Profiles = append(v.Profiles, [2]string{n, p.Digest()})
	}
	return v
}

const versionUsage = `usage: vatrun version (or vatrun --version)

Prints the module version, the commit it was built from (with its time, and "modified" when
the tree had uncommitted changes), the Go toolchain, the libseccomp version linked into vatrun,
and the digest of each built-in profile.`

func versionMain(args []string, stdout, stderr io.Writer) int {
	c := newCmdline("vatrun version", versionUsage, stdout, stderr)
	if code, ok := c.parse(args); !ok {
		return code
	}
	if c.fs.NArg() > 0 {
		return c.fail(exitUsage, "unexpected arguments %q", c.fs.Args())
	}
	v := buildVersion()
	fmt.Fprintf(stdout, "vatrun %s (%s)\n", v.Version, v.Module)
	commit := v.Commit
	if v.CommitTime != "" {
		commit += " " + v.CommitTime
	}
	if v.Modified {
		commit += " modified"
	}
	fmt.Fprintf(stdout, "commit     %s\n", commit)
	fmt.Fprintf(stdout, "go         %s\n", v.Go)
	fmt.Fprintf(stdout, "libseccomp %s\n", v.Libseccomp)
	fmt.Fprintln(stdout, "built-in profiles:")
	for _, p := range v.Profiles {
		fmt.Fprintf(stdout, "  %-10s %s\n", p[0], p[1])
	}
	return 0
}
