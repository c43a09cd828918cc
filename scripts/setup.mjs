#!/usr/bin/env node
// Runs before `npm start` and `npm test`, before node_modules may exist: Node builtins only.
// Without flags it makes sure dependencies are installed and match package-lock.json.
// With --test it also makes sure the tools the tests drive are installed: the CNCF
// distribution registry, skopeo, dockerd and chromium (Debian packages), installing them when root.
// When everything is in place it only stats a few files.
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const wantTestTools = process.argv.includes('--test');

const TOOLS = [
  {
    binary: '/usr/bin/docker-registry',
    pkg: 'docker-registry',
    usedBy: 'registry interop tests (pulling from a real distribution registry)',
  },
  {
    binary: '/usr/bin/skopeo',
    pkg: 'skopeo',
    usedBy: 'tests that read saved tarballs and check pushed images with skopeo',
  },
  {
    binary: '/usr/bin/java',
    pkg: 'default-jre-headless',
    usedBy: 'DynamoDB Local (the DynamoCatalog conformance suite)',
  },
  {
    binary: '/usr/sbin/dockerd',
    pkg: 'docker.io',
    usedBy: 'docker CLI / dockerd compatibility tests (docker load, docker save, docker image ls)',
  },
  {
    binary: '/usr/bin/chromium',
    pkg: 'chromium',
    usedBy: 'the dashboard tests (headless Chromium driven by playwright-core)',
  },
];

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

function run(command, args, env = process.env) {
  console.error(`setup: ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env });
  if (result.error) throw result.error;
  if (result.status !== 0) {
    console.error(`setup: ${command} ${args.join(' ')} failed with exit code ${result.status}`);
    process.exit(result.status ?? 1);
  }
}

function ensureDependencies() {
  const lock = mtime(join(root, 'package-lock.json'));
  // npm writes node_modules/.package-lock.json at the end of every install.
  const installed = mtime(join(root, 'node_modules', '.package-lock.json'));
  if (installed !== undefined && (lock === undefined || lock <= installed)) return;
  const why = installed === undefined ? 'node_modules is missing' : 'package-lock.json changed';
  console.error(`setup: ${why}; installing dependencies`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  run(npm, lock === undefined ? ['install'] : ['ci']);
}

function ensureTestTools() {
  const missing = TOOLS.filter((tool) => !existsSync(tool.binary));
  if (missing.length === 0) return;
  const packages = missing.map((tool) => tool.pkg);
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const hasApt = existsSync('/usr/bin/apt-get');
  if (isRoot && hasApt) {
    console.error(`setup: installing test tools: ${packages.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    run('apt-get', ['update'], env);
    run('apt-get', ['install', '-y', ...packages], env);
    const still = TOOLS.filter((tool) => !existsSync(tool.binary));
    if (still.length > 0) {
      console.error(`setup: still missing after install: ${still.map((t) => t.binary).join(', ')}`);
      process.exit(1);
    }
    return;
  }
  const lines = [
    'setup: some tools the tests drive are not installed; these tests will fail or be skipped:',
    ...missing.map((tool) => `  - ${tool.binary} (package ${tool.pkg}): ${tool.usedBy}`),
    hasApt
      ? `Install them with: sudo apt-get update && sudo apt-get install -y ${packages.join(' ')}`
      : `Install the equivalents of the Debian packages ${packages.join(', ')} for your system.`,
    'Then run `npm test` again.',
  ];
  console.error(lines.join('\n'));
}

ensureDependencies();
if (wantTestTools) ensureTestTools();
