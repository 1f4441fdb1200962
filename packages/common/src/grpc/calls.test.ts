import { Writable } from 'node:stream';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import * as grpc from '@grpc/grpc-js';
import { createTestPki, grpcTlsOf, type GrpcTestIdentity, type TestPki } from '@gateway/testing';
import { ErrorCode, GatewayError } from '../errors.js';
import { callUnary, fromServiceError, startGrpcServer, stopGrpcServer, unaryHandlers, withCheckedDecoding, type GrpcAccess } from './calls.js';
import { grpcClientCredentials, grpcServerCredentials } from './tls.js';

/** A tiny JSON service, so the tests need no generated code: what matters is the access table. */
const json = {
  requestSerialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
  requestDeserialize: (bytes: Buffer) => JSON.parse(bytes.toString()) as unknown,
  responseSerialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
  responseDeserialize: (bytes: Buffer) => JSON.parse(bytes.toString()) as unknown,
  requestStream: false,
  responseStream: false,
} as const;
const method = (name: string) => ({ path: `/test.v1.Test/${name}`, originalName: name, ...json });
const definition = {
  forSignaling: method('ForSignaling'),
  forNodes: method('ForNodes'),
  unlisted: method('Unlisted'),
  fails: method('Fails'),
} as unknown as grpc.ServiceDefinition;
const TestClient = grpc.makeGenericClientConstructor(definition, 'Test');
type Client = InstanceType<typeof TestClient> & Record<string, grpc.requestCallback<unknown> & ((...args: unknown[]) => grpc.ClientUnaryCall)>;

describe('gRPC handlers with caller identities', () => {
  let pki: TestPki;
  let server: grpc.Server;
  let port: number;
  const calls: string[] = [];
  const logged: Array<Record<string, unknown>> = [];
  const log = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        logged.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    }),
  );
  const clients: grpc.Client[] = [];
  const clientAs = (identity: GrpcTestIdentity): Client => {
    const { credentials, options } = grpcClientCredentials(grpcTlsOf(identity, pki), 'sfu');
    const client = new TestClient(`127.0.0.1:${port}`, credentials, options) as Client;
    clients.push(client);
    return client;
  };
  const call = (client: Client, name: string, request: unknown = {}) =>
    callUnary(client, client[name] as Parameters<typeof callUnary>[1], request, 5_000).then(
      () => 'OK',
      (error: GatewayError) => error.code,
    );

  beforeAll(async () => {
    pki = createTestPki();
    const handlers = {
      forSignaling: async () => (calls.push('forSignaling'), {}),
      forNodes: async () => (calls.push('forNodes'), {}),
      unlisted: async () => (calls.push('unlisted'), {}),
      fails: async () => {
        throw new Error('connect ECONNREFUSED 10.0.0.5:50051 in mediasoup-worker');
      },
    };
    // A method added without an entry: the type system says so, and the server refuses it.
    const access = { forSignaling: ['signaling'], forNodes: ['sfu'], fails: ['signaling'] } as unknown as GrpcAccess<typeof handlers>;
    const tls = grpcTlsOf('sfu', pki);
    ({ server, port } = await startGrpcServer(
      (s) => s.addService(withCheckedDecoding(definition), unaryHandlers(handlers, { access, requireIdentity: true, log })),
      '127.0.0.1',
      0,
      grpcServerCredentials(tls),
    ));
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    if (server) await stopGrpcServer(server);
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  it('lets each method be called by the services its entry names, and refuses everyone else before the handler runs', async () => {
    calls.length = 0;
    const results: Record<string, Record<string, string>> = {};
    for (const identity of ['signaling', 'sfu', 'recorder', 'stranger'] as const) {
      const client = clientAs(identity);
      results[identity] = { forSignaling: await call(client, 'forSignaling'), forNodes: await call(client, 'forNodes') };
    }
    expect(results).toEqual({
      signaling: { forSignaling: 'OK', forNodes: 'PERMISSION_DENIED' },
      sfu: { forSignaling: 'PERMISSION_DENIED', forNodes: 'OK' },
      recorder: { forSignaling: 'PERMISSION_DENIED', forNodes: 'PERMISSION_DENIED' },
      // A certificate of our CA that names no service of ours.
      stranger: { forSignaling: 'PERMISSION_DENIED', forNodes: 'PERMISSION_DENIED' },
    });
    // Only the two allowed calls reached a handler.
    expect(calls).toEqual(['forSignaling', 'forNodes']);
  });

  it('refuses a method without an entry in the table, whoever calls', async () => {
    calls.length = 0;
    for (const identity of ['signaling', 'sfu', 'recorder'] as const) expect(await call(clientAs(identity), 'unlisted')).toBe('PERMISSION_DENIED');
    expect(calls).toEqual([]);
  });

  it('answers a request that does not decode with INVALID_ARGUMENT, not INTERNAL', async () => {
    const client = clientAs('signaling');
    const status = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.makeUnaryRequest(
        '/test.v1.Test/ForSignaling',
        () => Buffer.from('{"unterminated'),
        (b: Buffer) => b,
        {},
        (error) => resolve(error),
      ),
    );
    expect(status?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(fromServiceError(status).code).toBe(ErrorCode.MALFORMED_MESSAGE);
  });

  it('tells the caller of an unexpected failure a reference, and logs the details under it', async () => {
    const client = clientAs('signaling');
    const error = await callUnary(client, client.fails as Parameters<typeof callUnary>[1], {}, 5_000).catch((e: GatewayError) => e);
    expect(error).toBeInstanceOf(GatewayError);
    const { code, message } = error as GatewayError;
    expect(code).toBe(ErrorCode.INTERNAL);
    expect(message).toMatch(/^internal error \(reference [0-9a-f]{12}\)$/);
    expect(message).not.toMatch(/ECONNREFUSED|10\.0\.0\.5|mediasoup/);
    const reference = /reference ([0-9a-f]+)/.exec(message)![1];
    const line = logged.find((l) => l.reference === reference);
    expect(JSON.stringify(line)).toMatch(/ECONNREFUSED 10\.0\.0\.5/);
  });

  it('checks the server it dials: a client that means to reach the recorder refuses the SFU', async () => {
    // The server holds the SFU's certificate; a client expecting the recorder's name gets nothing.
    const { credentials, options } = grpcClientCredentials(grpcTlsOf('signaling', pki), 'recorder');
    const client = new TestClient(`127.0.0.1:${port}`, credentials, options) as Client;
    clients.push(client);
    calls.length = 0;
    expect(await call(client, 'forSignaling')).toBe('UNAVAILABLE');
    expect(calls).toEqual([]);
  });
});

describe('errors a gRPC client receives', () => {
  const metadataWith = (code?: string) => {
    const metadata = new grpc.Metadata();
    if (code) metadata.set('gateway-error-code', code);
    return metadata;
  };
  const serviceError = (status: grpc.status, details: string, code?: string) =>
    Object.assign(new Error(`${status} ${grpc.status[status]}: ${details}`), { code: status, details, metadata: metadataWith(code) });

  it("never carry a transport failure's text (internal addresses) in their message, only in the cause", () => {
    const transport = [
      serviceError(grpc.status.UNAVAILABLE, 'No connection established. Last error: connect ECONNREFUSED 10.0.0.5:50051'),
      serviceError(grpc.status.INTERNAL, 'Request message serialization failure: invalid uint32: NaN'),
      serviceError(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded after 10.001s,LB pick: 0.001s,remote_addr=10.0.0.5:50051'),
      serviceError(grpc.status.UNKNOWN, 'Received RST_STREAM with code 2 triggered by internal client error: 10.0.0.5'),
    ];
    for (const error of transport) {
      const mapped = fromServiceError(error);
      expect(mapped.message).not.toMatch(/10\.0\.0\.5|ECONNREFUSED|NaN|serialization|RST_STREAM/);
      expect(mapped.cause).toBe(error);
    }
    expect(transport.map((e) => fromServiceError(e).code)).toEqual([ErrorCode.UNAVAILABLE, ErrorCode.INTERNAL, ErrorCode.TIMEOUT, ErrorCode.INTERNAL]);
  });

  it('keep the code and message our server sent', () => {
    const mapped = fromServiceError(serviceError(grpc.status.NOT_FOUND, 'room not found on this node', 'NOT_FOUND'));
    expect({ code: mapped.code, message: mapped.message }).toEqual({ code: ErrorCode.NOT_FOUND, message: 'room not found on this node' });
  });
});
