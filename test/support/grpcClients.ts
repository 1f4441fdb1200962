import { RecorderClient } from '@gateway/proto/gateway/recorder/v1/recorder';
import { SfuClient } from '@gateway/proto/gateway/sfu/v1/sfu';
import { type grpc, grpcClientCredentials, type GatewayError } from '@gateway/common';
import { grpcTlsOf, type GrpcTestIdentity, type TestPki } from '@gateway/testing';

/** A client's DTLS parameters as a device sends them: these tests never complete a handshake, so no real fingerprint is needed. */
export const dtlsParameters = { role: 'client', fingerprints: [{ algorithm: 'sha-256', value: Array.from({ length: 32 }, () => 'AB').join(':') }] };

/** SFU gRPC clients of one node, one per identity the test speaks as. */
export class SfuClients {
  private readonly clients = new Map<GrpcTestIdentity, SfuClient>();

  constructor(private readonly address: string) {}

  as(identity: GrpcTestIdentity): SfuClient {
    let client = this.clients.get(identity);
    if (!client) {
      const { credentials, options } = grpcClientCredentials(grpcTlsOf(identity), 'sfu');
      client = new SfuClient(this.address, credentials, options);
      this.clients.set(identity, client);
    }
    return client;
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

/**
 * A client of a recorder as `identity` would call it (signaling, the only caller it takes),
 * over the mutual TLS the test helpers give every service.
 */
export function recorderClientAs(address: string, identity: GrpcTestIdentity = 'signaling', pki?: TestPki): RecorderClient {
  const { credentials, options } = grpcClientCredentials(grpcTlsOf(identity, pki), 'recorder');
  return new RecorderClient(address, credentials, options);
}

/** A call's outcome: its Gateway code and message, or OK. */
export function outcome<T>(promise: Promise<T>): Promise<{ code: string; message: string; value?: T }> {
  return promise.then(
    (value) => ({ code: 'OK', message: '', value }),
    (error: GatewayError) => ({ code: error.code, message: error.message }),
  );
}

/** Sends `bytes` as the request of `method` (e.g. 'Consume'), as they are: what no generated client would send. */
export function rawCall(client: SfuClient, method: string, bytes: Buffer, timeoutMs = 5_000): Promise<grpc.ServiceError | null> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      `/gateway.sfu.v1.Sfu/${method}`,
      (b: Buffer) => b,
      (b: Buffer) => b,
      bytes,
      { deadline: Date.now() + timeoutMs },
      (error) => resolve(error),
    );
  });
}
