/**
 * The little reference handling a thin client needs: split `name[:tag|@digest]` for the pull
 * query (the server parses and normalises properly), spell a name in full for the last line of
 * `pull`, and in familiar form (`nginx`, `bitnami/redis`) for tables, as the docker CLI does.
 */
import { UsageError } from './args.ts';

export interface SplitReference {
  /** Everything before the tag or digest, as typed. */
  name: string;
  tag?: string;
  digest?: string;
}

export function splitReference(reference: string): SplitReference {
  const at = reference.indexOf('@');
  if (at !== -1) {
    const name = reference.slice(0, at);
    const digest = reference.slice(at + 1);
    if (!name || !digest) throw new UsageError(`invalid reference format: ${reference}`);
    // `name:tag@digest`: the digest wins, as with docker.
    return { name: splitReference(name).name, digest };
  }
  const slash = reference.lastIndexOf('/');
  const colon = reference.lastIndexOf(':');
  if (colon > slash) {
    const name = reference.slice(0, colon);
    const tag = reference.slice(colon + 1);
    if (!name || !tag) throw new UsageError(`invalid reference format: ${reference}`);
    return { name, tag };
  }
  if (!reference) throw new UsageError('invalid reference format: empty name');
  return { name: reference };
}

function hasDomain(name: string): boolean {
  const slash = name.indexOf('/');
  if (slash === -1) return false;
  const first = name.slice(0, slash);
  return (
    first.includes('.') ||
    first.includes(':') ||
    first === 'localhost' ||
    first !== first.toLowerCase()
  );
}

/** `nginx` -> `docker.io/library/nginx`; names with a registry host stay as they are. */
export function fullName(name: string): string {
  let n = name.replace(/^index\.docker\.io\//, 'docker.io/');
  if (!hasDomain(n)) n = `docker.io/${n}`;
  if (n.startsWith('docker.io/') && !n.slice('docker.io/'.length).includes('/')) {
    n = `docker.io/library/${n.slice('docker.io/'.length)}`;
  }
  return n;
}

/** `docker.io/library/nginx` -> `nginx`, `docker.io/a/b` -> `a/b`; other hosts unchanged. */
export function familiarName(name: string): string {
  const full = fullName(name);
  if (full.startsWith('docker.io/library/') && !full.slice(18).includes('/')) return full.slice(18);
  if (full.startsWith('docker.io/')) return full.slice('docker.io/'.length);
  return full;
}

/** The full reference string docker prints after a pull: `docker.io/library/nginx:latest`. */
export function fullReference(ref: SplitReference): string {
  const name = fullName(ref.name);
  if (ref.digest) return `${name}@${ref.digest}`;
  return `${name}:${ref.tag ?? 'latest'}`;
}
