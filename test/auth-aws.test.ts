/**
 * Access control on the AWS shape: the `api` Lambda handler checks tokens whether or not
 * IMAGE_CACHE_REQUIRE_AUTH is set, and `image-cache token create --backend aws` writes a token
 * it accepts. DynamoDB Local and fauxqs stand in for AWS.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  awsEmulators,
  freshResourceNames,
  openAwsAdapters,
  stopAwsEmulators,
} from './support/aws-emulators.ts';
import { captureCli } from './support/cli-capture.ts';
import { apiEvent as event, lambdaContext } from './support/lambda-http-event.ts';

afterAll(stopAwsEmulators);

describe('the api handler on AWS', () => {
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    const emulators = await awsEmulators();
    const names = freshResourceNames();
    const adapters = openAwsAdapters(emulators, names);
    try {
      await adapters.catalog.createTable();
    } finally {
      adapters.close();
    }
    // The SDK clients read endpoints and credentials from the process, as in a Lambda.
    Object.assign(process.env, emulators.env);
    env = {
      ...process.env,
      IMAGE_CACHE_BACKEND: 'aws',
      IMAGE_CACHE_BUCKET: names.bucket,
      IMAGE_CACHE_TABLE: names.table,
      IMAGE_CACHE_REGISTRIES: '',
      IMAGE_CACHE_REQUIRE_AUTH: '0',
    };
    Object.assign(process.env, env);
  }, 120_000);

  it('wants a token even with IMAGE_CACHE_REQUIRE_AUTH=0, and takes one made by `token create --backend aws`', async () => {
    const { handler } = await import('../functions/api.ts');
    expect((await handler(event('GET', '/_ping'), lambdaContext(30_000))).statusCode).toBe(200);

    const refused = await handler(event('GET', '/images/json'), lambdaContext(30_000));
    expect(refused.statusCode).toBe(401);
    expect(refused.headers?.['WWW-Authenticate']).toBe('Bearer realm="image-cache"');
    expect(JSON.parse(refused.body ?? '')).toEqual({
      message: expect.stringMatching(/authentication required/),
    });

    const cli = captureCli(env);
    expect(await cli.run('token', 'create', '--scope', 'read', '--backend', 'aws')).toBe(0);
    const token = cli.out().trim();

    const listed = await handler(
      event('GET', '/images/json', { authorization: `Bearer ${token}` }),
      lambdaContext(30_000),
    );
    expect(listed.statusCode).toBe(200);
    expect(JSON.parse(listed.body ?? '')).toEqual([]);

    const forbidden = await handler(
      event('POST', '/cache/gc', { authorization: `Bearer ${token}` }),
      lambdaContext(30_000),
    );
    expect(forbidden.statusCode).toBe(403);
    expect(JSON.parse(forbidden.body ?? '').message).toMatch(/needs scope admin/);
  }, 120_000);
});
