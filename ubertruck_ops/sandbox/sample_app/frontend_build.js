// `npm run build` of the frontend: dist/ carrying the release version.
'use strict';
const fs = require('fs');
const path = require('path');
const pkg = require('./package.json');
const dist = path.join(__dirname, 'dist');
fs.rmSync(dist, { recursive: true, force: true });
fs.mkdirSync(path.join(dist, 'assets'), { recursive: true });
const version = 'v' + pkg.version;
fs.writeFileSync(path.join(dist, 'index.html'),
  `<!doctype html><html><head><meta name="version" content="${version}"><title>Ubertruck</title></head>` +
  `<body><div id="app" data-version="${version}">Ubertruck ${version}</div><script src="assets/app.js"></script></body></html>\n`);
fs.writeFileSync(path.join(dist, 'assets', 'app.js'), `window.UBERTRUCK_VERSION = ${JSON.stringify(version)};\n`);
fs.writeFileSync(path.join(dist, 'version.json'), JSON.stringify({ version }) + '\n');
console.log(`built frontend ${version}`);
