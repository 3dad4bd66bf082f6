// Command vatrun-bench-noop is the floor of any Go supervisor process: a static cgo binary,
// linked like bin/vatrun, that starts the Go runtime and exits. The bench subtracts it from
// `vatrun help` (the same runtime plus vatrun's package inits) to split vatrun's start-up cost.
package main

import "C"

import "os"

func main() { os.Exit(0) }
