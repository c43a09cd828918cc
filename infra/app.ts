/**
 * The CDK app: `npx cdk synth` / `npx cdk deploy`. Settings come from context (`-c key=value`
 * or cdk.json), never from lookups, so synth needs neither credentials nor the network.
 */
import { App } from 'aws-cdk-lib';
import { ImageCacheStack } from './image-cache-stack.ts';

const app = new App();
const setting = (key: string): string | undefined => {
  const value: unknown = app.node.tryGetContext(key);
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
};
const optional = (key: string) => {
  const value = setting(key);
  return value === undefined ? {} : { [key]: value };
};

new ImageCacheStack(app, setting('stackName') ?? 'ImageCache', {
  description: 'image-cache: a team-wide container image cache (Docker Engine API)',
  ...optional('registries'),
  ...optional('maxBytes'),
  ...optional('maxAge'),
  ...optional('alarmEmail'),
  ...optional('registrySecretArn'),
});
