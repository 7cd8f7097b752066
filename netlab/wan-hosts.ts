import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { TwoHostNetwork, ip } from './two-hosts.js';

/** What the emulated path does to packets, in each direction alike unless set per direction. */
export interface PathSettings {
  /** One-way delay: an idle round trip takes twice this. */
  delayMs: number;
  /** Bottleneck rate; 0: none. */
  rateMbit: number;
  /** The bottleneck's drop-tail queue, as time to send it at the rate (200 ms: a deep buffer). */
  queueMs: number;
  /** Probability that a packet is dropped at random, 0..1. */
  loss: number;
  /** Every packet dropped, those queued and in flight included (a link gone, silently). */
  blackhole: boolean;
}

/** What one direction of the path did so far (the emulator's counters). */
export interface DirectionStats {
  packets: number;
  bytes: number;
  delivered: number;
  deliveredBytes: number;
  droppedLoss: number;
  droppedQueue: number;
  droppedBlackhole: number;
  droppedWrite: number;
  /** The longest a packet waited in the bottleneck's queue since its rate or depth was last set. */
  maxQueueMs: number;
  /** Packets queued or in flight right now. */
  queued: number;
  /** How long a packet arriving now would wait in the bottleneck's queue. */
  waitMs: number;
}

/** The client host sends `upload`, the server host `download`. */
export type PathDirection = 'upload' | 'download';

interface Reply {
  id?: number;
  ok?: boolean;
  error?: string;
  ready?: boolean;
  aToB?: DirectionStats;
  bToA?: DirectionStats;
}

/** The kernel queue in front of each TUN device, in packets: deep enough never to be the bottleneck. */
const TUN_TXQUEUELEN = 10_000;
const EMULATOR_START_MS = 10_000;
const COMMAND_TIMEOUT_MS = 5_000;

/**
 * The two hosts of TwoHostNetwork (server 10.77.0.1, client 10.77.0.2), joined by an emulated
 * wide-area path instead of a veth pair: each host has a TUN device, and netlab/wan-emulator.py,
 * in the root namespace, forwards between them with a one-way delay, a bottleneck with a queue,
 * random loss and a blackhole (this kernel has no netem). The hosts' real TCP stacks run on top.
 * Needs root, iproute2 and python3. Settings can change while traffic flows.
 */
export class WanHosts extends TwoHostNetwork {
  #emulator: ChildProcess | null = null;
  #nextId = 1;
  readonly #pending = new Map<number, (reply: Reply) => void>();
  #stderr = '';

  /** Builds the hosts and starts the path with `settings` (omitted ones: 0, no blackhole). */
  async open(settings: Partial<PathSettings> & { seed?: number } = {}): Promise<void> {
    this.createNamespaces();
    try {
      await this.#startEmulator(settings);
      for (const [ns, device] of [
        [this.server, this.serverDevice],
        [this.client, this.clientDevice],
      ] as const) {
        ip('link', 'set', device, 'netns', ns);
        ip('-n', ns, 'link', 'set', device, 'txqueuelen', String(TUN_TXQUEUELEN));
      }
      this.configureDevices();
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  /** Changes the path while it runs: both directions, or one. */
  async set(changes: Partial<PathSettings>, direction?: PathDirection): Promise<void> {
    const set = direction === undefined ? changes : { [direction === 'upload' ? 'aToB' : 'bToA']: changes };
    await this.#command({ set });
  }

  async stats(): Promise<Record<PathDirection, DirectionStats>> {
    const reply = await this.#command({ stats: true });
    if (reply.aToB === undefined || reply.bToA === undefined) throw new Error('wan emulator: stats reply without counters');
    return { upload: reply.aToB, download: reply.bToA };
  }

  /** Stops the path and removes both hosts with whatever still runs in them. */
  async close(): Promise<void> {
    const emulator = this.#emulator;
    this.#emulator = null;
    if (emulator !== null && emulator.exitCode === null && emulator.signalCode === null) {
      const exited = once(emulator, 'exit');
      emulator.stdin?.end();
      const timer = setTimeout(() => emulator.kill('SIGKILL'), 2000);
      await exited;
      clearTimeout(timer);
    }
    this.destroyNamespaces();
  }

  async #startEmulator(settings: Partial<PathSettings> & { seed?: number }): Promise<void> {
    // Device A is the client's (its packets are the upload), B the server's.
    const child = spawn('python3', [emulatorScript(), this.clientDevice, this.serverDevice, JSON.stringify(settings)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#emulator = child;
    child.stderr.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString('utf8')).slice(-4000);
    });
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`wan emulator: not ready within ${EMULATOR_START_MS} ms`)), EMULATOR_START_MS);
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(new Error(`wan emulator: cannot start python3 (${error.message}); install python3`));
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`wan emulator exited (code ${code}, signal ${signal}): ${this.#stderr.trim()}`));
        for (const resolveReply of this.#pending.values()) resolveReply({ ok: false, error: 'wan emulator exited' });
        this.#pending.clear();
      });
      createInterface({ input: child.stdout }).on('line', (line) => {
        let reply: Reply;
        try {
          reply = JSON.parse(line) as Reply;
        } catch {
          return;
        }
        if (reply.ready === true) {
          clearTimeout(timer);
          resolve();
          return;
        }
        if (reply.id === undefined) return;
        this.#pending.get(reply.id)?.(reply);
        this.#pending.delete(reply.id);
      });
    });
    await ready;
  }

  async #command(body: Record<string, unknown>): Promise<Reply> {
    const emulator = this.#emulator;
    if (emulator === null || emulator.exitCode !== null) throw new Error('wan emulator: not running');
    const id = this.#nextId++;
    const reply = await new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`wan emulator: no reply to ${JSON.stringify(body)} within ${COMMAND_TIMEOUT_MS} ms`));
      }, COMMAND_TIMEOUT_MS);
      this.#pending.set(id, (answer) => {
        clearTimeout(timer);
        resolve(answer);
      });
      emulator.stdin?.write(`${JSON.stringify({ id, ...body })}\n`);
    });
    if (reply.ok !== true) throw new Error(`wan emulator: ${reply.error ?? 'command failed'}`);
    return reply;
  }
}

/** netlab/wan-emulator.py, found from wherever this module runs (the source, dist/ or dist-bench/). */
function emulatorScript(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    const candidate = join(dir, 'netlab', 'wan-emulator.py');
    if (existsSync(candidate)) return candidate;
    const beside = join(dir, 'wan-emulator.py');
    if (existsSync(beside)) return beside;
  }
  throw new Error('netlab/wan-emulator.py not found');
}
