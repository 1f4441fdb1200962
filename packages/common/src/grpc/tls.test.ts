import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import * as grpc from '@grpc/grpc-js';
import { createTestPki, SecretVolume, type TestPki } from '@gateway/testing';
import { loadConfig } from '../runtime/config.js';
import { ErrorCode, type GatewayError } from '../errors.js';
import { callUnary, startGrpcServer, stopGrpcServer, unaryHandlers, type GrpcAccess } from './calls.js';
import { grpcClientCredentials, grpcPeerIdentity, grpcServerCredentials, GrpcTlsSource, grpcTlsShape, readGrpcTls, type GrpcTlsContents } from './tls.js';

const read = (env: Record<string, string>) => readGrpcTls(loadConfig(grpcTlsShape, env));
const contentsOf = (pki: TestPki, service: 'sfu' | 'signaling') => ({
  ca: readFileSync(pki.caFile),
  cert: readFileSync(pki.services[service].certFile),
  key: readFileSync(pki.services[service].keyFile),
});

let oldPki: TestPki;
let newPki: TestPki;
beforeAll(() => {
  oldPki = createTestPki();
  newPki = createTestPki();
});
afterAll(() => {
  for (const pki of [oldPki, newPki]) if (pki) rmSync(pki.dir, { recursive: true, force: true });
});

describe('gRPC TLS configuration', () => {
  it('is plaintext when no file is given', () => {
    expect(read({})).toBeUndefined();
  });

  it('reads and checks the three files', () => {
    const tls = read({ GRPC_TLS_CA_FILE: oldPki.caFile, GRPC_TLS_CERT_FILE: oldPki.services.sfu.certFile, GRPC_TLS_KEY_FILE: oldPki.services.sfu.keyFile });
    expect(tls?.initial.cert.equals(readFileSync(oldPki.services.sfu.certFile))).toBe(true);
    expect(tls?.certFile).toBe(oldPki.services.sfu.certFile);
  });

  it('names the missing variables when only some files are given', () => {
    expect(() => read({ GRPC_TLS_CA_FILE: oldPki.caFile })).toThrow(
      expect.objectContaining({ code: ErrorCode.CONFIG_INVALID, message: expect.stringMatching(/GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE/) }),
    );
  });

  it('names the variable whose file cannot be read', () => {
    const env = { GRPC_TLS_CA_FILE: oldPki.caFile, GRPC_TLS_CERT_FILE: path.join(oldPki.dir, 'missing.crt'), GRPC_TLS_KEY_FILE: oldPki.services.sfu.keyFile };
    expect(() => read(env)).toThrow(expect.objectContaining({ code: ErrorCode.CONFIG_INVALID, message: expect.stringMatching(/GRPC_TLS_CERT_FILE=.*missing\.crt/) }));
  });

  it('refuses a key that is not the certificate’s, without quoting either', () => {
    const env = { GRPC_TLS_CA_FILE: oldPki.caFile, GRPC_TLS_CERT_FILE: oldPki.services.sfu.certFile, GRPC_TLS_KEY_FILE: oldPki.services.signaling.keyFile };
    const error = (() => {
      try {
        read(env);
      } catch (e) {
        return e as GatewayError;
      }
    })();
    expect(error).toMatchObject({ code: ErrorCode.CONFIG_INVALID, message: expect.stringMatching(/not the certificate's/) });
    expect(error?.message).not.toContain('PRIVATE KEY');
  });
});

/** A one-method JSON service, so the test needs no generated code. */
const json = {
  requestSerialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
  requestDeserialize: (bytes: Buffer) => JSON.parse(bytes.toString()) as unknown,
  responseSerialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
  responseDeserialize: (bytes: Buffer) => JSON.parse(bytes.toString()) as unknown,
  requestStream: false,
  responseStream: false,
} as const;
const definition = { whoAmI: { path: '/test.v1.Test/WhoAmI', originalName: 'whoAmI', ...json } } as unknown as grpc.ServiceDefinition;
const TestClient = grpc.makeGenericClientConstructor(definition, 'Test');
type Client = InstanceType<typeof TestClient> & { whoAmI: Parameters<typeof callUnary>[1] };

/**
 * Certificates rotated to a new CA while a server and a client run, the files swapped as the
 * kubelet swaps a mounted Secret: the CA bundles with both CAs first, then the leaf certificates.
 * New connections use the new files without anything restarting; a file that is no good is
 * refused and the contents in use stay.
 */
describe('gRPC certificates taken up again when their files change', () => {
  const logged: Array<Record<string, unknown>> = [];
  const log = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        logged.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    }),
  );
  let serverVolume: SecretVolume;
  let clientVolume: SecretVolume;
  let serverTls: GrpcTlsSource;
  let clientTls: GrpcTlsSource;
  let server: grpc.Server;
  let port: number;
  const clients: grpc.Client[] = [];

  const volumeOf = (pki: TestPki, service: 'sfu' | 'signaling') => {
    const c = contentsOf(pki, service);
    return SecretVolume.create({ 'ca.crt': c.ca, 'tls.crt': c.cert, 'tls.key': c.key });
  };
  const sourceOf = (volume: SecretVolume) =>
    new GrpcTlsSource(read({ GRPC_TLS_CA_FILE: volume.file('ca.crt'), GRPC_TLS_CERT_FILE: volume.file('tls.crt'), GRPC_TLS_KEY_FILE: volume.file('tls.key') })!, log, { intervalMs: 60_000 });
  /** A call on a connection of its own (no subchannel shared with an earlier client). */
  const callWith = (tls: GrpcTlsSource | GrpcTlsContents) => {
    const { credentials, options } = grpcClientCredentials(tls, 'sfu');
    const client = new TestClient(`127.0.0.1:${port}`, credentials, { ...options, 'grpc.use_local_subchannel_pool': 1 }) as Client;
    clients.push(client);
    return callUnary(client, client.whoAmI, {}, 3_000).then(
      (answer) => answer as { caller: string },
      (error: GatewayError) => error.code,
    );
  };

  beforeAll(async () => {
    serverVolume = volumeOf(oldPki, 'sfu');
    clientVolume = volumeOf(oldPki, 'signaling');
    serverTls = sourceOf(serverVolume);
    clientTls = sourceOf(clientVolume);
    const handlers = { whoAmI: async (_request: unknown, call: grpc.ServerUnaryCall<unknown, unknown>) => ({ caller: grpcPeerIdentity(call.getAuthContext()?.sslPeerCertificate) ?? 'nobody' }) };
    const access = { whoAmI: ['signaling'] } as unknown as GrpcAccess<typeof handlers>;
    ({ server, port } = await startGrpcServer((s) => s.addService(definition, unaryHandlers(handlers, { access, requireIdentity: true, log })), '127.0.0.1', 0, grpcServerCredentials(serverTls)));
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    if (server) await stopGrpcServer(server);
    serverTls?.close();
    clientTls?.close();
    serverVolume?.remove();
    clientVolume?.remove();
  });

  it('moves to a new CA without a restart: new handshakes use the new files, an untrusted CA stays refused, a broken file changes nothing', async () => {
    const oldSignaling = contentsOf(oldPki, 'signaling');
    const newSignaling = contentsOf(newPki, 'signaling');
    expect(await callWith(clientTls)).toEqual({ caller: 'signaling' });
    // A client of the new CA only is refused before the rotation: the server trusts it not yet.
    expect(await callWith(newSignaling)).toBe('UNAVAILABLE');

    // 1. Both CAs in every bundle.
    const bundle = Buffer.concat([oldSignaling.ca, newSignaling.ca]);
    serverVolume.update({ 'ca.crt': bundle });
    clientVolume.update({ 'ca.crt': bundle });
    await Promise.all([serverTls.check(), clientTls.check()]);
    // The server trusts both now; it still presents its old certificate.
    expect(await callWith({ ...newSignaling, ca: oldSignaling.ca })).toEqual({ caller: 'signaling' });

    // 2. The leaf certificates of the new CA.
    const newSfu = contentsOf(newPki, 'sfu');
    serverVolume.update({ 'tls.crt': newSfu.cert, 'tls.key': newSfu.key });
    clientVolume.update({ 'tls.crt': newSignaling.cert, 'tls.key': newSignaling.key });
    await Promise.all([serverTls.check(), clientTls.check()]);
    // A client that knows only the new CA reaches the server: it presents the new certificate.
    expect(await callWith(newSignaling)).toEqual({ caller: 'signaling' });
    // One that knows only the old CA no longer does.
    expect(await callWith(oldSignaling)).toBe('UNAVAILABLE');
    // The watching client presents its new certificate: a server of the new CA only takes it.
    const strictVolume = volumeOf(newPki, 'sfu');
    const strict = sourceOf(strictVolume);
    const { server: strictServer, port: strictPort } = await startGrpcServer(
      (s) => s.addService(definition, { whoAmI: (_call: unknown, done: grpc.sendUnaryData<unknown>) => done(null, { caller: 'strict' }) }),
      '127.0.0.1',
      0,
      grpcServerCredentials(strict),
    );
    try {
      const { credentials, options } = grpcClientCredentials(clientTls, 'sfu');
      const client = new TestClient(`127.0.0.1:${strictPort}`, credentials, { ...options, 'grpc.use_local_subchannel_pool': 1 }) as Client;
      clients.push(client);
      expect(await callUnary(client, client.whoAmI, {}, 3_000)).toEqual({ caller: 'strict' });
    } finally {
      await stopGrpcServer(strictServer);
      strict.close();
      strictVolume.remove();
    }
    // A certificate of a CA in no bundle stays refused.
    const foreign = { ca: newSignaling.ca, cert: readFileSync(newPki.foreign.certFile), key: readFileSync(newPki.foreign.keyFile) };
    expect(await callWith(foreign)).toBe('UNAVAILABLE');

    // 3. A key that is not the certificate's: refused, logged without contents, the files in use stay.
    logged.length = 0;
    serverVolume.update({ 'tls.key': oldSignaling.key });
    await serverTls.check();
    const refusal = logged.find((line) => line.source === 'grpc-tls' && line.level === 50);
    expect(refusal).toMatchObject({ code: ErrorCode.CONFIG_INVALID });
    expect(JSON.stringify(logged)).not.toContain('PRIVATE KEY');
    expect(await callWith(newSignaling)).toEqual({ caller: 'signaling' });
  });

  it('takes up a change from the directory watch alone', async () => {
    const volume = volumeOf(oldPki, 'sfu');
    const source = sourceOf(volume);
    const seen: Buffer[] = [];
    source.addIdentityCertificateListener((update) => update && seen.push(update.certificate));
    try {
      const next = contentsOf(newPki, 'sfu');
      volume.update({ 'ca.crt': next.ca, 'tls.crt': next.cert, 'tls.key': next.key });
      // No check() call: the watch on the folder sees the symlink swap (the periodic read is a minute away).
      const deadline = Date.now() + 10_000;
      while (!seen.some((cert) => cert.equals(next.cert)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(seen.some((cert) => cert.equals(next.cert))).toBe(true);
    } finally {
      source.close();
      volume.remove();
    }
  });
});
