// `npm test`: the configuration rules of the compiled service (node's own test runner).
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { loadConfig } = require('../dist/config.js');

test('a service refuses to start without its database and JWT secret, naming them', () => {
  assert.throws(() => loadConfig({}), /missing configuration: DATABASE_URL, JWT_SECRET/);
});

test('a configured service reads its variables', () => {
  const config = loadConfig({ DATABASE_URL: 'postgresql://db/app', JWT_SECRET: 'x' });
  assert.strictEqual(config.apiVersion, 'v1');
  /*TEST_FAULT*/
});
