import { createServer, type Server, type Socket } from 'node:net';

const HELP = [
  'commands:',
  '  count N   print N numbered lines, one every 200 ms (cut the link meanwhile: none is lost)',
  '  echo TEXT print TEXT back',
  '  time      print the server time',
  '  quit      close the connection',
].join('\r\n');

/**
 * The demo's built-in target: a small line-based service, so that the demo needs no telnetd.
 * Lines may end in \n or \r\n (telnet sends \r\n).
 */
export function createLineService(): Server {
  return createServer((socket) => serve(socket));
}

function serve(socket: Socket): void {
  let buffered = '';
  let counter: NodeJS.Timeout | null = null;
  const send = (text: string): void => {
    if (!socket.destroyed) socket.write(`${text}\r\n`);
  };
  socket.setEncoding('utf8');
  socket.on('error', () => {});
  socket.on('close', () => {
    if (counter !== null) clearInterval(counter);
  });
  send('eternal-tcp demo service: this connection survives the link between cproxy and sproxy.');
  send(HELP);
  socket.on('data', (text: string) => {
    buffered += text;
    for (let end = buffered.indexOf('\n'); end !== -1; end = buffered.indexOf('\n')) {
      const line = buffered.slice(0, end).replace(/\r$/, '').trim();
      buffered = buffered.slice(end + 1);
      handle(line);
    }
    // A line longer than this is not a command; drop it rather than buffer without bound.
    if (buffered.length > 4096) buffered = '';
  });

  function handle(line: string): void {
    const [command = '', ...rest] = line.split(/\s+/);
    switch (command.toLowerCase()) {
      case '':
        return;
      case 'count': {
        const total = Math.min(Math.max(Number(rest[0]) || 10, 1), 100_000);
        if (counter !== null) clearInterval(counter);
        let n = 0;
        counter = setInterval(() => {
          n++;
          send(`line ${n} of ${total}`);
          if (n >= total && counter !== null) {
            clearInterval(counter);
            counter = null;
          }
        }, 200);
        return;
      }
      case 'echo':
        send(rest.join(' '));
        return;
      case 'time':
        send(new Date().toISOString());
        return;
      case 'quit':
        send('bye');
        socket.end();
        return;
      case 'help':
        send(HELP);
        return;
      default:
        send(`unknown command "${command}"; try help`);
    }
  }
}
