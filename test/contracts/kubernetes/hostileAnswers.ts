import type { Fault } from './server.js';

/**
 * Answers an API server should never give, picked by `random` (seeded, so a failing run
 * replays): statuses it does not document with Retry-After values that do not read, bodies
 * that are not JSON, far larger than any Pod, JSON that is no Pod or another Pod, connections
 * cut mid-body. Retry-After asks for a second at most, so a client that honours it keeps going.
 */
export function hostileAnswer(random: () => number): Fault {
  const pick = <T>(values: readonly T[]): T => values[Math.floor(random() * values.length)]!;
  switch (pick(['status', 'badJson', 'hugeBody', 'otherPod', 'notPod', 'cut'] as const)) {
    case 'status':
      return {
        kind: 'status',
        status: pick([400, 409, 418, 429, 500, 502, 503, 504, 599]),
        retryAfter: pick([undefined, '0', '1', 'soon', '-1', '1.5', 'Wed, 21 Oct 2015 07:28:00 GMT', '\u00ff'.repeat(8)]),
      };
    case 'badJson':
      return { kind: 'badJson' };
    case 'hugeBody':
      return { kind: 'hugeBody', bytes: pick([3, 16, 64]) * 1024 * 1024 };
    case 'otherPod':
      return { kind: 'otherPod' };
    case 'notPod':
      return {
        kind: 'notPod',
        body: pick([
          [],
          null,
          'Pod',
          { kind: 'Status', status: 'Success' },
          { kind: 'Pod' },
          { kind: 'Pod', metadata: { name: 7 } },
          { kind: 'Pod', metadata: { name: 'sfu-0', namespace: 'gateway-media', annotations: { 'controller.kubernetes.io/pod-deletion-cost': 12 } } },
          { kind: 'Pod', metadata: { name: 'sfu-0', namespace: 'gateway-media', annotations: {} } },
          { ['__proto__']: { polluted: true }, kind: 'Pod' },
        ]),
      };
    case 'cut':
      return { kind: 'cut' };
  }
}
