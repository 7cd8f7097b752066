/**
 * The namespaces a section made: each is removed by the section's own finally block, and, should
 * the run be stopped before that (SIGINT, SIGTERM, the watchdog: they exit without unwinding the
 * section), by the 'exit' handler, synchronously, with whatever still runs in them.
 */
interface Hosts {
  destroyNamespaces(): void;
}

const open = new Set<Hosts>();
let hooked = false;

/** Removes `hosts` at exit unless the returned function (call it once they are gone) says otherwise. */
export function removeAtExit(hosts: Hosts): () => void {
  if (!hooked) {
    hooked = true;
    process.on('exit', () => {
      for (const leftover of open) leftover.destroyNamespaces();
    });
  }
  open.add(hosts);
  return () => open.delete(hosts);
}
