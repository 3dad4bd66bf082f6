// swingset-smoke.mjs: the plumbing check of the VM's SwingSet run, without the SwingSet kernel.
// Runs one real xsnap worker (test/swingset's node_modules/@agoric/xsnap) through
// `vatrun run --profile $PROFILE` (makeVatrunSpawn from js/), evaluates code in it, makes it
// take a heap snapshot (fd 7), and checks the death report: clean exit, cgroupEvidence true.
//
//   node test/e2e/swingset-smoke.mjs     (VATRUN_BIN, VATRUN_SWINGSET_PROFILES, VATRUN_SWINGSET_VATRUN_ARGS)
//
// Prints one "SMOKE <case>|<expected>|<observed>|<seconds>" line per check and exits non-zero
// when one fails. Run by vm/swingset_test.go (TestSwingSetSmoke) inside the VM, chrooted into the
// host's root file system (9p, read-only); it writes only to os.tmpdir().
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const vatrun = path.resolve(repo, process.env.VATRUN_BIN || 'bin/vatrun');
const profile = (process.env.VATRUN_SWINGSET_PROFILES || 'consensus').split(',')[0];
const extra = (process.env.VATRUN_SWINGSET_VATRUN_ARGS ?? '').split(/\s+/).filter(Boolean);

process.env.LOCKDOWN_ERROR_TRAPPING ??= 'none';
await import(path.join(repo, 'test/swingset/node_modules/@endo/init/debug.js')); // SES lockdown, as the kernel does
const { makeVatrunSpawn } = await import(path.join(repo, 'js/index.js'));
const { xsnap } = await import(path.join(repo, 'test/swingset/node_modules/@agoric/xsnap/src/index.js'));

let failed = 0;
const check = (name, expected, observed, ok, t0) => {
  const s = ((performance.now() - t0) / 1000).toFixed(3);
  console.log(`SMOKE ${name}|${expected}|${observed}|${s}`);
  if (!ok) failed += 1;
};

const reports = [];
const spawn = makeVatrunSpawn({
  vatrun,
  profile,
  args: [...extra, '--log-level', 'warn'],
  name: 'smoke',
  onReport: r => reports.push(r),
});

const t0 = performance.now();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vatrun-smoke-'));
let child;
const worker = await xsnap({
  os: os.type(),
  name: 'smoke',
  spawn: (cmd, args, opts) => {
    child = spawn(cmd, args, opts);
    return child;
  },
  fs: { ...fs, ...fs.promises },
  stdout: 'inherit',
  stderr: 'inherit',
});
const tEval = performance.now();
await worker.evaluate(
  'globalThis.handleCommand = body => new TextEncoder().encode([1, 2, 3].map(n => n * 7).join(",")).buffer',
);
const r = await worker.issueStringCommand('x');
check('xsnap-evaluate', 'worker answers "7,14,21"', JSON.stringify(r.reply), r.reply === '7,14,21', tEval);

const tSnap = performance.now();
let snapBytes = 0;
for await (const chunk of worker.makeSnapshotStream()) snapBytes += chunk.length;
check('xsnap-snapshot', 'heap snapshot on fd 7', `${(snapBytes / 1e6).toFixed(1)} MB`, snapBytes > 100000, tSnap);

await worker.close();
const report = await child.vatrunReport;
const cause = report ? `${report.cause}/${report.class}` : 'no report';
const cgroup = report?.cgroupEvidence;
check(
  `${profile}-report`,
  'exited/clean, cgroupEvidence true',
  `${cause}, cgroupEvidence ${cgroup}, profile ${report?.profile ?? '?'}`,
  report?.class === 'clean' && (cgroup === true || process.env.VATRUN_SMOKE_NO_CGROUP === '1'),
  t0,
);
fs.rmSync(tmp, { recursive: true, force: true });
if (failed) {
  console.log(`report: ${JSON.stringify(report)}`);
  process.exit(1);
}
