package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/vatrun/vatrun/launcher/plan"
	"github.com/vatrun/vatrun/seccompprofiles"
)

const profileUsage = `usage:
  vatrun profile list                 built-in profiles with their digests
  vatrun profile show [--raw] NAME|FILE
                                      the resolved profile (every default filled in) with its
                                      name and digest; --raw: a profile file that run accepts
                                      (vatrun profile show --raw xsnap > my.json)
  vatrun profile validate NAME|FILE...
                                      what run checks of a profile (parse, then compile it as
                                      run does); exit 125 on the first bad one
  vatrun profile digest NAME|FILE     the canonical sha256 digest to compare across validators
  vatrun profile learn [--out FILE] [--base PROFILE] -- WORKER [ARGS...]
                                      run WORKER once and write an allowlist of the syscalls it used

Exit status: 0 ok, 125 bad usage or a profile that run would refuse (docs/cli.md).`

// isHelp says whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

func profileMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, profileUsage)
		return exitUsage
	}
	sub, rest := args[0], args[1:]
	if isHelp(sub) || (sub != "learn" && slices.ContainsFunc(rest, isHelp)) {
		fmt.Fprintln(stdout, profileUsage)
		return 0
	}
	raw := false
	if sub == "show" {
		rest = slices.DeleteFunc(slices.Clone(rest), func(a string) bool {
			if a == "--raw" || a == "-raw" {
				raw = true
				return true
			}
			return false
		})
	}
	one := func() (*seccompprofiles.Profile, int) {
		if len(rest) != 1 {
			fmt.Fprintf(stderr, "vatrun profile %s: want exactly one NAME or FILE\n%s\n", sub, profileUsage)
			return nil, exitUsage
		}
		p, err := seccompprofiles.Load(rest[0])
		if err != nil {
			fmt.Fprintf(stderr, "vatrun profile %s: %v\n", sub, err)
			return nil, exitUsage
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
		out, err := showProfile(p, raw)
		if err != nil {
			fmt.Fprintf(stderr, "vatrun profile show: %v\n", err)
			return exitUsage
		}
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
			// The same two steps as run: Load (parse and validate), then plan.Compile (what
			// only compiling knows: no seccomp section, mounts without a mount namespace,
			// conflicting rules, an architecture libseccomp lacks, a program over the kernel's
			// size limit; names it does not know are warnings).
			p, err := seccompprofiles.Load(f)
			if err != nil {
				fmt.Fprintf(stderr, "vatrun profile validate: %v\n", err)
				return exitUsage
			}
			pl, err := plan.Compile(p)
			if err != nil {
				fmt.Fprintf(stderr, "vatrun profile validate: %v\n", err)
				return exitUsage
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

// showProfile is `profile show`: by default {name, digest, profile} (the resolved profile under
// "profile"); raw, the resolved profile itself with its name and description, indented: a file
// that Load accepts and whose digest is p's.
func showProfile(p *seccompprofiles.Profile, raw bool) ([]byte, error) {
	canon, err := p.Canonical()
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(canon))
	dec.UseNumber() // 64-bit argument values stay exact
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if !raw {
		return json.MarshalIndent(map[string]any{"name": p.Name, "digest": p.Digest(), "profile": v}, "", "  ")
	}
	v["name"] = p.Name
	if p.Description != "" {
		v["description"] = p.Description
	}
	return json.MarshalIndent(v, "", "  ")
}
