import { DEFAULT_LOAD_LIMITS, type LoadLimits } from '../load/tar-reader.ts';
import { ConfigError } from './values.ts';

const LIMIT_VARS = {
  maxBodyBytes: 'IMAGE_CACHE_MAX_LOAD_BYTES',
  maxExpandedBytes: 'IMAGE_CACHE_MAX_LOAD_EXPANDED_BYTES',
  maxRatio: 'IMAGE_CACHE_MAX_LOAD_RATIO',
} as const;

/**
 * IMAGE_CACHE_MAX_LOAD_BYTES (body, default 64 GiB; the expanded cap follows it unless
 * IMAGE_CACHE_MAX_LOAD_EXPANDED_BYTES is set) and IMAGE_CACHE_MAX_LOAD_RATIO (default 200).
 * Whole numbers only: these guard a server against a hostile body, so a typo must not become
 * "no limit".
 */
export function parseLoadLimits(env: NodeJS.ProcessEnv): LoadLimits {
  const number = (name: string, fallback: number): number => {
    const raw = env[name]?.trim();
    if (!raw) return fallback;
    const value = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value <= 0) {
      throw new ConfigError(`${name} must be a positive whole number, got ${JSON.stringify(raw)}`);
    }
    return value;
  };
  const maxBodyBytes = number(LIMIT_VARS.maxBodyBytes, DEFAULT_LOAD_LIMITS.maxBodyBytes);
  const explicitExpanded = env[LIMIT_VARS.maxExpandedBytes]?.trim();
  return {
    ...DEFAULT_LOAD_LIMITS,
    maxBodyBytes,
    maxExpandedBytes: explicitExpanded
      ? number(LIMIT_VARS.maxExpandedBytes, DEFAULT_LOAD_LIMITS.maxExpandedBytes)
      : Math.max(maxBodyBytes, DEFAULT_LOAD_LIMITS.maxExpandedBytes),
    maxRatio: number(LIMIT_VARS.maxRatio, DEFAULT_LOAD_LIMITS.maxRatio),
  };
}
