// Package e2e boots a Linux VM under qemu (TCG) with a real cgroup v2 and runs
// the VM-side tests of package ./vm in it, as root and as an unprivileged user
// with a delegated cgroup subtree. See e2e_test.go for the environment
// variables, setup.sh for the kernel cache, ./vminit for the VM's /init.
package e2e
