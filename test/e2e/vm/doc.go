// Package vm holds the tests that run inside the end-to-end test VM (see
// ../e2e_test.go, which builds this package with `go test -c`, boots a kernel
// with a real cgroup v2 and runs the binary twice: as root, and as uid 1000 in
// a delegated cgroup subtree).
//
// Outside the VM every test skips. Writing a test:
//
//   - Start it with vmTest(t). A test whose name starts with TestUnpriv runs in
//     the uid-1000 run (cgroup parent delegated like systemd's Delegate=yes);
//     every other test runs in the root run.
//   - Each run starts in <parent>/vatrun-supervisor, parent being /e2e-root or
//     /e2e-u1000 (cgroupParentPath; $VATRUN_E2E_CGROUP_PARENT), delegated to
//     the run's uid like systemd's Delegate=yes, so a vatrun started by a test
//     picks <parent> by default. VATRUN_CGROUP_PARENT is not set.
//   - Make cgroups with newCgroup(t, settings...) under the run's parent;
//     they are killed and removed at cleanup.
//   - Start helper processes with startHelper (re-executes this test binary
//     in a helper mode registered in the helpers map), optionally straight into
//     a cgroup (CLONE_INTO_CGROUP).
//   - /bin/vatrun and /bin/vatrun-testworker are there when the host passed
//     them; needBinary(t, path) skips without them, or fails when the host run
//     is strict (VATRUN_E2E=1).
//   - Report one table row per case with row(t, case, expected, observed, d).
package vm
