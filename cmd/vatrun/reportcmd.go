package main

import (
	"fmt"
	"io"
	"os"

	"github.com/vatrun/vatrun/report"
)

// reportMain prints a death report file (or stdin with "-") in its one-line form, after strict
// decoding.
func reportMain(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: vatrun report FILE|-   (prints a JSON death report in one line)")
		return exitUsage
	}
	var data []byte
	var err error
	if args[0] == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(args[0])
	}
	if err != nil {
		fmt.Fprintf(stderr, "vatrun report: %v\n", err)
		return 1
	}
	r, err := report.Decode(data)
	if err != nil {
		fmt.Fprintf(stderr, "vatrun report: %s: %v\n", args[0], err)
		return 1
	}
	fmt.Fprintln(stdout, r.OneLine())
	return 0
}
