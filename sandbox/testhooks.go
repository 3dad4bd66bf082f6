//go:build vatrun_testhooks

package sandbox

// With the vatrun_testhooks build tag (bin/vatrun-hooks, for the fault-injection tests only),
// stage.c is compiled with its in-setup pause: VATRUN_TEST_PAUSE=in-setup in the worker's
// environment stops the worker's side of the fork before exec. Without the tag that code is not
// compiled at all.

/*
#cgo CFLAGS: -DVR_TESTHOOKS
*/
import "C"
