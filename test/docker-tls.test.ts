/**
 * The recipe in docs/aws.md for the docker CLI against a deployed stack: `DOCKER_HOST=tcp://host:443`
 * with DOCKER_TLS_VERIFY=1 and a `ca.pem` in the DOCKER_CONFIG folder holding the CA roots. The
 * docker CLI (28) refuses to start TLS without that file, even for a server whose certificate a
 * public root signs, so the recipe copies the system's root bundle there. Here a TLS proxy with a
 * certificate from a throwaway CA stands in for AWS's endpoint (an Amazon root signs theirs), in
 * front of the project's own server.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CacheServer, startCacheServer } from './support/cache-server.ts';
import { skipWhen } from './support/skips.ts';

const run = promisify(execFile);
const SYSTEM_ROOTS = '/etc/ssl/certs/ca-certificates.crt';

let dir: string;
let cache: CacheServer;
let proxy: Server;
let tlsHost: string;

/** A CA and a server certificate for 127.0.0.1 signed by it, made with the openssl CLI. */
async function makeCertificates(): Promise<void> {
  const openssl = (...args: string[]) => run('openssl', args, { cwd: dir });
  await openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=test-ca',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
  );
  await openssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    'server.key',
    '-out',
    'server.csr',
  );
  await writeFile(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  await openssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    'san.ext',
    '-out',
    'server.crt',
  );
}

/** TLS in front of the cache, streaming both ways, as the front door terminates it on AWS. */
async function startTlsProxy(target: CacheServer): Promise<Server> {
  const server = createServer(
    {
      key: await readFile(join(dir, 'server.key')),
      cert: await readFile(join(dir, 'server.crt')),
    },
    (req, res) => {
      const upstream = httpRequest(
        {
          host: '127.0.0.1',
          port: target.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/** The docker CLI with a config folder of its own; never throws, answers the exit code. */
async function dockerWithConfig(configDir: string, args: string[]) {
  try {
    const { stdout, stderr } = await run('docker', args, {
      timeout: 60_000,
      env: {
        PATH: process.env.PATH,
        HOME: dir,
        DOCKER_CONFIG: configDir,
        DOCKER_HOST: `tcp://${tlsHost}`,
        DOCKER_TLS_VERIFY: '1',
      },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? 1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

async function configFolder(name: string, caPem?: string): Promise<string> {
  const folder = join(dir, name);
  await mkdir(folder);
  await writeFile(join(folder, 'config.json'), '{}');
  if (caPem !== undefined) await writeFile(join(folder, 'ca.pem'), caPem);
  return folder;
}

describe(
  'the docker CLI over TLS with DOCKER_TLS_VERIFY=1',
  skipWhen(
    !existsSync(SYSTEM_ROOTS),
    `${SYSTEM_ROOTS} is missing: the docker CLI trusts only the system roots`,
  ),
  () => {
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'docker-tls-'));
      await makeCertificates();
      cache = await startCacheServer({ registries: '' });
      proxy = await startTlsProxy(cache);
      tlsHost = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    }, 60_000);

    afterAll(async () => {
      await new Promise((resolve) => proxy?.close(resolve));
      await cache?.close();
      await rm(dir, { recursive: true, force: true });
    });

    it('works with the root bundle as ca.pem in DOCKER_CONFIG (the docs/aws.md recipe)', async () => {
      // The system roots plus the test CA, as the system roots include the one AWS uses.
      const roots = await readFile(SYSTEM_ROOTS, 'utf8');
      const folder = await configFolder(
        'recipe',
        `${roots}\n${await readFile(join(dir, 'ca.crt'), 'utf8')}`,
      );
      const version = await dockerWithConfig(folder, [
        'version',
        '--format',
        '{{.Server.APIVersion}}',
      ]);
      expect(version.stderr).toBe('');
      expect(version.stdout.trim()).toBe('1.47');
      const ls = await dockerWithConfig(folder, ['image', 'ls']);
      expect(ls.code).toBe(0);
      expect(ls.stdout).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID/);
    });

    it('really verifies: roots that did not sign the certificate are refused', async () => {
      const folder = await configFolder('other-roots', await readFile(SYSTEM_ROOTS, 'utf8'));
      const version = await dockerWithConfig(folder, ['version']);
      expect(version.code).not.toBe(0);
      expect(version.stderr).toContain('certificate signed by unknown authority');
    });

    it('does not start TLS at all without a ca.pem, which is why the recipe copies one', async () => {
      const folder = await configFolder('no-ca');
      const version = await dockerWithConfig(folder, ['version']);
      expect(version.code).not.toBe(0);
      expect(version.stderr).toContain('ca.pem');
    });
  },
);
