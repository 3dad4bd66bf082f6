// Package earlysig catches vatrun run's stop signals as early as a Go program can: in a package
// init that imports nothing but os and os/signal, so that it runs before the other packages'
// inits and long before main. Without it, a SIGTERM that arrives while the Go runtime and the
// packages start up kills vatrun by the runtime's default action, with no report.
package earlysig

import (
	"os"
	"os/signal"
	"syscall"
)

// Stops receives SIGTERM, SIGINT, SIGHUP and SIGQUIT from the moment this package is
// initialized, when the command is `vatrun run`; nil otherwise. It holds 8 signals.
var Stops chan os.Signal

func init() {
	if len(os.Args) > 1 && os.Args[1] == "run" {
		Stops = make(chan os.Signal, 8)
		signal.Notify(Stops, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	}
}
