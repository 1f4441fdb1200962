import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatsServer, TurnServer, startSfuProcess, startSignalingProcess, turnserverInstalled, waitFor } from '@gateway/testing';
import { turnCredential } from '../../services/signaling/src/participant/turnCredentials.js';
import { repoRoot } from '../k8s/services.js';
import { scrapeMetrics } from '../support/metrics.js';
import { demoToken } from '../support/tokens.js';
import { openTurnAllocation, turnAllocate, type TurnAllocation } from '../support/turnClient.js';
import { TestClients } from '../support/wsClient.js';

/**
 * The TURN secret rotated with no restart (docs/turn.md, "Rotating the secret"): a real coturn
 * configured by the image's entrypoint (its secrets in the user database), the reload sidecar's
 * script beside it, and a real signaling, all reading one Secret volume updated as the kubelet
 * updates it. The new secret and "previous" written: the same coturn accepts credentials signed
 * with either, the same signaling signs with the new one; "previous" dropped: the old secret's
 * credentials are refused. A malformed secret keeps the last good one in signaling.
 */
describe.skipIf(!turnserverInstalled())('TURN secret rotation without a restart', () => {
  let turn: TurnServer;
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  let watcher: ChildProcess | undefined;
  let watcherLog = '';
  const clients = new TestClients();
  let underWay: TurnAllocation | undefined;
  const now = () => Math.floor(Date.now() / 1000);

  beforeAll(async () => {
    turn = await TurnServer.start({ secretDatabase: true });
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    signaling = await startSignalingProcess({ natsUrl: nats.url, env: turn.signalingEnv() });
    // The sidecar as the pod runs it, pointed at this server's configuration and Secret.
    watcher = spawn('sh', [path.join(repoRoot, 'deploy/coturn/reload.sh')], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TURN_RUN_DIR: turn.dir, TURN_SECRET_DIR: turn.secrets!.dir, TURN_CHECK_SECONDS: '0.2' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    watcher.stderr?.on('data', (chunk: Buffer) => (watcherLog += chunk.toString()));
  }, 60_000);

  afterAll(async () => {
    clients.closeAll();
    await underWay?.close();
    watcher?.kill('SIGTERM');
    await signaling?.stop();
    await sfu?.stop();
    await nats?.stop();
    await turn?.stop();
  });

  /** Whether coturn allocates a relay for a fresh credential signed with this secret (401 when it refuses it). */
  const accepts = async (secret: string) => {
    const { username, credential } = turnCredential(secret, `PA_probe${Math.random().toString(36).slice(2, 8)}`, now() + 600);
    const outcome = await turnAllocate(turn.port, username, credential);
    if (!outcome.allocated) expect(outcome.errorCode).toBe(401);
    return outcome.allocated;
  };
  /** The TURN server of a new join's answer, and whether coturn allocates with it. */
  const handedOut = async () => {
    const { join } = await clients.join(signaling.wsUrl, await demoToken({ room: 'turn-rotation', identity: `customer-${Date.now()}`, role: 'end_user' }));
    const server = join.iceServers[0] as { urls: string[]; username: string; credential: string };
    const outcome = await turnAllocate(turn.port, server.username, server.credential);
    return { ...server, outcome, allocated: outcome.allocated };
  };
  const signedWith = (secret: string, server: { username: string; credential: string }) =>
    turnCredential(secret, server.username.split(':')[1]!, Number(server.username.split(':')[0])).credential === server.credential;
  const reloads = async (outcome: string) =>
    (await scrapeMetrics(signaling.opsPort)).samples.find((s) => s.name === 'gateway_config_reloads_total' && s.labels.source === 'turn-secret' && s.labels.outcome === outcome)?.value ?? 0;

  it('accepts the new secret and the previous one, then the new one alone, in the same coturn and signaling', async () => {
    const old = turn.secret;
    const next = 'the-rotated-turn-secret-0123456789abcdef';
    const turnPid = turn.pid();
    const signalingPid = signaling.pid;

    const before = await handedOut();
    expect(signedWith(old, before)).toBe(true);
    expect(before.outcome).toMatchObject({ allocated: true });
    expect(await accepts(next)).toBe(false);
    // A call relayed under way: its allocation, made with the old secret, kept open and refreshed.
    underWay = await openTurnAllocation(turn.port, before.username, before.credential);
    expect(underWay.outcome.allocated).toBe(true);

    // Unchanged files: the sidecar writes nothing (the entrypoint's rows stand).
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(watcherLog).toBe('');

    // Step one: the new secret, the old one kept as "previous" (credentials handed out before still work).
    turn.secrets!.update({ secret: next, previous: old });
    await waitFor(() => watcherLog.includes('shared secrets taken up'), 10_000, 'the sidecar rewriting the secrets');
    expect(await accepts(next)).toBe(true);
    expect(await accepts(old)).toBe(true);
    await waitFor(async () => signedWith(next, await handedOut()), 10_000, 'signaling signing with the new secret');
    expect((await handedOut()).allocated).toBe(true);
    expect(await reloads('reloaded')).toBe(1);

    // Step two: "previous" dropped; the old secret's credentials are refused.
    turn.secrets!.update({}, ['previous']);
    await waitFor(async () => !(await accepts(old)), 10_000, "coturn refusing the old secret's credentials");
    expect(await accepts(next)).toBe(true);
    // A new allocation with a credential handed out before is refused (nothing to refresh there)...
    const late = await openTurnAllocation(turn.port, before.username, before.credential);
    try {
      expect(late.outcome).toMatchObject({ allocated: false, errorCode: 401 });
      expect(await late.refresh()).not.toBe('ok');
    } finally {
      await late.close();
    }
    // ...while the allocation made with it before goes on: coturn keeps an authenticated allocation's key.
    expect(await underWay.refresh()).toBe('ok');
    expect((await handedOut()).allocated).toBe(true);

    // The same processes throughout.
    expect(turn.pid()).toBe(turnPid);
    expect(signaling.pid).toBe(signalingPid);
    expect(watcherLog).not.toContain(old);
    expect(watcherLog).not.toContain(next);
  }, 60_000);

  it('keeps the last good secret in signaling and coturn when the file is malformed', async () => {
    const good = 'the-rotated-turn-secret-0123456789abcdef';
    const rejectedBefore = await reloads('rejected');
    const malformed = 'too short';
    turn.secrets!.update({ secret: malformed });
    await waitFor(async () => (await reloads('rejected')) === rejectedBefore + 1, 10_000, 'signaling refusing the malformed secret');
    await waitFor(() => watcherLog.includes('could not be taken up'), 10_000, 'the sidecar refusing the malformed secret');
    const server = await handedOut();
    expect(signedWith(good, server)).toBe(true);
    expect(server.allocated).toBe(true);
    expect(await accepts(good)).toBe(true);
    expect(signaling.logs).toMatch(/new contents of watched files rejected/);
    expect(signaling.logs).not.toContain(malformed);
    expect(signaling.logs).not.toContain(good);
  }, 60_000);
});
