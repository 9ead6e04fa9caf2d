// `npm run build`: bake the release version into dist/main.js.
'use strict';
const fs = require('fs');
const path = require('path');
const pkg = require('./package.json');
const source = fs.readFileSync(path.join(__dirname, 'src', 'main.js'), 'utf8');
fs.mkdirSync(path.join(__dirname, 'dist'), { recursive: true });
fs.writeFileSync(path.join(__dirname, 'dist', 'main.js'), source.split('__VERSION__').join('v' + pkg.version));
console.log(`built ${pkg.name} v${pkg.version}`);
