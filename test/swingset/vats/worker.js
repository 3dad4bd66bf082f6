// A worker vat: keeps a running total and a log in its heap (so its snapshots change with every
// delivery), answers messages, and can loop forever on request.
import { Far } from '@endo/far';

export function buildRootObject(_vatPowers, vatParameters) {
  let name = vatParameters && vatParameters.name;
  let total = 0;
  const log = [];
  const blobs = new Map(); // heap growth, so snapshots differ in size as well as content

  return Far('worker', {
    init(n) {
      name = n;
      return name;
    },
    add(n) {
      total += n;
      log.push(n);
      blobs.set(log.length, `${name}:${n}:`.repeat(50));
      return total;
    },
    state() {
      return { name, total, count: log.length };
    },
    // Busy work that terminates: n iterations of arithmetic.
    spin(n) {
      let x = 0;
      for (let i = 0; i < n; i += 1) x = (x * 31 + i) % 1000003;
      return x;
    },
    // Never returns: the crash tests kill the worker while it runs this.
    spinForever() {
      let x = 0;
      for (;;) x = (x + 1) % 1000003;
    },
  });
}
