package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/vatrun/vatrun/launcher/plan"
	"github.com/vatrun/vatrun/seccompprofiles"
)

const profileUsage = `usage:
  vatrun profile list                 built-in profiles with their digests
  vatrun profile show NAME|FILE       the resolved profile (every default filled in)
  vatrun profile validate FILE...     strict validation; exit 1 on the first bad file
  vatrun profile digest NAME|FILE     the canonical sha256 digest to compare across validators
  vatrun profile learn [--out FILE] [--base PROFILE] -- WORKER [ARGS...]
                                      run WORKER once and write an allowlist of the syscalls it used`

func profileMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, profileUsage)
		return exitUsage
	}
	sub, rest := args[0], args[1:]
	one := func() (*seccompprofiles.Profile, int) {
		if len(rest) != 1 {
			fmt.Fprintf(stderr, "vatrun profile %s: want exactly one NAME or FILE\n%s\n", sub, profileUsage)
			return nil, exitUsage
		}
		p, err := seccompprofiles.Load(rest[0])
		if err != nil {
			fmt.Fprintf(stderr, "vatrun profile %s: %v\n", sub, err)
			return nil, 1
		}
		return p, 0
	}
	switch sub {
	case "learn":
		return learnMain(rest, stdout, stderr)
	case "list":
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tCONSENSUS\tDIGEST\tDESCRIPTION")
		for _, n := range seccompprofiles.BuiltinNames() {
			p, _ := seccompprofiles.Builtin(n)
			fmt.Fprintf(tw, "%s\t%v\t%s\t%s\n", n, p.Consensus, p.Digest(), p.Description)
		}
		tw.Flush()
		return 0
	case "show":
		p, code := one()
		if p == nil {
			return code
		}
		canon, err := p.Canonical()
		if err != nil {
			fmt.Fprintf(stderr, "vatrun profile show: %v\n", err)
			return 1
		}
		var v any
		if err := json.Unmarshal(canon, &v); err != nil {
			fmt.Fprintf(stderr, "vatrun profile show: %v\n", err)
			return 1
		}
		out, _ := json.MarshalIndent(map[string]any{"name": p.Name, "digest": p.Digest(), "profile": v}, "", "  ")
		fmt.Fprintln(stdout, string(out))
		return 0
	case "digest":
		p, code := one()
		if p == nil {
			return code
		}
		fmt.Fprintln(stdout, p.Digest())
		return 0
	case "validate":
		if len(rest) == 0 {
			fmt.Fprintf(stderr, "vatrun profile validate: want one or more FILEs\n")
			return exitUsage
		}
		for _, f := range rest {
			data, err := os.ReadFile(f)
			if err != nil {
				fmt.Fprintf(stderr, "vatrun profile validate: %v\n", err)
				return 1
			}
			p, err := seccompprofiles.Parse(data, f)
			if err != nil {
				fmt.Fprintf(stderr, "%v\n", err)
				return 1
			}
			// Compiling the plan catches what only libseccomp knows (conflicting rules, an
			// architecture it lacks, a program over the kernel's size limit, names it does not
			// know: warnings) and limits that could fire before the engine's own meters (refused
			// under consensus, warnings otherwise): the same check `vatrun run` makes.
			pl, err := plan.Compile(p)
			if err != nil {
				fmt.Fprintf(stderr, "%v\n", err)
				return 1
			}
			fmt.Fprintf(stdout, "ok %s %s\n", f, p.Digest())
			for _, w := range pl.Warnings {
				fmt.Fprintf(stdout, "  warning: %s\n", w)
			}
			for _, w := range pl.LimitWarnings {
				fmt.Fprintf(stdout, "  warning: limits: %s\n", w)
			}
		}
		return 0
	}
	fmt.Fprintf(stderr, "vatrun profile: unknown subcommand %q\n%s\n", sub, profileUsage)
	return exitUsage
}
