#!/usr/bin/env python3
"""Phase breakdown of `vatrun run` from a perf trace (see bench/tools/phases.sh).

Reads `perf script -F pid,tid,time,event,trace` output of runs of
`vatrun run --profile xsnap --no-cgroup -- WORKER` recorded with uprobes on the vatrun binary,
sched_process_{exec,fork,exit} and raw_syscalls:sys_enter. Prints, per phase, the median duration
(µs) over all complete runs of TIMES_TRACE and the median page faults taken in the phase in
FAULTS_TRACE (a recording that also has page-faults -c 1; its times are not used).
MODE is `ordinary` (VATRUN_PRELAUNCH=off: Go starts, then clones the init stage, which execs
/proc/self/exe) or `cfirst` (the C constructor forks an intermediate process M, which clones the
init stage I with CLONE_PARENT; the stage waits at its gate until Go adopts it).
Usage: phases.py MODE TIMES_TRACE [FAULTS_TRACE]"""
import re
import statistics
import sys

line_re = re.compile(r'^\s*(\d+)/(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)$')
supervisor = '/bin/vatrun'


def parse(path):
    events = []
    for line in open(path):
        m = line_re.match(line)
        if m:
            events.append((float(m[3]), int(m[1]), int(m[2]), m[4], m[5]))
    events.sort()
    return runs_of(events)


def runs_of(events):
    runs = []
    cur = None
    for t, pid, tid, ev, rest in events:
        if ev == 'sched:sched_process_exec' and rest.startswith('filename=') and rest.split()[0].endswith(supervisor):
            cur = {'S': pid, 'marks': {'exec': t}, 'pf': [], 'I': None, 'W': None, 'M': None}
            runs.append(cur)
            continue
        if cur is None:
            continue
        mk = cur['marks']
        if ev == 'page-faults':
            cur['pf'].append((t, pid))
            continue
        if pid == cur['S']:
            if ev.startswith('probe_vatrun:'):
                name = ev.split(':')[1].split('_', 1)[1]
                mk.setdefault(name, t)
            elif ev == 'sched:sched_process_fork' and mode == 'cfirst' and 'mid_fork' not in mk and 'prelaunch' in mk:
                mk['mid_fork'] = t
                cur['M'] = int(re.search(r'child_pid=(\d+)', rest)[1])
            elif ev == 'sched:sched_process_fork' and mode == 'ordinary' and 'stage_fork' not in mk and 'sbstart' in mk:
                child = int(re.search(r'child_pid=(\d+)', rest)[1])
                mk.setdefault('clone_probe' if 'clone_probe' not in mk else 'stage_fork', t)
                if 'stage_fork' in mk:
                    cur['I'] = child
            elif ev == 'sched:sched_process_exit' and 'group_dead=true' in rest:
                mk['sup_gone'] = t
        elif pid == cur.get('M'):
            if ev == 'sched:sched_process_fork' and 'stage_fork' not in mk:
                mk['stage_fork'] = t
                cur['I'] = int(re.search(r'child_pid=(\d+)', rest)[1])
        elif pid == cur['I']:
            if ev == 'sched:sched_process_exec':
                mk['stage_exec'] = t
            elif ev.startswith('probe_vatrun:p01'):
                mk['stage_ctor'] = t
            elif ev.startswith('probe_vatrun:p03'):
                mk['stage_main'] = t
            elif ev == 'sched:sched_process_fork':
                mk['worker_fork'] = t
                cur['W'] = int(re.search(r'child_pid=(\d+)', rest)[1])
            elif ev == 'sched:sched_process_exit':
                mk['stage_exit'] = t
        elif pid == cur['W']:
            if ev == 'sched:sched_process_exec':
                mk['worker_exec'] = t
            elif ev == 'sched:sched_process_exit':
                mk['worker_exit'] = t
    return runs


ordinary = [
    ('exec', 'ctor', 'exec of the static binary → first C constructor', 'S'),
    ('ctor', 'cgoinit', 'C constructor (inherited-fd scan) + libc → Go rt0', 'S'),
    ('cgoinit', 'schedinit', 'cgo init', 'S'),
    ('schedinit', 'rtmain', 'runtime.schedinit (heap, GOMAXPROCS from cgroup, …)', 'S'),
    ('rtmain', 'earlysig', 'runtime.main → first vatrun init (runtime/std package inits, sysmon, GC workers)', 'S'),
    ('earlysig', 'main', 'remaining package inits (earlysig signal.Notify handoff, the other packages)', 'S'),
    ('main', 'load', 'main: flag parsing, logger', 'S'),
    ('load', 'launch', 'profile load (a built-in: its generated literal), report sink, fds', 'S'),
    ('launch', 'stagecfg', 'Launch → plan.Compile: profile digest (a built-in: generated)', 'S'),
    ('stagecfg', 'cgroup', 'plan compile (a built-in: its precompiled filter; rlimits) + worker path + identity goroutine', 'S'),
    ('cgroup', 'sbstart', 'cgroup decision (--no-cgroup)', 'S'),
    ('sbstart', 'clone_probe', 'sandbox.Start: worker root (ELF parse), config encode, pipes', 'S'),
    ('clone_probe', 'stage_fork', "Go's os.StartProcess: pidfd probe child + fork", 'S'),
    ('stage_fork', 'stage_exec', 'clone of the init stage into 5 namespaces → its execve done', 'I'),
    ('stage_exec', 'stage_ctor', 'init stage: exec of /proc/self/exe → C constructor', 'I'),
    ('stage_ctor', 'worker_fork', 'init stage: mounts, pivot_root, /proc, rlimits, caps, BPF load → fork', 'I'),
    ('worker_fork', 'worker_exec', 'worker: fork → exec done', 'W'),
    ('worker_exec', 'worker_exit', 'worker runs (static true)', 'W'),
    ('worker_exit', 'stage_exit', 'init stage: wait4, report on the status pipe, exit (namespace teardown)', 'I'),
    ('stage_exit', 'build', 'supervisor wakes, reaps, gathers evidence', 'S'),
    ('build', 'write', 'report build', 'S'),
    ('write', 'exit', 'report JSON + write, cleanup', 'S'),
    ('exit', 'sup_gone', 'os.Exit → process gone (threads torn down)', 'S'),
]
cfirst = [
    ('exec', 'ctor', 'exec of the static binary → first C constructor', 'S'),
    ('ctor', 'prelaunch', 'C constructor: inherited-fd scan', 'S'),
    ('prelaunch', 'mid_fork', 'launch cache: key (sha256), entry read and checked, one stat per file, pipes, fork', 'S'),
    ('mid_fork', 'stage_fork', 'intermediate process: clone of the init stage into 5 namespaces (CLONE_PARENT)', 'M'),
    ('stage_fork', 'stage_main', 'init stage: its fds as Go would pass them → the stage (no exec)', 'I'),
    ('mid_fork', 'schedinit', 'supervisor, meanwhile: libc → Go rt0, cgo init', 'S'),
    ('schedinit', 'rtmain', 'runtime.schedinit (heap, GOMAXPROCS from cgroup, …)', 'S'),
    ('rtmain', 'earlysig', 'runtime.main → first vatrun init (runtime/std package inits, sysmon, GC workers)', 'S'),
    ('earlysig', 'main', 'remaining package inits (earlysig signal.Notify handoff, the other packages)', 'S'),
    ('main', 'load', 'main: flag parsing, logger', 'S'),
    ('load', 'launch', 'profile load (a built-in: its generated literal), report sink, fds', 'S'),
    ('launch', 'stagecfg', 'Launch → plan.Compile: profile digest (a built-in: generated)', 'S'),
    ('stagecfg', 'cgroup', 'plan compile (a built-in: its precompiled filter; rlimits) + worker path + identity goroutine', 'S'),
    ('cgroup', 'sbstart', 'cgroup decision (--no-cgroup)', 'S'),
    ('sbstart', 'adopt', 'sandbox.Start: worker root, config and invocation encoded, compared byte for byte; intermediate reaped', 'S'),
    ('adopt', 'worker_fork', 'gate opened → the waiting stage forks the worker', 'I'),
    ('worker_fork', 'worker_exec', 'worker: fork → exec done', 'W'),
    ('worker_exec', 'worker_exit', 'worker runs (static true)', 'W'),
    ('worker_exit', 'stage_exit', 'init stage: wait4, report on the status pipe, exit (namespace teardown)', 'I'),
    ('stage_exit', 'build', 'supervisor wakes, reaps, gathers evidence', 'S'),
    ('build', 'write', 'report build', 'S'),
    ('write', 'exit', 'report JSON + write, cleanup', 'S'),
    ('exit', 'sup_gone', 'os.Exit → process gone (threads torn down)', 'S'),
]
mode = sys.argv[1]
phases = cfirst if mode == 'cfirst' else ordinary


def complete(runs):
    return [r for r in runs if all(a in r['marks'] and b in r['marks'] for a, b, _, _ in phases)]


ok = complete(parse(sys.argv[2]))
fok = complete(parse(sys.argv[3])) if len(sys.argv) > 3 else []
print('| phase | what | median µs | p25–p75 µs | page faults (median) |')
print('|---|---|---:|---:|---:|')
tot = []
for a, b, what, who in phases:
    ds, pfs = [], []
    for r in ok:
        ds.append((r['marks'][b] - r['marks'][a]) * 1e6)
    for r in fok:
        ta, tb = r['marks'][a], r['marks'][b]
        pfs.append(sum(1 for t, p in r['pf'] if ta <= t < tb and p == r[who]))
    q = statistics.quantiles(ds, n=4) if len(ds) > 1 else [ds[0]] * 3
    pf = f'{statistics.median(pfs):.0f}' if pfs else '–'
    print(f'| {a} → {b} | {what} | {statistics.median(ds):.0f} | {q[0]:.0f}–{q[2]:.0f} | {pf} |')
whole = [(r['marks']['sup_gone'] - r['marks']['exec']) * 1e6 for r in ok]
pf_all = [len([1 for t, p in r['pf'] if p in (r['S'], r['I'], r['W'], r['M'])]) for r in fok]
pf = f'{statistics.median(pf_all):.0f}' if pf_all else '–'
print(f'| exec → gone | whole run ({len(ok)} runs) | {statistics.median(whole):.0f} | | {pf} |')
