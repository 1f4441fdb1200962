import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../runtime/config.js';
import { ErrorCode } from '../errors.js';
import { grpcTlsShape, readGrpcTls } from './tls.js';

const dir = mkdtempSync(path.join(tmpdir(), 'gateway-tls-config-'));
const file = (name: string) => {
  const at = path.join(dir, name);
  writeFileSync(at, `${name} contents`);
  return at;
};
const read = (env: Record<string, string>) => readGrpcTls(loadConfig(grpcTlsShape, env));

describe('gRPC TLS configuration', () => {
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is plaintext when no file is given', () => {
    expect(read({})).toBeUndefined();
  });

  it('reads the three files', () => {
    const tls = read({ GRPC_TLS_CA_FILE: file('ca'), GRPC_TLS_CERT_FILE: file('cert'), GRPC_TLS_KEY_FILE: file('key') });
    expect(tls?.ca.toString()).toBe('ca contents');
    expect(tls?.cert.toString()).toBe('cert contents');
    expect(tls?.key.toString()).toBe('key contents');
  });

  it('names the missing variables when only some files are given', () => {
    expect(() => read({ GRPC_TLS_CA_FILE: file('ca') })).toThrow(expect.objectContaining({ code: ErrorCode.CONFIG_INVALID, message: expect.stringMatching(/GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE/) }));
  });

  it('names the variable whose file cannot be read', () => {
    const env = { GRPC_TLS_CA_FILE: file('ca'), GRPC_TLS_CERT_FILE: path.join(dir, 'missing.crt'), GRPC_TLS_KEY_FILE: file('key') };
    expect(() => read(env)).toThrow(expect.objectContaining({ code: ErrorCode.CONFIG_INVALID, message: expect.stringMatching(/GRPC_TLS_CERT_FILE=.*missing\.crt/) }));
  });
});
