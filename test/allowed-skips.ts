/**
 * The reasons a test may be skipped for without failing the run (see docs/testing.md). Empty:
 * CI and the team's machines run as root with dockerd, containerd, skopeo and DynamoDB Local,
 * so every test runs. A machine that cannot run some (not root, no docker.io) lists the
 * reasons skipWhen gives there, in a change it does not commit.
 */
export const ALLOWED_SKIPS: readonly string[] = [];
