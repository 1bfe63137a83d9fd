// Peer for bench/run.ts: npm http-proxy round-robining the backends over a keep-alive agent.
//   node bench/proxies/http-proxy.cjs PORT http://127.0.0.1:P1 http://127.0.0.1:P2 …
const http = require('node:http');
const httpProxy = require('http-proxy');

const [port, ...targets] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const proxy = httpProxy.createProxyServer({ agent });
proxy.on('error', (_e, _req, res) => {
  if (res.writeHead && !res.headersSent) res.writeHead(502);
  res.end();
});
let i = 0;
http
  .createServer((req, res) => proxy.web(req, res, { target: targets[i++ % targets.length] }))
  .listen(Number(port), '127.0.0.1', () => process.stdout.write(`${port}\n`));
