import { createLineService } from './line-service.js';

/** Runs the demo's line service alone: `node dist/demo/line-service-main.js PORT` (127.0.0.1). */
const port = Number(process.argv[2] ?? '2323');
createLineService().listen(port, '127.0.0.1');
