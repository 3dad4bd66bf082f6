// Command gen writes vatrun's Docker seccomp recipe (dockerseccomp.Recipe) from Docker's default
// profile: go run ./internal/dockerseccomp/gen MOBY_DEFAULT.json OUT.json
package main

import (
	"fmt"
	"os"

	"github.com/vatrun/vatrun/internal/dockerseccomp"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gen MOBY_DEFAULT.json OUT.json")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	data, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	def, err := dockerseccomp.Parse(data)
	if err != nil {
		return err
	}
	b, err := dockerseccomp.Recipe(def).Marshal()
	if err != nil {
		return err
	}
	return os.WriteFile(out, b, 0o644)
}
