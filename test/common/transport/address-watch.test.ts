import { describe, expect, it } from 'vitest';
import { AddressWatch, diffAddresses, hostAddresses, normalizeAddress, type AddressChange } from '../../../common/transport/address-watch.js';
import { ManualClock } from '../../helpers/manual-clock.js';

describe('address watch: the host\'s own addresses', () => {
  it('compares addresses as sockets and interfaces give them: no zone, IPv4 not in IPv6 form', () => {
    expect(normalizeAddress('::ffff:10.77.0.2')).toBe('10.77.0.2');
    expect(normalizeAddress('FE80::1%eth0')).toBe('fe80::1');
    expect(normalizeAddress('2001:db8::ffff:1')).toBe('2001:db8::ffff:1');
    expect(normalizeAddress('10.0.0.1')).toBe('10.0.0.1');
    // The real interfaces: loopback is always there.
    expect(hostAddresses().has('127.0.0.1')).toBe(true);
  });

  it('says what was added and removed', () => {
    expect(diffAddresses(new Set(['a', 'b']), new Set(['b', 'c']))).toEqual({ added: ['c'], removed: ['a'] });
    expect(diffAddresses(new Set(['a']), new Set(['a']))).toEqual({ added: [], removed: [] });
  });

  it('looks every interval and emits a change only when there is one; stops when told', async () => {
    const clock = new ManualClock();
    let current = new Set(['127.0.0.1', '10.77.0.2']);
    const watch = new AddressWatch({ clock, intervalMs: 200, read: () => new Set(current) });
    const changes: AddressChange[] = [];
    watch.on('change', (change) => changes.push(change));
    watch.start();
    expect(watch.has('::ffff:10.77.0.2')).toBe(true);
    await clock.advance(400);
    expect(changes).toEqual([]);
    current = new Set(['127.0.0.1', '10.77.0.3']);
    await clock.advance(199);
    expect(changes).toEqual([]);
    await clock.advance(1);
    expect(changes).toEqual([{ added: ['10.77.0.3'], removed: ['10.77.0.2'] }]);
    expect(watch.has('10.77.0.2')).toBe(false);
    watch.stop();
    current = new Set();
    await clock.advance(1000);
    expect(changes).toHaveLength(1);
  });
});
