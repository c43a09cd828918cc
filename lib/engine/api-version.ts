import { InvalidArgumentError } from '../errors.ts';

/** The Engine API version this server speaks: what Docker 27.x answers (docker 28 CLIs use it). */
export const API_VERSION = '1.47';
export const MIN_API_VERSION = '1.24';

const VERSIONED = /^\/v(\d+\.\d+)(\/.*)$/;

/** Splits `/v1.47/images/json` into the version and the route path. */
export function splitVersion(path: string): { version?: string; path: string } {
  const match = VERSIONED.exec(path);
  if (!match) return { path };
  const version = match[1]!;
  if (compareVersions(version, API_VERSION) > 0) {
    throw new InvalidArgumentError(
      `client version ${version} is too new. Maximum supported API version is ${API_VERSION}`,
    );
  }
  if (compareVersions(version, MIN_API_VERSION) < 0) {
    throw new InvalidArgumentError(
      `client version ${version} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`,
    );
  }
  return { version, path: match[2]! };
}

function compareVersions(a: string, b: string): number {
  const [aMajor, aMinor] = a.split('.').map(Number) as [number, number];
  const [bMajor, bMinor] = b.split('.').map(Number) as [number, number];
  return aMajor - bMajor || aMinor - bMinor;
}
