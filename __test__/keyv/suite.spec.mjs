// The official Keyv compliance suite (@keyv/test-suite) against this adapter: all of it with
// keyv 5 (the suite's peer), and again with keyv 6. Run by `npm run test:keyv` (vitest), part
// of `npm test`.
import * as vitest from 'vitest';
import Keyv5 from 'keyv';
import { Keyv as Keyv6 } from 'keyv6';
import keyvTestSuite, { keyvIteratorTests, keyvApiTests, keyvValueTests, keyvNamespaceTest } from '@keyv/test-suite';
import { KeyvSharedKVStore } from 'shared-kv-store/keyv';

// One named store for every adapter the suite makes (it clears it before each test).
const store = () => new KeyvSharedKVStore({ name: 'keyv-suite' });

vitest.describe('keyv 5', () => {
  keyvTestSuite(vitest, Keyv5, store);
  keyvIteratorTests(vitest, Keyv5, store);
});

// Written for keyv 5, the suite expects `delete([keys])` to resolve to one boolean; keyv 6
// resolves to one per key, with its own built-in Map store too (checked below), so that one
// test is skipped under keyv 6, and said so.
const KEYV5_ONLY = '.deleteMany([keys]) with nonexistent keys resolves to false';
const keyv6Test = { ...vitest, it: (name, fn) => (name === KEYV5_ONLY ? vitest.it.skip(`${name} (keyv 5 semantics)`, fn) : vitest.it(name, fn)) };

vitest.describe('keyv 6', () => {
  keyvApiTests(keyv6Test, Keyv6, store);
  keyvValueTests(keyv6Test, Keyv6, store);
  keyvNamespaceTest(keyv6Test, Keyv6, store);
  keyvIteratorTests(keyv6Test, Keyv6, store);
  vitest.it('delete([keys]) resolves as with keyv 6\'s own Map store', async () => {
    const mine = new Keyv6({ store: store() });
    await mine.clear();
    await mine.set('a', 1);
    const theirs = new Keyv6();
    await theirs.set('a', 1);
    const keys = ['a', 'missing'];
    vitest.expect(await mine.delete(keys)).toEqual(await theirs.delete(keys));
  });
});
