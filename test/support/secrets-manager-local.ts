import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A stand-in for AWS Secrets Manager on 127.0.0.1, speaking what the SDK sends for
 * GetSecretValue: AWS JSON 1.1 (`POST /`, `X-Amz-Target: secretsmanager.GetSecretValue`,
 * `{"SecretId": name or ARN}`), answered with the fields the SDK reads, and failures shaped as
 * AWS shapes them (HTTP 400, `x-amzn-ErrorType`, `{"__type","Message"}`), so the SDK raises
 * the same named exceptions it raises against AWS. Signatures are not verified (the SDK signs
 * with whatever dummy credentials the test gives it), but each request's credential scope is
 * recorded so a test can see which region a client asked.
 */

const ACCOUNT = '123456789012';
const REGION = 'us-east-1';

interface StoredSecret {
  name: string;
  arn: string;
  versionId: string;
  value: { SecretString: string } | { SecretBinary: string };
  createdDate: number;
}

export interface RecordedCall {
  target: string;
  secretId: unknown;
  /** From the SigV4 credential scope: `<key>/<date>/<region>/secretsmanager/aws4_request`. */
  region: string | undefined;
}

export class SecretsManagerLocal {
  readonly calls: RecordedCall[] = [];
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #secrets = new Map<string, StoredSecret>();
  readonly #denied = new Set<string>();
  #endpoint: string | undefined;

  private constructor() {
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(500).end(String(error));
        else res.destroy();
      });
    });
    this.#server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  static async start(): Promise<SecretsManagerLocal> {
    const local = new SecretsManagerLocal();
    await new Promise<void>((resolve) => local.#server.listen(0, '127.0.0.1', resolve));
    const { port } = local.#server.address() as AddressInfo;
    local.#endpoint = `http://127.0.0.1:${port}`;
    return local;
  }

  /** For AWS_ENDPOINT_URL_SECRETS_MANAGER. */
  get endpoint(): string {
    if (!this.#endpoint) throw new Error('secrets manager stand-in not started');
    return this.#endpoint;
  }

  /** Creates the secret or stores a new current version of it; returns its ARN. */
  put(name: string, secretString: string): string {
    return this.#store(name, { SecretString: secretString });
  }

  /** A secret created with --secret-binary: no SecretString. */
  putBinary(name: string, bytes: Uint8Array): string {
    return this.#store(name, { SecretBinary: Buffer.from(bytes).toString('base64') });
  }

  /** The ARN a secret of this name gets (AWS adds a random 6-character suffix). */
  arnOf(name: string, region = REGION): string {
    return `arn:aws:secretsmanager:${region}:${ACCOUNT}:secret:${name}-AbCdEf`;
  }

  delete(name: string): void {
    this.#secrets.delete(name);
  }

  /** Answers AccessDeniedException for this secret, as AWS does for a role without a grant. */
  deny(name: string, denied = true): void {
    if (denied) this.#denied.add(name);
    else this.#denied.delete(name);
  }

  /** GetSecretValue calls so far. */
  reads(): number {
    return this.calls.filter((call) => call.target === 'secretsmanager.GetSecretValue').length;
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #store(name: string, value: StoredSecret['value']): string {
    const previous = this.#secrets.get(name);
    const arn = previous?.arn ?? this.arnOf(name);
    this.#secrets.set(name, {
      name,
      arn,
      versionId: randomUUID(),
      value,
      createdDate: previous?.createdDate ?? Date.now() / 1000,
    });
    return arn;
  }

  /** By name, or by ARN whatever its region: a test may name one in another region. */
  #find(secretId: string): StoredSecret | undefined {
    const byName = this.#secrets.get(secretId);
    if (byName) return byName;
    const name = /^arn:aws:secretsmanager:[^:]+:\d{12}:secret:(.+)-[A-Za-z0-9]{6}$/.exec(
      secretId,
    )?.[1];
    return name === undefined ? undefined : this.#secrets.get(name);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const target = String(req.headers['x-amz-target'] ?? '');
    const scope = /Credential=[^/]+\/\d{8}\/([^/]+)\/secretsmanager\//.exec(
      String(req.headers.authorization ?? ''),
    );
    let body: { SecretId?: unknown } = {};
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    } catch {
      return error(
        res,
        'SerializationException',
        'Start of structure or map found where not expected.',
      );
    }
    this.calls.push({ target, secretId: body.SecretId, region: scope?.[1] });

    if (req.method !== 'POST' || target !== 'secretsmanager.GetSecretValue') {
      return error(res, 'UnknownOperationException', '');
    }
    if (!scope) {
      return error(res, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
    }
    const secretId = typeof body.SecretId === 'string' ? body.SecretId : '';
    const secret = this.#find(secretId);
    if (secret && this.#denied.has(secret.name)) {
      return error(
        res,
        'AccessDeniedException',
        `User: arn:aws:sts::${ACCOUNT}:assumed-role/image-cache-api/image-cache is not authorized to perform: secretsmanager:GetSecretValue on resource: ${secretId} because no identity-based policy allows the secretsmanager:GetSecretValue action`,
      );
    }
    if (!secret) {
      return error(
        res,
        'ResourceNotFoundException',
        "Secrets Manager can't find the specified secret.",
      );
    }
    const json = JSON.stringify({
      ARN: secret.arn,
      Name: secret.name,
      VersionId: secret.versionId,
      ...secret.value,
      VersionStages: ['AWSCURRENT'],
      CreatedDate: secret.createdDate,
    });
    res.writeHead(200, {
      'content-type': 'application/x-amz-json-1.1',
      'x-amzn-requestid': randomUUID(),
    });
    res.end(json);
  }
}

function error(res: ServerResponse, type: string, message: string): void {
  res.writeHead(400, {
    'content-type': 'application/x-amz-json-1.1',
    'x-amzn-requestid': randomUUID(),
    'x-amzn-errortype': `${type}:http://internal.amazon.com/coral/com.amazonaws.secretsmanager/`,
  });
  res.end(JSON.stringify({ __type: type, Message: message }));
}
