//go:build !vatrun_testhooks

package main

import "io"

// The production binary has no fault-injection hooks: see testhooks.go.

func testPause(string, io.Writer) {}

func testHookEnv() []string { return nil }
