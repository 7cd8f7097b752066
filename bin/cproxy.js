#!/usr/bin/env node
// First the heap floor (common/ops/heap-floor.ts): it may restart this process in place, so it
// comes before the program loads or opens anything.
import { restartWithHeapFloor } from '../dist/common/ops/heap-floor.js';

restartWithHeapFloor();
await import('../dist/cproxy/main.js');
