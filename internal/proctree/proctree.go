// Package proctree reads the process tree from /proc, for tests that must find a worker (the
// child of vatrun's init stage, itself a child of vatrun) or prove nothing was left behind.
package proctree

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Children lists pid's children (those of every thread).
func Children(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range files {
		data, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// Grandchildren lists the children of pid's children: the workers under vatrun's init stages.
func Grandchildren(pid int) []int {
	var out []int
	for _, c := range Children(pid) {
		out = append(out, Children(c)...)
	}
	return out
}
