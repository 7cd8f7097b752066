import { describe, expect, it } from 'vitest';
import { settle } from '../../helpers/duplex-pair.js';
import { QUIET_TIMERS, Rig } from '../../helpers/endpoint-rig.js';

/** The host's addresses as the client's watch sees them, changed by the test. */
class FakeHost {
  addresses = new Set(['127.0.0.1', '10.0.0.2']);
  readonly read = (): Set<string> => new Set(this.addresses);
}

describe('endpoints: the host\'s addresses change', () => {
  it('the link\'s own address gone: the link is dead at the next look, and the redial goes at once, even right after another', async () => {
    const host = new FakeHost();
    const rig = await Rig.start({
      transport: 'tcp',
      client: { ...QUIET_TIMERS, addressPollMs: 200, reconnectBaseDelayMs: 100, reconnectMaxDelayMs: 1000 },
      readAddresses: host.read,
    });
    await rig.nextUp();
    // A first loss: redialled at once, which would make the next immediate redial wait a backoff step.
    let up = rig.nextUp();
    rig.cut();
    await up;
    expect(rig.dialTimes).toEqual([0, 0]);

    // The link's socket is bound to 127.0.0.1, which the host no longer has.
    host.addresses.delete('127.0.0.1');
    up = rig.nextUp();
    await rig.clock.advance(199);
    expect(rig.downs).toHaveLength(1);
    await rig.clock.advance(1);
    expect(rig.downs.map((error) => error.code)).toEqual(['ETCP_ERR_LINK_CLOSED', 'ETCP_ERR_ADDRESS_GONE']);
    expect(rig.downs[1]?.message).toBe('local address 127.0.0.1 is gone');
    host.addresses.add('127.0.0.1'); // the new link's address (the test can only dial loopback)
    expect(rig.dialTimes).toEqual([0, 0, 200]);
    expect(rig.retries).toEqual([]);
    expect(rig.client.roamingCounts.addressesGone).toBe(1);
    await up;
  });

  it('an address appears while a dial waits on its backoff: it goes now; no change, no early dial', async () => {
    const host = new FakeHost();
    const rig = Rig.memory({
      mode: 'refuse',
      client: { ...QUIET_TIMERS, addressPollMs: 200, reconnectBaseDelayMs: 5000, reconnectMaxDelayMs: 5000 },
      random: () => 0.99,
      readAddresses: host.read,
    });
    await settle();
    expect(rig.retries).toHaveLength(1);
    const waitMs = rig.retries[0]?.delayMs as number;
    expect(waitMs).toBeGreaterThan(4000);
    await rig.clock.advance(1000);
    expect(rig.dialTimes).toEqual([0]); // nothing changed: the backoff holds
    rig.mode = 'accept';
    host.addresses.add('192.168.1.20');
    await rig.clock.advance(200);
    await settle();
    expect(rig.dialTimes).toEqual([0, 1200]);
    expect(rig.ups).toHaveLength(1);
  });

  it('addressPollMs 0: nothing is watched, and a gone address is noticed only by the dead-link timeout', async () => {
    const host = new FakeHost();
    const rig = await Rig.start({ transport: 'tcp', client: { ...QUIET_TIMERS, addressPollMs: 0 }, server: QUIET_TIMERS, readAddresses: host.read });
    await rig.nextUp();
    host.addresses.clear();
    await rig.clock.advance(5000);
    expect(rig.downs.map((error) => error.message)).toEqual([]);
  });
});

describe('endpoints: make before break after an address change', () => {
  const config = { ...QUIET_TIMERS, addressPollMs: 200 };

  it('a probe answered in time: nothing more happens', async () => {
    const host = new FakeHost();
    const rig = Rig.memory({ client: config, server: QUIET_TIMERS, readAddresses: host.read });
    await rig.nextUp();
    host.addresses.add('192.168.1.20');
    await rig.clock.advance(200);
    await settle();
    await rig.clock.advance(5000);
    expect(rig.dialTimes).toEqual([0]);
    expect(rig.downs).toEqual([]);
    expect(rig.client.roamingCounts).toMatchObject({ probes: 1, probesUnanswered: 0, secondLinks: 0 });
  });

  it('a probe unanswered (the old path silently dead): a second link, the sessions moved to it intact, the first closed', async () => {
    const host = new FakeHost();
    const rig = Rig.memory({ client: config, server: QUIET_TIMERS, readAddresses: host.read });
    await rig.nextUp();
    const session = rig.open();
    const atServer = await rig.serverSession(0);
    const received: Buffer[] = [];
    atServer.on('data', (chunk: Buffer) => received.push(chunk));
    session.write('before ');
    await settle();
    const first = rig.pair;
    first.pause(); // the old network: everything on it vanishes, and nothing says so
    session.write('during ');
    host.addresses.add('192.168.1.20');
    await rig.clock.advance(200); // the watch sees the new address: a probe goes out
    const switched = rig.nextUp();
    await rig.clock.advance(199);
    expect(rig.dialTimes).toEqual([0]); // the probe's deadline (200 ms on an unmeasured path) not yet reached
    await rig.clock.advance(1);
    expect(rig.dialTimes).toEqual([0, 400]); // a second link, while the first is still up
    expect(rig.downs).toEqual([]);
    await switched;
    session.write('after');
    await settle();
    expect(Buffer.concat(received).toString()).toBe('before during after');
    // The first link was closed, its socket destroyed; the sessions were never down meanwhile.
    expect(first.a.destroyed).toBe(true);
    expect(rig.downs).toEqual([]);
    expect(rig.ups).toHaveLength(2);
    expect(rig.client.state).toBe('up');
    expect(rig.client.roamingCounts).toEqual({ addressesGone: 0, probes: 1, probesUnanswered: 1, secondLinks: 1, switches: 1 });
  });
});

describe('endpoints: a second link that does not come', () => {
  it('the first link dies while the second hangs: the second is abandoned and the usual redial goes at once', async () => {
    // The first link's dead-link timeout (1.5 s) comes before the second link's connect timeout (2 s after its dial at 0.6 s).
    const rig = Rig.memory({ client: { heartbeatIntervalMs: 500, deadAfterMs: 1500, addressPollMs: 0 }, server: QUIET_TIMERS });
    await rig.nextUp();
    const session = rig.open();
    await rig.serverSession(0);
    rig.pair.pause();
    rig.mode = 'hang'; // the second link's attempt goes nowhere
    session.write('into the silence');
    await rig.clock.advance(600); // 300 ms without an ack, a probe, 200 ms without its answer
    expect(rig.dialTimes).toHaveLength(2);
    expect(rig.client.roamingCounts.secondLinks).toBe(1);
    rig.mode = 'accept';
    const up = rig.nextUp();
    await rig.advanceUntil(() => rig.downs.length === 1);
    expect(rig.downs[0]?.code).toBe('ETCP_ERR_LINK_DEAD');
    // Redialled at once through the connector, not after the second link's own timeout (2.6 s).
    expect(rig.dialTimes.at(-1)).toBe(rig.clock.now());
    expect(rig.clock.now()).toBeLessThan(2000);
    await up;
    expect(rig.client.roamingCounts.switches).toBe(0);
  });

  it('a dialer that throws for the second link is a failed attempt, not a crash', async () => {
    let dials = 0;
    const rig = Rig.memory({ client: { ...QUIET_TIMERS, addressPollMs: 0 }, server: QUIET_TIMERS });
    await rig.nextUp();
    const session = rig.open();
    await rig.serverSession(0);
    rig.pair.pause();
    rig.mode = 'custom';
    rig.customDial = () => {
      dials++;
      throw new Error('no route to host');
    };
    session.write('x');
    await rig.clock.advance(700);
    expect(dials).toBe(1);
    expect(rig.client.roamingCounts).toMatchObject({ secondLinks: 1, switches: 0 });
    expect(rig.client.state).toBe('up'); // the first link is all there is, until its own timeout
  });
});
