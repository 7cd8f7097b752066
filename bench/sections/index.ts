/**
 * Every section of the bench, in the order a full run takes them (--only picks some by name).
 * A new kind of measurement (e.g. emulated WAN paths) is a new file here and a line below.
 */
import type { BenchSection } from '../harness/section.js';
import { interactive } from './interactive.js';
import { latency } from './latency.js';
import { profile } from './profile.js';
import { resume } from './resume.js';
import { roaming } from './roaming.js';
import { scale } from './scale.js';
import { throughput } from './throughput.js';
import { wanKeys, wanLoss, wanStream } from './wan.js';

export const SECTIONS: readonly BenchSection[] = [throughput, latency, interactive, resume, roaming, scale, wanKeys, wanStream, wanLoss, profile];
