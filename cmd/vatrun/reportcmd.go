package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	"github.com/vatrun/vatrun/report"
)

const reportUsage = `usage: vatrun report [--json] FILE|-

Reads one JSON death report (a --report-file, or - for stdin), decodes it strictly and prints
it as one readable line (cause, class, exit code or signal, resources, who killed the worker,
the detail), then one "  warning: ..." line per warning. --json prints the decoded report
itself, indented, instead.

An empty file is not a report: vatrun run writes none when it exits 125, 126 or 127 (nothing
started: bad usage, a bad profile, an unusable report destination, a worker that cannot be
executed or does not exist; vatrun said why on its stderr), or when it was killed before the
worker died. Exit status: 0 printed, 125 not a report (empty, unreadable or invalid).`

// reportMain prints a death report file (or stdin with "-") in its one-line form and its
// warnings, after strict decoding.
func reportMain(args []string, stdout, stderr io.Writer) int {
	c := newCmdline("vatrun report", reportUsage, stdout, stderr)
	asJSON := c.fs.Bool("json", false, "print the decoded report as indented JSON instead of one line")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if c.fs.NArg() != 1 {
		return c.fail(exitUsage, "want one FILE (or - for stdin)\n%s", reportUsage)
	}
	name := c.fs.Arg(0)
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return c.fail(exitUsage, "%s is empty: no report was written. vatrun run writes none when it exits 125, 126 or 127 (nothing was started: bad usage or profile, unusable report destination, worker not executable or not found; its stderr says why), or when vatrun was killed before the worker died", name)
	}
	r, err := report.Decode(data)
	if err != nil {
		return c.fail(exitUsage, "%s: %v", name, err)
	}
	if *asJSON {
		out, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return c.fail(exitUsage, "%s: %v", name, err)
		}
		fmt.Fprintln(stdout, string(out))
		return 0
	}
	fmt.Fprintln(stdout, r.OneLine())
	for _, w := range r.Warnings {
		fmt.Fprintf(stdout, "  warning: %s\n", strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return ' '
			}
			return r
		}, w))
	}
	return 0
}
