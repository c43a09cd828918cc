import { describe, expect, it } from 'vitest';
import { ImageCacheError, InvalidReferenceError } from '../lib/errors.ts';
import type { Reference } from '../lib/model.ts';
import {
  familiarRepository,
  familiarString,
  formatReference,
  isRegistryHost,
  looksLikeImageId,
  parsePullParams,
  parseReference,
  parseTag,
  repositoryName,
  withDefaultTag,
} from '../lib/reference.ts';

const HEX = 'dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c';
const DIGEST = `sha256:${HEX}`;
const ID_64 = '1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a';

describe('parseReference: valid names normalise like Docker', () => {
  // [input, registry, repository, tag, digest]
  const cases: [string, string, string, string?, string?][] = [
    ['nginx', 'docker.io', 'library/nginx'],
    ['nginx:1.25', 'docker.io', 'library/nginx', '1.25'],
    ['user/app', 'docker.io', 'user/app'],
    ['docker/docker', 'docker.io', 'docker/docker'],
    ['library/debian', 'docker.io', 'library/debian'],
    ['docker.io/debian', 'docker.io', 'library/debian'],
    ['docker.io/library/nginx', 'docker.io', 'library/nginx'],
    ['docker.io/library/foo/bar', 'docker.io', 'library/foo/bar'],
    ['index.docker.io/x', 'docker.io', 'library/x'],
    ['index.docker.io/docker/docker', 'docker.io', 'docker/docker'],
    ['ghcr.io/o/a:1.0', 'ghcr.io', 'o/a', '1.0'],
    ['localhost/a', 'localhost', 'a'],
    ['localhost:5000/a', 'localhost:5000', 'a'],
    ['localhost:5000/a/b:t', 'localhost:5000', 'a/b', 't'],
    ['127.0.0.1:5000/docker/docker', '127.0.0.1:5000', 'docker/docker'],
    ['192.168.0.1:8/debian', '192.168.0.1:8', 'debian'],
    // Without a slash an address is a Docker Hub name, and `:80` its tag.
    ['192.168.0.1', 'docker.io', 'library/192.168.0.1'],
    ['192.168.0.1:80', 'docker.io', 'library/192.168.0.1', '80'],
    ['[fc00::1]:5000/docker', '[fc00::1]:5000', 'docker'],
    ['[fc00:1:2:3:4:5:6:7]:5000/library/debian', '[fc00:1:2:3:4:5:6:7]:5000', 'library/debian'],
    ['[::1]/a', '[::1]', 'a'],
    ['test.com:8080/foo', 'test.com:8080', 'foo'],
    ['test-com:8080/foo', 'test-com:8080', 'foo'],
    ['test_com/foo', 'docker.io', 'test_com/foo'],
    ['xn--n3h.com:18080/foo', 'xn--n3h.com:18080', 'foo'],
    // Uppercase is allowed in the registry, so an uppercase first component is one.
    ['Docker/docker', 'Docker', 'docker'],
    ['FOO/bar', 'FOO', 'bar'],
    ['Example.COM/a', 'Example.COM', 'a'],
    ['foo_bar', 'docker.io', 'library/foo_bar'],
    ['foo__bar', 'docker.io', 'library/foo__bar'],
    ['foo--bar', 'docker.io', 'library/foo--bar'],
    ['docker---rules/docker', 'docker.io', 'docker---rules/docker'],
    ['dock__er/docker', 'docker.io', 'dock__er/docker'],
    ['d/docker', 'docker.io', 'd/docker'],
    ['ubuntu-12.04-base', 'docker.io', 'library/ubuntu-12.04-base'],
    [
      'thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev',
      'docker.io',
      'library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev',
    ],
    // With a host the 64-hex path is unambiguous.
    [`docker.io/${ID_64}`, 'docker.io', `library/${ID_64}`],
    // 63 hex characters are a name, not an ID.
    [HEX.slice(0, 63), 'docker.io', `library/${HEX.slice(0, 63)}`],
    ['nginx:Latest_1.a-b', 'docker.io', 'library/nginx', 'Latest_1.a-b'],
    [`nginx:${'t'.repeat(128)}`, 'docker.io', 'library/nginx', 't'.repeat(128)],
    [`name@${DIGEST}`, 'docker.io', 'library/name', undefined, DIGEST],
    [`name:tag@${DIGEST}`, 'docker.io', 'library/name', 'tag', DIGEST],
    [`ghcr.io/o/a:1@${DIGEST}`, 'ghcr.io', 'o/a', '1', DIGEST],
    // 255 characters of path is the limit (the registry does not count).
    [`${'a'.repeat(200)}/${'b'.repeat(54)}`, 'docker.io', `${'a'.repeat(200)}/${'b'.repeat(54)}`],
    [`example.com/${'a'.repeat(255)}`, 'example.com', 'a'.repeat(255)],
  ];
  it.each(cases)('%s', (input, registry, repository, tag, digest) => {
    const expected: Reference = { registry, repository };
    if (tag !== undefined) expected.tag = tag;
    if (digest !== undefined) expected.digest = digest as Reference['digest'];
    expect(parseReference(input)).toEqual(expected);
  });
});

describe('parseReference: invalid input fails with Docker wording', () => {
  const INVALID = 'invalid reference format';
  const cases: [string, string][] = [
    ['', INVALID],
    ['https://github.com/docker/docker', INVALID],
    ['-foo', INVALID],
    ['foo-', INVALID],
    ['-docker/docker', INVALID],
    ['docker-/docker', INVALID],
    ['-docker.io/docker/docker', INVALID],
    ['docker///docker', INVALID],
    ['docker.io/docker///docker', INVALID],
    ['____/____', INVALID],
    ['_docker/_docker', INVALID],
    ['dock..er/docker', INVALID],
    ['dock_.er/docker', INVALID],
    ['dock-.er/docker', INVALID],
    ['foo___bar', INVALID],
    ['docker/', INVALID],
    ['/docker', INVALID],
    ['nginx:', INVALID],
    ['nginx@', INVALID],
    ['nginx:-tag', INVALID],
    ['nginx:.tag', INVALID],
    ['nginx:a:b', INVALID],
    ['nginx:tag with space', INVALID],
    [`nginx:${'t'.repeat(129)}`, INVALID],
    ['[fc00::1]', INVALID],
    ['[fc00::1]:5000', INVALID],
    ['fc00::1:5000/debian', INVALID],
    ['[fe80::1%eth0]:5000/debian', INVALID],
    ['[2001:db8:3:4::192.0.2.33]:5000/debian', INVALID],
    ['localhost:port/a', INVALID],
    ['-host.com/a', INVALID],
    ['host-.com/a', INVALID],
    // A host-like first component that is no host would otherwise become a name without one.
    ['foo_bar.com/x', INVALID],
    ['nginx@sha256:abc', INVALID],
    [`nginx@sha256:${HEX}zz`, INVALID],
    ['Nginx', 'invalid reference format: repository name (library/Nginx) must be lowercase'],
    [
      'docker/Docker',
      'invalid reference format: repository name (docker/Docker) must be lowercase',
    ],
    ['ghcr.io/O/a:1', 'invalid reference format: repository name (O/a) must be lowercase'],
    ['localhost:5000/Foo', 'invalid reference format: repository name (Foo) must be lowercase'],
    [ID_64, `invalid repository name (${ID_64}), cannot specify 64-byte hexadecimal strings`],
    ['a'.repeat(250), 'repository name must not be more than 255 characters'],
    [`example.com/${'a'.repeat(256)}`, 'repository name must not be more than 255 characters'],
    [
      'this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker',
      'repository name must not be more than 255 characters',
    ],
    [`nginx@sha256:${HEX}00`, 'invalid checksum digest length'],
    [`nginx@sha256:${HEX.slice(0, 40)}`, 'invalid checksum digest length'],
    [`nginx@sha256:${HEX.toUpperCase()}`, 'invalid checksum digest format'],
    // Docker's lowercase check reads up to the first ':', so an uppercase algorithm trips it.
    [
      `nginx@SHA256:${HEX}`,
      'invalid reference format: repository name (library/nginx@SHA256) must be lowercase',
    ],
    [`nginx:1@SHA256:${HEX}`, 'invalid checksum digest format'],
    [`nginx@md5:${HEX.slice(0, 32)}`, 'unsupported digest algorithm'],
    [`nginx@sha512:${HEX}${HEX}`, 'unsupported digest algorithm'],
  ];
  it.each(cases)('%j', (input, message) => {
    let caught: unknown;
    try {
      parseReference(input);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(InvalidReferenceError);
    expect((caught as Error).message).toBe(message);
    expect((caught as InvalidReferenceError).status).toBe(400);
  });
});

describe('formatting', () => {
  // [input, repositoryName, familiarRepository, formatReference, familiarString]
  const cases: [string, string, string, string, string][] = [
    ['nginx', 'docker.io/library/nginx', 'nginx', 'docker.io/library/nginx', 'nginx'],
    ['nginx:1', 'docker.io/library/nginx', 'nginx', 'docker.io/library/nginx:1', 'nginx:1'],
    ['user/app:2', 'docker.io/user/app', 'user/app', 'docker.io/user/app:2', 'user/app:2'],
    [
      'index.docker.io/library/foo/bar',
      'docker.io/library/foo/bar',
      'library/foo/bar',
      'docker.io/library/foo/bar',
      'library/foo/bar',
    ],
    ['ghcr.io/o/a:1', 'ghcr.io/o/a', 'ghcr.io/o/a', 'ghcr.io/o/a:1', 'ghcr.io/o/a:1'],
    [
      'localhost/library/x',
      'localhost/library/x',
      'localhost/library/x',
      'localhost/library/x',
      'localhost/library/x',
    ],
    [
      `busybox:latest@${DIGEST}`,
      'docker.io/library/busybox',
      'busybox',
      `docker.io/library/busybox:latest@${DIGEST}`,
      `busybox:latest@${DIGEST}`,
    ],
    [`a@${DIGEST}`, 'docker.io/library/a', 'a', `docker.io/library/a@${DIGEST}`, `a@${DIGEST}`],
  ];
  it.each(cases)('%s', (input, name, familiarName, full, familiar) => {
    const ref = parseReference(input);
    expect(repositoryName(ref)).toBe(name);
    expect(familiarRepository(name)).toBe(familiarName);
    expect(formatReference(ref)).toBe(full);
    expect(familiarString(ref)).toBe(familiar);
    // The full form parses back to the same reference.
    expect(parseReference(full)).toEqual(ref);
  });
});

describe('withDefaultTag', () => {
  const cases: [string, string][] = [
    ['nginx', 'docker.io/library/nginx:latest'],
    ['nginx:1', 'docker.io/library/nginx:1'],
    [`nginx@${DIGEST}`, `docker.io/library/nginx@${DIGEST}`],
    [`nginx:1@${DIGEST}`, `docker.io/library/nginx:1@${DIGEST}`],
  ];
  it.each(cases)('%s -> %s', (input, expected) => {
    expect(formatReference(withDefaultTag(parseReference(input)))).toBe(expected);
  });
});

describe('parsePullParams (POST /images/create)', () => {
  const cases: [string, string | undefined, string][] = [
    // What the docker CLI sends.
    ['docker.io/library/x', '1', 'docker.io/library/x:1'],
    ['docker.io/library/x', DIGEST, `docker.io/library/x@${DIGEST}`],
    ['docker.io/library/x', '', 'docker.io/library/x:latest'],
    ['docker.io/library/x', undefined, 'docker.io/library/x:latest'],
    // `pull -a` sends a trailing colon.
    ['docker.io/library/x:', undefined, 'docker.io/library/x:latest'],
    // What curl users send.
    ['nginx:1.25', undefined, 'docker.io/library/nginx:1.25'],
    [`nginx@${DIGEST}`, undefined, `docker.io/library/nginx@${DIGEST}`],
    ['ghcr.io/o/a', '2', 'ghcr.io/o/a:2'],
    // The tag parameter wins over a tag in fromImage; a digest parameter replaces both.
    ['nginx:1.25', '1.26', 'docker.io/library/nginx:1.26'],
    [`nginx:1.25@${DIGEST}`, '1.26', `docker.io/library/nginx:1.26@${DIGEST}`],
    ['nginx:1.25', DIGEST, `docker.io/library/nginx@${DIGEST}`],
  ];
  it.each(cases)('%s + %s', (fromImage, tag, expected) => {
    expect(formatReference(parsePullParams(fromImage, tag))).toBe(expected);
  });

  const invalid: [string, string | undefined, string][] = [
    [
      'Nginx',
      undefined,
      'invalid reference format: repository name (library/Nginx) must be lowercase',
    ],
    ['nginx', '-bad', 'invalid tag format'],
    ['nginx', 'a/b', 'invalid tag format'],
    ['nginx', 'sha256:abc', 'invalid checksum digest length'],
    ['nginx', `md5:${HEX.slice(0, 32)}`, 'unsupported digest algorithm'],
    ['', undefined, 'invalid reference format'],
  ];
  it.each(invalid)('%j + %j fails', (fromImage, tag, message) => {
    expect(() => parsePullParams(fromImage, tag)).toThrow(
      expect.objectContaining({ code: 'INVALID_REFERENCE', message }),
    );
  });

  it('refuses scratch like moby', () => {
    const attempt = () => parsePullParams('scratch', 'latest');
    expect(attempt).toThrow(ImageCacheError);
    expect(attempt).toThrow("'scratch' is a reserved name");
  });
});

describe('parseTag', () => {
  it.each(['latest', '1.25.3-alpine', '_x', 'A', 't'.repeat(128)])('accepts %s', (tag) => {
    expect(parseTag(tag)).toBe(tag);
  });
  it.each(['', '-x', '.x', 'a:b', 'a/b', 't'.repeat(129), 'é'])('rejects %j', (tag) => {
    expect(() => parseTag(tag)).toThrow('invalid tag format');
  });
});

describe('isRegistryHost', () => {
  const cases: [string, boolean][] = [
    ['docker.io', true],
    ['localhost', true],
    ['localhost:5000', true],
    ['[::1]:5000', true],
    ['Registry', true],
    ['registry', false],
    ['foo_bar.com', false],
    ['host:port', false],
    ['', false],
  ];
  it.each(cases)('%s -> %s', (host, expected) => {
    expect(isRegistryHost(host)).toBe(expected);
  });
});

describe('looksLikeImageId', () => {
  const cases: [string, boolean][] = [
    [HEX.slice(0, 12), true],
    [HEX, true],
    [DIGEST, true],
    [`sha256:${HEX.slice(0, 12)}`, true],
    [HEX.slice(0, 11), false],
    [`${HEX}0`, false],
    [HEX.slice(0, 12).toUpperCase(), false],
    ['nginx', false],
    ['sha512:abcdefabcdef', false],
    [`${HEX.slice(0, 12)}:latest`, false],
  ];
  it.each(cases)('%s -> %s', (value, expected) => {
    expect(looksLikeImageId(value)).toBe(expected);
  });
});
