// __SERVICE__ of the Ubertruck sample application (sandbox). No npm dependencies.
// Serves /health (status + release version), /health/ready, /health/live and an API
// stand-in; tells PM2 when it is listening; drains and exits on SIGINT.
'use strict';
const http = require('http');

const SERVICE = '__SERVICE__';
const VERSION = '__VERSION__';      // the release tag, baked in by `npm run build`
const PORT = Number(process.env.PORT || 3000);
/*FAULT*/
let ready = false;
let draining = false;

function reply(res, code, body) {
  const text = JSON.stringify(body);
  const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) };
  if (draining) headers.connection = 'close';
  res.writeHead(code, headers);
  res.end(text);
}

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (path === '/health') return reply(res, 200, { status: 'ok', service: SERVICE, version: VERSION, pid: process.pid });
  if (path === '/health/live') return reply(res, 200, { status: 'alive' });
  if (path === '/health/ready') {
    const isReady = ready && !draining && READY_CHECK();
    return reply(res, isReady ? 200 : 503, { status: isReady ? 'ready' : 'not ready' });
  }
  return reply(res, 200, { service: SERVICE, version: VERSION, path });
});
server.keepAliveTimeout = 5000;

server.listen(PORT, () => {
  ready = true;
  if (process.send) process.send('ready');   // PM2 wait_ready: the new worker takes traffic only now
});

process.on('SIGINT', () => {
  // Graceful: stop accepting, let in-flight requests finish, then exit.
  draining = true;
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 4000).unref();
});
