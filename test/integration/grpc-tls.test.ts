import { readFileSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SfuClient } from '@gateway/proto/gateway/sfu/v1/sfu';
import { callUnary, grpc } from '@gateway/common';
import { NatsServer, createTestPki, startSfuProcess, startSignalingProcess, type TestPki } from '@gateway/testing';
import { TestClient } from '../support/wsClient.js';
import { demoToken } from '../support/tokens.js';

/** Signaling and the SFU with mutual TLS on gRPC: the call works, and a peer without our CA's certificate gets nothing. */
describe('gRPC between services with mutual TLS', () => {
  let pki: TestPki;
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  const sfuAddress = () => `127.0.0.1:${sfu.grpcPort}`;
  const serverName = { 'grpc.ssl_target_name_override': 'sfu.gateway.internal' };

  beforeAll(async () => {
    pki = createTestPki();
    const tls = { GRPC_TLS_CA_FILE: pki.caFile, GRPC_TLS_CERT_FILE: pki.certFile, GRPC_TLS_KEY_FILE: pki.keyFile };
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url, env: tls });
    signaling = await startSignalingProcess({ natsUrl: nats.url, env: tls });
  }, 60_000);

  afterAll(async () => {
    await signaling?.stop();
    await sfu?.stop();
    await nats?.stop();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  it('joins and negotiates through the TLS channel', async () => {
    const client = await TestClient.open(signaling.wsUrl);
    const join = await client.request('join', { token: await demoToken({ room: `tls-${Date.now()}`, identity: 'agent', role: 'agent' }) });
    expect(join.error).toBeUndefined();
    const transport = await client.request('createTransport', { direction: 'recv' });
    expect(transport.createTransport.transportId).toBeTruthy();
    client.close();
  });

  it('refuses a plaintext client and a client whose certificate another CA signed', async () => {
    const info = (client: SfuClient) => callUnary(client, client.getNodeInfo, {}, 3_000);
    const plaintext = new SfuClient(sfuAddress(), grpc.credentials.createInsecure());
    await expect(info(plaintext)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    plaintext.close();

    const foreign = new SfuClient(
      sfuAddress(),
      grpc.credentials.createSsl(readFileSync(pki.caFile), readFileSync(pki.foreignKeyFile), readFileSync(pki.foreignCertFile)),
      serverName,
    );
    await expect(info(foreign)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    foreign.close();

    // The same call with our CA's certificate succeeds, so the refusals above are about identity.
    const trusted = new SfuClient(
      sfuAddress(),
      grpc.credentials.createSsl(readFileSync(pki.caFile), readFileSync(pki.keyFile), readFileSync(pki.certFile)),
      serverName,
    );
    expect((await info(trusted)).nodeId).toBe(sfu.nodeId);
    trusted.close();
  });
});
