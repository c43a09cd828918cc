/**
 * The small image pair the request-count benchmarks pull: `app` and `other`, both on the same
 * three-layer `base` (docker app with 2 own layers, OCI other with 1), pushed as
 * library/app:1 and library/other:1.
 */
import { type GeneratedImage, generateImage } from '../test/support/image-factory.ts';
import { pushImage } from '../test/support/push.ts';
import type { RegistryServer } from '../test/support/registry-server.ts';

export interface SharedBaseImages {
  base: GeneratedImage;
  app: GeneratedImage;
  other: GeneratedImage;
}

/** Generates the images from seeds `<seedPrefix>-base|app|other` and pushes app and other. */
export async function pushSharedBaseImages(
  registry: RegistryServer,
  seedPrefix: string,
): Promise<SharedBaseImages> {
  const base = await generateImage({ seed: `${seedPrefix}-base`, format: 'docker', layers: 3 });
  const app = await generateImage({
    seed: `${seedPrefix}-app`,
    format: 'docker',
    baseLayers: base.layers,
    layers: 2,
  });
  const other = await generateImage({
    seed: `${seedPrefix}-other`,
    format: 'oci',
    baseLayers: base.layers,
    layers: 1,
  });
  await pushImage({ url: registry.url, repository: 'library/app' }, app, { tags: ['1'] });
  await pushImage({ url: registry.url, repository: 'library/other' }, other, { tags: ['1'] });
  return { base, app, other };
}
