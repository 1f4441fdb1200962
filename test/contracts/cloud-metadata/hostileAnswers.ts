import type { Fault } from './server.js';

/**
 * Answers a metadata service should never give, picked by `random` (seeded, so a failing run
 * replays): statuses with Retry-After values that do not read, bodies of random bytes, private,
 * loopback, link-local and reserved addresses, several addresses, names, ranges, huge bodies,
 * connections cut mid-body.
 */
export function hostileAnswer(random: () => number): Fault {
  const pick = <T>(values: readonly T[]): T => values[Math.floor(random() * values.length)]!;
  switch (pick(['status', 'bytes', 'address', 'hugeBody', 'cut'] as const)) {
    case 'status':
      return { kind: 'status', status: pick([400, 401, 403, 418, 429, 500, 502, 503, 599]), retryAfter: pick([undefined, '0', '1', 'soon', '-1', '1.5']) };
    case 'bytes':
      return { kind: 'body', body: Buffer.from(Array.from({ length: Math.floor(random() * 200) }, () => Math.floor(random() * 256))) };
    case 'address':
      return {
        kind: 'body',
        body: Buffer.from(
          pick([
            '10.0.12.7',
            '172.16.0.9',
            '192.168.1.20',
            '127.0.0.1',
            '169.254.169.254',
            '100.64.0.10',
            '0.0.0.0',
            '255.255.255.255',
            '224.0.0.1',
            '203.0.113.9',
            'fe80::1',
            'fd12:3456::1',
            '::1',
            '52.95.110.1,52.95.110.2',
            '52.95.110.1 52.95.110.2',
            '52.95.110.0/24',
            'ec2-52-95-110-1.compute-1.amazonaws.com',
            '052.095.110.001',
            '52.95.110',
            '<html>Proxy error</html>',
            '{"publicIpAddress":"52.95.110.1"}',
          ]),
        ),
      };
    case 'hugeBody':
      return { kind: 'hugeBody', bytes: pick([2, 64, 1024]) * 1024 };
    case 'cut':
      return { kind: 'cut' };
  }
}
