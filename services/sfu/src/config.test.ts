import { describe, expect, it } from 'vitest';
import { readSfuConfig } from './config.js';

/** The announced address settings: each source, and each bad combination refused before anything starts. */
describe('the announced address configuration', () => {
  const base = { NATS_URL: 'tls://127.0.0.1:4222', NATS_NKEY_SEED_FILE: '/run/nats/seed', SFU_WORKERS: '1' };
  const read = (env: Record<string, string>) => readSfuConfig({ ...base, ...env }).announcedAddress;
  const refusal = (env: Record<string, string>) => {
    try {
      read(env);
    } catch (error) {
      return error as Error & { code?: string };
    }
    throw new Error('the configuration was taken');
  };

  it('is explicit by default, 127.0.0.1 unless set', () => {
    expect(read({})).toEqual({ source: 'explicit', address: '127.0.0.1' });
    expect(read({ SFU_ANNOUNCED_ADDRESS: '198.18.0.7' })).toEqual({ source: 'explicit', address: '198.18.0.7' });
  });

  it('reads each cloud with its documented metadata address, overridable', () => {
    expect(read({ SFU_ANNOUNCED_ADDRESS_SOURCE: 'aws' })).toEqual({ source: 'aws', metadataUrl: 'http://169.254.169.254', allowPrivate: false });
    expect(read({ SFU_ANNOUNCED_ADDRESS_SOURCE: 'gcp' })).toMatchObject({ source: 'gcp', metadataUrl: 'http://169.254.169.254' });
    expect(read({ SFU_ANNOUNCED_ADDRESS_SOURCE: 'azure', SFU_AZURE_METADATA_URL: 'http://127.0.0.1:8080/imds', SFU_ANNOUNCED_ADDRESS_ALLOW_PRIVATE: 'true' })).toEqual({
      source: 'azure',
      metadataUrl: 'http://127.0.0.1:8080/imds',
      allowPrivate: true,
    });
  });

  it('reads STUN servers as host:port, IPv6 in brackets', () => {
    expect(read({ SFU_ANNOUNCED_ADDRESS_SOURCE: 'stun', SFU_STUN_SERVERS: 'stun.l.google.com:19302, 198.51.100.4:3478,[2001:db8::4]:3478' })).toEqual({
      source: 'stun',
      servers: [
        { host: 'stun.l.google.com', port: 19302 },
        { host: '198.51.100.4', port: 3478 },
        { host: '2001:db8::4', port: 3478 },
      ],
      allowPrivate: false,
    });
  });

  it('refuses bad combinations and values with CONFIG_INVALID, never quoting a value', () => {
    expect(refusal({ SFU_ANNOUNCED_ADDRESS_SOURCE: 'aws', SFU_ANNOUNCED_ADDRESS: '198.18.0.7' }).message).toMatch(/SFU_ANNOUNCED_ADDRESS is for SFU_ANNOUNCED_ADDRESS_SOURCE=explicit only/);
    expect(refusal({ SFU_ANNOUNCED_ADDRESS_SOURCE: 'stun' }).message).toMatch(/SFU_STUN_SERVERS is required/);
    expect(refusal({ SFU_ANNOUNCED_ADDRESS_SOURCE: 'digitalocean' }).message).toMatch(/SFU_ANNOUNCED_ADDRESS_SOURCE/);
    for (const servers of ['stun.example.com', 'stun.example.com:0', 'stun.example.com:70000', '2001:db8::4:3478', 'a b:3478', 'stun.example.com:3478,', Array(9).fill('s:1').join(',')]) {
      const error = refusal({ SFU_ANNOUNCED_ADDRESS_SOURCE: 'stun', SFU_STUN_SERVERS: servers });
      expect([servers, error.code]).toEqual([servers, 'CONFIG_INVALID']);
      expect(error.message).toMatch(/SFU_STUN_SERVERS/);
    }
    for (const url of ['ftp://metadata', 'http://user:hunter2@metadata', 'http://metadata/?token=hunter2', 'metadata:80']) {
      const error = refusal({ SFU_ANNOUNCED_ADDRESS_SOURCE: 'gcp', SFU_GCP_METADATA_URL: url });
      expect(error.message).toMatch(/SFU_GCP_METADATA_URL/);
      expect(error.message).not.toContain('hunter2');
    }
  });
});
