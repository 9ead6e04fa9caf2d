// `npm run migrate:production`: apply migrations/*.sql in name order, each in one
// transaction together with its row in schema_migrations. Uses psql (no npm
// dependencies); the connection comes from DATABASE_URL, handed to psql as PG*
// variables so the password never appears in a command line.
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const url = new URL(process.env.DATABASE_URL || '');
const env = Object.assign({}, process.env, {
  PGHOST: decodeURIComponent(url.hostname), PGPORT: url.port || '5432',
  PGUSER: decodeURIComponent(url.username), PGPASSWORD: decodeURIComponent(url.password),
  PGDATABASE: decodeURIComponent(url.pathname.slice(1)),
});
delete env.DATABASE_URL;
const psql = (sql) => execFileSync('psql', ['-X', '-q', '-t', '-A', '-v', 'ON_ERROR_STOP=1'],
  { input: sql, env, encoding: 'utf8', stdio: ['pipe', 'pipe', 'inherit'] });

psql('CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());');
const applied = new Set(psql('SELECT name FROM schema_migrations;').split('\n').filter(Boolean));
const dir = path.join(__dirname, 'migrations');
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.sql')).sort();
for (const file of files) {
  if (applied.has(file)) continue;
  const body = fs.readFileSync(path.join(dir, file), 'utf8');
  try {
    psql(`BEGIN;\n${body}\n;INSERT INTO schema_migrations (name) VALUES ('${file.replace(/'/g, "''")}');\nCOMMIT;\n`);
  } catch (err) {
    console.error(`migration ${file} failed`);
    process.exit(1);
  }
  console.log(`applied ${file}`);
}
