import { describe, expect, it } from 'vitest';
import { assertPublicHost } from './network.js';

const strict = { allowPrivate: false };
const refused = (host: string) => assertPublicHost(host, strict).then(() => 'allowed', (error: { code: string }) => error.code);

describe('destination hosts', () => {
  it('refuses loopback, private, link-local (cloud metadata) and other non-public addresses', async () => {
    for (const host of ['127.0.0.1', 'localhost', '10.1.2.3', '172.20.0.5', '192.168.1.10', '169.254.169.254', '100.64.0.1', '0.0.0.0', '[::1]', '::ffff:127.0.0.1', 'fd00::1', 'fe80::1', '224.0.0.1']) {
      expect(await refused(host), host).toBe('PERMISSION_DENIED');
    }
  });

  it('lets public addresses through, and everything when private destinations are allowed', async () => {
    expect(await refused('93.184.216.34')).toBe('allowed');
    expect(await refused('2606:2800:220:1:248:1893:25c8:1946')).toBe('allowed');
    await expect(assertPublicHost('127.0.0.1', { allowPrivate: true })).resolves.toBeUndefined();
  });

  it('says so when a name does not resolve', async () => {
    expect(await refused('no-such-host.invalid')).toBe('DESTINATION_FAILED');
  });
});
