// One connection to the PM2 daemon for a whole operation (ubertruck_ops/tasks/pm2.py runs it).
//
//   node pm2_handover.js <pm2 package folder>  < request.json     (prints one line: RESULT <json>)
//
// Why: every `pm2` CLI call is a fresh Node process that loads PM2, connects, lists every app and
// exits; under load each costs seconds, and a hand-over took several per service. This script
// talks to the daemon through PM2's programmatic API, from the same install as the pm2 command.
//
// Requests (JSON on stdin; never a secret):
//   {"op": "list"}                               -> {"apps": [...]}
//   {"op": "save"}                               -> `pm2 save --force`
//   {"op": "delete", "ids": [pm_id, ...]}        -> `pm2 delete ID...`, all at once
//   {"op": "handover", "ecosystem": FILE, "wanted": {service: app name}, "ready_timeout_ms": N,
//    "overrides": {PM2 app option: value}}
//       For every service at once: start its wanted app from the ecosystem file (reload it when it
//       exists but is not online; keep it when it already runs), wait until every one is online
//       (PM2's wait_ready: the app said 'ready') with no restart, then delete the service's other
//       apps (SIGINT, kill_timeout: in-flight requests finish). All or nothing: when one wanted app
//       errors, restarts or times out, the apps this call started are deleted again and the old
//       ones keep serving. Result: {"ok", "actions": {service: text}, "failed": {name: seen},
//       "apps": [...] (after)}.
// Policy (what counts as a failure, what to do next) stays in Python; this only executes and reports.
'use strict';

const path = require('path');
const { performance } = require('perf_hooks');

// A daemon this starts inherits the umask: its dump (every app's environment, the services' secrets)
// and logs are then private to the app's user from the moment PM2 writes them.
process.umask(0o077);
const pm2 = require(path.resolve(process.argv[2] || ''));
const timings = { loaded: Math.round(performance.now()) };     // ms since this process started
const lap = (name) => { timings[name] = Math.round(performance.now()); };

function call(fn, ...args) {
  return new Promise((resolve, reject) => fn.call(pm2, ...args, (err, out) => (err ? reject(err) : resolve(out))));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function message(err) {
  if (Array.isArray(err)) return err.map(message).join('; ');
  return String((err && err.message) || err);
}

async function list() {
  const raw = await call(pm2.list);
  return raw.map((item) => {
    const env = item.pm2_env || {};
    return { name: item.name, pm_id: item.pm_id, namespace: env.namespace || null, status: env.status || '?',
             restarts: Number(env.restart_time || 0) + Number(env.unstable_restarts || 0),
             script: env.pm_exec_path || '', pid: item.pid || null };
  });
}

function serviceOf(app, services) {
  if (services.includes(app.namespace)) return app.namespace;
  const at = app.name.lastIndexOf('@');
  return at < 0 ? app.name : app.name.slice(0, at);
}

function restartsOf(apps, name) {
  return apps.filter((a) => a.name === name).reduce((sum, a) => sum + a.restarts, 0);
}

async function waitUp(names, before, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  const pending = new Set(names);
  const failed = {};
  const seen = {};
  while (pending.size) {
    const apps = await list();
    for (const name of [...pending]) {
      const mine = apps.filter((a) => a.name === name);
      if (!mine.length) { seen[name] = 'not started'; continue; }
      const restarts = restartsOf(apps, name);
      seen[name] = [...new Set(mine.map((a) => a.status))].sort().join(', ') + `, ${restarts} restart(s)`;
      if (restarts > (before[name] || 0) || mine.some((a) => a.status === 'errored' || a.status === 'stopped')) {
        failed[name] = seen[name];
        pending.delete(name);
      } else if (mine.every((a) => a.status === 'online')) {
        pending.delete(name);
      }
    }
    if (!pending.size) break;
    if (Date.now() >= deadline) {
      for (const name of pending) failed[name] = seen[name] || 'not started';
      break;
    }
    await sleep(100);
  }
  return failed;
}

async function deleteIds(ids) {
  // In parallel: each waits for its own process to exit (or kill_timeout).
  await Promise.all(ids.map((id) => call(pm2.delete, String(id)).catch(() => null)));
}

function appConfig(request, name) {
  // The ecosystem file is ours (written from the app host block); the overrides come from Python.
  const file = path.resolve(request.ecosystem);
  delete require.cache[file];
  const app = (require(file).apps || []).find((a) => a.name === name);
  if (!app) throw new Error(`${request.ecosystem} has no app ${name}`);
  return { apps: [Object.assign({}, app, request.overrides || {})] };
}

async function handover(request) {
  const wanted = request.wanted;
  const services = Object.keys(wanted);
  const deadline = Date.now() + (request.ready_timeout_ms || 30000);
  const before = await list();
  const ours = before.filter((a) => services.includes(serviceOf(a, services)));
  const actions = {};
  const toStart = [];
  const toReload = [];
  for (const service of services) {
    const name = wanted[service];
    const mine = ours.filter((a) => a.name === name);
    if (mine.length && mine.every((a) => a.status === 'online')) actions[service] = `${name} already runs`;
    else if (mine.length) { toReload.push(name); actions[service] = `restarted ${name}`; }
    else {
      toStart.push(name);
      const old = [...new Set(ours.filter((a) => serviceOf(a, services) === service).map((a) => a.name))];
      actions[service] = `${name} took over` + (old.length ? ` from ${old.join(', ')}` : '');
    }
  }
  const restartsBefore = {};
  for (const name of toReload) restartsBefore[name] = restartsOf(before, name);
  const launchErrors = {};
  const bounded = (promise, name) => Promise.race([
    promise.catch((err) => { launchErrors[name] = message(err); }),
    sleep(Math.max(0, deadline - Date.now()))]);
  await Promise.all([
    ...toStart.map((name) => bounded(call(pm2.start, appConfig(request, name)), name)),
    ...toReload.map((name) => bounded(call(pm2.reload, name, { updateEnv: true }), name)),
  ]);
  lap('started');
  const failed = await waitUp([...toStart, ...toReload], restartsBefore, Math.max(1000, deadline - Date.now()));
  for (const [name, error] of Object.entries(launchErrors)) {
    if (failed[name]) failed[name] += `; pm2: ${error}`;
  }
  if (Object.keys(failed).length) {
    // All or nothing: what this call started goes again (gracefully), the old apps keep serving.
    const now = await list();
    await deleteIds(now.filter((a) => toStart.includes(a.name)).map((a) => a.pm_id));
    return { ok: false, actions, failed, apps: await list() };
  }
  lap('online');
  const keep = new Set(Object.values(wanted));
  await deleteIds(ours.filter((a) => !keep.has(a.name)).map((a) => a.pm_id));
  lap('old_stopped');
  return { ok: true, actions, failed, apps: await list() };
}

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const request = JSON.parse(Buffer.concat(chunks).toString() || '{}');
  await call(pm2.connect);
  lap('connected');
  let result;
  try {
    if (request.op === 'list') result = { apps: await list() };
    else if (request.op === 'delete') { await deleteIds(request.ids || []); result = { ok: true }; }
    else if (request.op === 'save') { await call(pm2.dump, true); result = { ok: true }; }
    else if (request.op === 'handover') result = await handover(request);
    else throw new Error(`unknown op ${request.op}`);
  } finally {
    pm2.disconnect();
  }
  lap('done');
  process.stdout.write('RESULT ' + JSON.stringify(Object.assign(result, { timings })) + '\n', () => process.exit(0));
}

main().catch((err) => {
  process.stderr.write(`pm2_handover: ${message(err)}\n`);
  process.exit(1);
});
