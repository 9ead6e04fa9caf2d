// __SERVICE__ of the Ubertruck sample application (sandbox), in TypeScript like the guide's services:
// compiled by tsc (a dev dependency) with source maps, one runtime dependency from npm (ms), its
// configuration from the environment (it refuses to start without DATABASE_URL and JWT_SECRET).
// Serves /health (status + release version), /health/ready, /health/live and an API stand-in; tells
// PM2 when it is listening; drains and exits on SIGINT.
import { loadConfig } from './config';

const http = require('http');
const ms = require('ms');

const SERVICE = '__SERVICE__';
const VERSION: string = 'v' + require('../package.json').version;
const config = loadConfig(process.env);      // throws naming what is missing: PM2 never sees it ready
const started = Date.now();
/*FAULT*/
let ready = false;
let draining = false;

function reply(res: any, code: number, body: object): void {
  const text = JSON.stringify(body);
  const headers: Record<string, string | number> = { 'content-type': 'application/json',
                                                     'content-length': Buffer.byteLength(text) };
  if (draining) headers.connection = 'close';
  res.writeHead(code, headers);
  res.end(text);
}

function handle(req: any, res: any): void {
  const path: string = req.url.split('?')[0];
  if (path === '/health') {
    return reply(res, 200, { status: 'ok', service: SERVICE, version: VERSION, pid: process.pid,
                             uptime: ms(Date.now() - started) });
  }
  if (path === '/health/live') return reply(res, 200, { status: 'alive' });
  if (path === '/health/ready') {
    const isReady = ready && !draining && READY_CHECK();
    return reply(res, isReady ? 200 : 503, { status: isReady ? 'ready' : 'not ready' });
  }
  if (path === '/api/boom') throw new Error(`${SERVICE}: boom (a handler that throws, for the error log)`);
  if (API_FAILS(path)) return reply(res, 500, { error: 'internal error', service: SERVICE });
  return reply(res, 200, { service: SERVICE, version: VERSION, path, api: config.apiVersion });
}

const server = http.createServer((req: any, res: any) => {
  try {
    handle(req, res);
  } catch (err: any) {
    console.error(err.stack);       // with --enable-source-maps the frames name src/*.ts
    reply(res, 500, { error: 'internal error', service: SERVICE });
  }
});
server.keepAliveTimeout = 5000;

server.listen(Number(process.env.PORT || 3000), () => {
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
