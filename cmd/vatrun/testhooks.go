//go:build vatrun_testhooks

package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// This file is linked only into bin/vatrun-hooks (go build -tags vatrun_testhooks), the binary the
// fault-injection tests run (test/hostile, the VM matrix); bin/vatrun has testhooks_off.go instead
// and ignores $VATRUN_TEST_PAUSE.

// testPause: when $VATRUN_TEST_PAUSE names stage, vatrun says so on stderr and sleeps (at most
// 30 s), so a test can SIGKILL it at exactly that point. Stages: before-launch (nothing forked
// yet) and before-report (the worker is reaped, the report not yet written); the init stage
// itself handles in-setup (stage.c, between fork and exec, also only with the tag).
func testPause(stage string, stderr io.Writer) {
	if os.Getenv("VATRUN_TEST_PAUSE") != stage {
		return
	}
	fmt.Fprintf(stderr, "vatrun-test-pause %s pid=%d\n", stage, os.Getpid())
	time.Sleep(30 * time.Second)
}

// testHookEnv passes $VATRUN_TEST_PAUSE on to the worker's environment, where the init stage
// looks for the in-setup stage.
func testHookEnv() []string {
	if v, ok := os.LookupEnv("VATRUN_TEST_PAUSE"); ok {
		return []string{"VATRUN_TEST_PAUSE=" + v}
	}
	return nil
}
