// `npm run build` (and `prepare`): tsc, incrementally, then the CLI made executable.
//
// Incremental (tsconfig: dist/.tsbuildinfo) so that a build with nothing changed writes no file:
// npx runs `prepare` in the checkout on its first use, and a rebuild in place would rewrite
// dist/ under an lb already running from it. tsc trusts its build info and does not notice
// outputs deleted since, so when one is missing the build info goes and everything is emitted.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';

const root = join(import.meta.dirname, '..');
const sources = (dir) => readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
  e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [join(dir, e.name)] : []);
const missing = sources(join(root, 'src')).some((f) => !existsSync(join(root, 'dist', relative(join(root, 'src'), f)).replace(/\.ts$/, '.js')));
if (missing) rmSync(join(root, 'dist', '.tsbuildinfo'), { force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });
chmodSync(join(root, 'dist', 'cli', 'main.js'), 0o755);
