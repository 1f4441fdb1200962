import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SfuClient } from '@gateway/proto/gateway/sfu/v1/sfu';
import { callUnary, DEMO_TENANT_KEK, grpcClientCredentials, type GrpcTlsContents } from '@gateway/common';
import { NatsServer, SecretVolume, createTestPki, startRecorderProcess, startSfuProcess, startSignalingProcess, waitFor, type TestPki } from '@gateway/testing';
import { TestClient } from '../support/wsClient.js';
import { demoToken } from '../support/tokens.js';
import { outcome, recorderClientAs } from '../support/grpcClients.js';
import { opusRtpParameters } from '../support/rtpParameters.js';
import { scrapeMetrics } from '../support/metrics.js';

type Service = 'sfu' | 'signaling' | 'recorder';

/** A service's certificate files as cert-manager mounts them: ca.crt, tls.crt, tls.key. */
const volumeOf = (pki: TestPki, service: Service, ca: Buffer = readFileSync(pki.caFile)) =>
  SecretVolume.create({ 'ca.crt': ca, 'tls.crt': readFileSync(pki.services[service].certFile), 'tls.key': readFileSync(pki.services[service].keyFile) });
const tlsEnvOf = (volume: SecretVolume) => ({ GRPC_TLS_CA_FILE: volume.file('ca.crt'), GRPC_TLS_CERT_FILE: volume.file('tls.crt'), GRPC_TLS_KEY_FILE: volume.file('tls.key') });
const contentsOf = (pki: TestPki, identity: Service | 'foreign', ca = readFileSync(pki.caFile)): GrpcTlsContents => {
  const pair = identity === 'foreign' ? pki.foreign : pki.services[identity];
  return { ca, cert: readFileSync(pair.certFile), key: readFileSync(pair.keyFile) };
};

/** The processes whose parent is `pid`, with their command name. */
function childrenOf(pid: number): Array<{ pid: number; comm: string }> {
  const found: Array<{ pid: number; comm: string }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces, so read after its closing parenthesis.
      const close = stat.lastIndexOf(')');
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      if (ppid === pid) found.push({ pid: Number(entry), comm: stat.slice(stat.indexOf('(') + 1, close) });
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

/**
 * Certificates renewed and moved to a new CA while signaling, the SFU and the recorder run, the
 * files swapped as cert-manager and the kubelet do: the CA bundles with both CAs first, then the
 * leaf certificates. Nothing restarts; new connections use the new files, in both directions
 * (a new SFU that knows only the new CA is reached by signaling and the recorder), and a
 * certificate of a CA in no bundle stays refused. And the recorder's ffmpeg inherits nothing of
 * the recorder's environment.
 */
describe('certificates rotated without a restart', () => {
  let oldPki: TestPki;
  let newPki: TestPki;
  let nats: NatsServer;
  let workDir: string;
  const volumes = {} as Record<Service, SecretVolume>;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let newSfu: Awaited<ReturnType<typeof startSfuProcess>> | undefined;
  let newSfuVolume: SecretVolume | undefined;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  let recorder: Awaited<ReturnType<typeof startRecorderProcess>>;
  const clients: Array<{ close(): void }> = [];

  beforeAll(async () => {
    oldPki = createTestPki();
    newPki = createTestPki();
    for (const service of ['sfu', 'signaling', 'recorder'] as const) volumes[service] = volumeOf(oldPki, service);
    workDir = mkdtempSync(path.join(tmpdir(), 'gateway-rotation-'));
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url, env: tlsEnvOf(volumes.sfu) });
    [signaling, recorder] = await Promise.all([
      startSignalingProcess({ natsUrl: nats.url, env: tlsEnvOf(volumes.signaling) }),
      // The keys in the environment, as `make up` gives them: what ffmpeg must not see.
      startRecorderProcess({ natsUrl: nats.url, workDir, env: { ...tlsEnvOf(volumes.recorder), GATEWAY_KEYRING: 'static', GATEWAY_TENANT_KEYS: JSON.stringify({ demo: DEMO_TENANT_KEK }) } }),
    ]);
  }, 90_000);

  afterAll(async () => {
    for (const client of clients) client.close();
    await Promise.all([signaling?.stop(), recorder?.stop()]);
    await Promise.all([sfu?.stop(), newSfu?.stop()]);
    await nats?.stop();
    for (const volume of [...Object.values(volumes), newSfuVolume]) volume?.remove();
    for (const pki of [oldPki, newPki]) if (pki) rmSync(pki.dir, { recursive: true, force: true });
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  /** A join, a microphone and a recording in a new room: signaling to the SFU and the recorder, the recorder to the SFU. */
  const recordARoom = async (room: string) => {
    const customer = await TestClient.open(signaling.wsUrl);
    const agent = await TestClient.open(signaling.wsUrl);
    clients.push(customer, agent);
    expect((await customer.request('join', { token: await demoToken({ room, identity: 'customer', role: 'end_user' }) })).error).toBeUndefined();
    const send = (await customer.request('createTransport', { direction: 'send' })).createTransport;
    expect((await customer.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'microphone' })).error).toBeUndefined();
    expect((await agent.request('join', { token: await demoToken({ room, identity: 'agent', role: 'agent', canRecord: true }) })).error).toBeUndefined();
    const started = await agent.request('startRecording', {});
    expect(started.error).toBeUndefined();
    return { customer, agent };
  };
  /** One call to the SFU on a connection of its own, as `tls` (undefined: answered). */
  const sfuAnswers = async (port: number, tls: GrpcTlsContents) => {
    const { credentials, options } = grpcClientCredentials(tls, 'sfu');
    const client = new SfuClient(`127.0.0.1:${port}`, credentials, { ...options, 'grpc.use_local_subchannel_pool': 1 });
    clients.push(client);
    return (await outcome(callUnary(client, client.getNodeInfo, {}, 3_000))).code;
  };
  const reloadsOf = async (opsPort: number) =>
    (await scrapeMetrics(opsPort)).samples.find((s) => s.name === 'gateway_config_reloads_total' && s.labels.source === 'grpc-tls' && s.labels.outcome === 'reloaded')?.value ?? 0;
  const allReloaded = (times: number) =>
    waitFor(async () => (await Promise.all([sfu.opsPort, signaling.opsPort, recorder.opsPort].map(reloadsOf))).every((n) => n >= times), 15_000, `every service took up its files ${times} times`);

  it("gives the recorder's ffmpeg none of the recorder's configuration", async () => {
    const { agent } = await recordARoom(`env-${Date.now()}`);
    const ffmpeg = await waitFor(() => childrenOf(recorder.pid).find((child) => child.comm === 'ffmpeg'), 15_000, 'an ffmpeg capture under the recorder');
    const environ = readFileSync(`/proc/${ffmpeg.pid}/environ`, 'utf8').split('\0').filter(Boolean);
    // The recorder itself has them (its environment as started), so their absence below is the point.
    expect(readFileSync(`/proc/${recorder.pid}/environ`, 'utf8')).toContain('GATEWAY_TENANT_KEYS=');
    expect(environ.filter((variable) => /^(GATEWAY_|NATS_|GRPC_|RECORDER_|AWS_)/.test(variable))).toEqual([]);
    expect(environ.some((variable) => variable.startsWith('PATH='))).toBe(true);
    expect((await agent.request('stopRecording', {})).error).toBeUndefined();
  });

  it('moves every service to a new CA, the bundles first and then the certificates, with nothing restarted', async () => {
    const oldCa = readFileSync(oldPki.caFile);
    const newCa = readFileSync(newPki.caFile);
    const pids = [sfu.pid, signaling.pid, recorder.pid];
    // Before: a client of the new CA is refused.
    expect(await sfuAnswers(sfu.grpcPort, contentsOf(newPki, 'signaling'))).toBe('UNAVAILABLE');

    // 1. Every bundle holds both CAs.
    for (const volume of Object.values(volumes)) volume.update({ 'ca.crt': Buffer.concat([oldCa, newCa]) });
    await allReloaded(1);
    // 2. The leaf certificates of the new CA.
    for (const [service, volume] of Object.entries(volumes) as Array<[Service, SecretVolume]>) {
      volume.update({ 'tls.crt': readFileSync(newPki.services[service].certFile), 'tls.key': readFileSync(newPki.services[service].keyFile) });
    }
    await allReloaded(2);

    // The SFU presents its new certificate and takes the new CA's: a client of the new CA only is answered...
    expect(await sfuAnswers(sfu.grpcPort, contentsOf(newPki, 'signaling'))).toBe('OK');
    // ...one that trusts only the old CA no longer trusts the SFU...
    expect(await sfuAnswers(sfu.grpcPort, contentsOf(oldPki, 'signaling'))).toBe('UNAVAILABLE');
    // ...and a certificate of a CA in no bundle is refused.
    expect(await sfuAnswers(sfu.grpcPort, contentsOf(newPki, 'foreign', newCa))).toBe('UNAVAILABLE');
    // The recorder likewise: past TLS, to its answer that there is no such recording.
    const recorderClient = recorderClientAs(recorder.grpcAddress, 'signaling', newPki);
    clients.push(recorderClient);
    expect((await outcome(callUnary(recorderClient, recorderClient.getRecording, { tenant: 'demo', recordingId: 'RC_none', requestedBy: '' }, 3_000))).code).toBe('NOT_FOUND');

    // The client side: a new SFU that knows only the new CA takes the rooms (the old one stops).
    // Signaling reaches it only by presenting its new certificate, and the recorder too.
    newSfuVolume = volumeOf(newPki, 'sfu');
    newSfu = await startSfuProcess({ natsUrl: nats.url, env: tlsEnvOf(newSfuVolume) });
    await sfu.stop();
    const { agent } = await recordARoom(`rotated-${Date.now()}`);
    expect((await agent.request('stopRecording', {})).error).toBeUndefined();
    expect(await sfuAnswers(newSfu.grpcPort, contentsOf(oldPki, 'signaling'))).toBe('UNAVAILABLE');

    // Nothing restarted.
    expect([signaling.pid, recorder.pid]).toEqual(pids.slice(1));
    expect(signaling.running && recorder.running).toBe(true);
  });
});
