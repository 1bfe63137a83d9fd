// Reference point for bench/run.ts, not a usable proxy: the least a Node.js HTTP/1.1 proxy can do
// per request. llhttp (Node's own parser) only finds where each request and response ends; the
// bytes go through as they came (no header is read, added or removed, no error handling), over
// keep-alive sockets to the backends, round-robin. Assumes what wrk sends: body-less requests,
// one per read, no pipelining. What lb costs above this is lb's work plus node:http's.
//   node bench/proxies/floor.cjs PORT http://127.0.0.1:P1 http://127.0.0.1:P2 …
const net = require('node:net');
const { HTTPParser } = require('node:_http_common');

const [port, ...targets] = process.argv.slice(2);
const ports = targets.map((t) => Number(new URL(t).port));
const idle = ports.map(() => []);
let next = 0;

function upstream(i) {
  const reused = idle[i].pop();
  if (reused) return reused;
  const conn = { i, client: null, complete: false, socket: net.connect({ host: '127.0.0.1', port: ports[i], noDelay: true }) };
  const parser = new HTTPParser();
  parser.initialize(HTTPParser.RESPONSE, {}, 0, 0);
  parser[HTTPParser.kOnMessageComplete] = () => {
    conn.complete = true;
  };
  conn.socket.on('data', (chunk) => {
    conn.client.write(chunk);
    parser.execute(chunk);
    if (!conn.complete) return;
    conn.complete = false;
    conn.client = null;
    idle[conn.i].push(conn);
  });
  conn.socket.on('error', () => {});
  // A backend that closes (after `Connection: close`) leaves the pool; its client with it.
  conn.socket.on('close', () => {
    const at = idle[conn.i].indexOf(conn);
    if (at !== -1) idle[conn.i].splice(at, 1);
    conn.client?.destroy();
  });
  return conn;
}

net
  .createServer({ noDelay: true }, (client) => {
    const parser = new HTTPParser();
    parser.initialize(HTTPParser.REQUEST, {}, 0, 0);
    let target = null;
    parser[HTTPParser.kOnHeadersComplete] = () => {
      target = upstream(next++ % ports.length);
      target.client = client;
      return 0;
    };
    client.on('data', (chunk) => {
      if (parser.execute(chunk) instanceof Error) return client.destroy();
      target.socket.write(chunk);
    });
    client.on('error', () => {});
  })
  .listen(Number(port), '127.0.0.1', () => process.stdout.write(`${port}\n`));
