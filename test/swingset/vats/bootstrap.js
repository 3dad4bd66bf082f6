// Bootstrap vat: wires the two worker vats together, and on request creates a metered dynamic vat.
import { E, Far } from '@endo/far';

export function buildRootObject() {
  let vats;
  let vatAdminService;
  let metered; // { root, adminNode } of the dynamic vat
  let meteredDone = 'running';

  return Far('root', {
    async bootstrap(vatsArg, devices) {
      vats = vatsArg;
      vatAdminService = await E(vats.vatAdmin).createVatAdminService(devices.vatAdmin);
      await Promise.all([E(vats.alice).init('alice'), E(vats.bob).init('bob')]);
      return 'booted';
    },
    // One unit of work: alice and bob each change state; the reply chains through both.
    async step(i) {
      const a = await E(vats.alice).add(i);
      const b = await E(vats.bob).add(a);
      return [a, b];
    },
    async state() {
      const [a, b] = await Promise.all([E(vats.alice).state(), E(vats.bob).state()]);
      return { alice: a, bob: b, metered: meteredDone };
    },
    // A dynamic vat with a kernel meter (so its xsnap worker runs with the per-crank computron limit).
    async createMetered(remaining, name = 'metered') {
      const bcap = await E(vatAdminService).getNamedBundleCap('metered');
      const meter = await E(vatAdminService).createMeter(BigInt(remaining), 0n);
      metered = await E(vatAdminService).createVat(bcap, { name, meter });
      meteredDone = 'running';
      E(metered.adminNode)
        .done()
        .then(
          v => (meteredDone = `exited: ${v}`),
          e => (meteredDone = `terminated: ${e && e.message}`),
        );
      return E(metered.root).add(1);
    },
    meteredAdd(n) {
      return E(metered.root).add(n);
    },
    meteredSpin() {
      return E(metered.root).spinForever();
    },
    meteredStatus() {
      return meteredDone;
    },
  });
}
