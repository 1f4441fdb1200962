import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { NodeInfo } from '@gateway/proto/gateway/sfu/v1/sfu';
import { buckets, kvKeys } from '@gateway/common';
import { NatsServer, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { TestClients } from '../support/wsClient.js';
import { demoToken } from '../support/tokens.js';
import { opusRtpParameters } from '../support/rtpParameters.js';

/**
 * Processes that die or are asked to stop: a signaling replica killed outright (its sessions
 * are swept by the surviving replica) and an SFU that receives SIGTERM (it drains).
 */
describe('process failures and shutdown', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig1: Awaited<ReturnType<typeof startSignalingProcess>>;
  let sig2: Awaited<ReturnType<typeof startSignalingProcess>>;
  const clients = new TestClients();
  const open = (url: string) => clients.open(url);
  const nodeInfo = async () => {
    const entry = await (await new Kvm(nc).open(buckets.sfuNodes)).get(sfu.nodeId);
    return entry && entry.length > 0 ? NodeInfo.decode(entry.value) : undefined;
  };

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
    sfu = await startSfuProcess({ natsUrl: nats.url, env: { SFU_DRAIN_GRACE_SECONDS: '4', SFU_HEARTBEAT_SECONDS: '0.5' } });
    const env = { SIGNALING_HEARTBEAT_SECONDS: '1', SIGNALING_RESUME_WINDOW_SECONDS: '30' };
    [sig1, sig2] = await Promise.all([startSignalingProcess({ natsUrl: nats.url, env }), startSignalingProcess({ natsUrl: nats.url, env })]);
  }, 120_000);

  afterAll(async () => {
    clients.closeAll();
    await Promise.all([sig1?.stop(), sig2?.stop()]);
    await sfu?.stop('SIGKILL');
    await nc?.close();
    await nats?.stop();
  });

  it('sweeps the sessions of a replica that died: the room sees them leave and their media closes', async () => {
    const room = `room-${Date.now()}`;
    const customer = await open(sig1.wsUrl);
    const joined = (await customer.request('join', { token: await demoToken({ room, identity: 'customer', role: 'end_user' }) })).join;
    const send = (await customer.request('createTransport', { direction: 'send' })).createTransport;
    const produced = await customer.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'microphone' });
    expect(produced.produce.producerId).toBeTruthy();

    const agent = await open(sig2.wsUrl);
    await agent.request('join', { token: await demoToken({ room, identity: 'agent', role: 'agent' }) });
    await waitFor(async () => (await nodeInfo())?.load?.producers === 1, 5_000, 'the producer counted in the registry');

    // Killed outright: no leave, no detach. Its liveness key stops moving; the survivor sweeps its participants.
    await sig1.stop('SIGKILL');
    const left = await waitFor(() => agent.notifications.find((n) => n.participantLeft?.participantId === joined.participant.participantId), 15_000, 'participantLeft');
    expect(left.participantLeft.reason).toBe('disconnected');
    await waitFor(async () => (await nodeInfo())?.load?.producers === 0, 5_000, 'the dead session media closed on the SFU');
    // Its record is erased, no delete marker left behind.
    const participants = await new Kvm(nc).open(buckets.participants);
    expect(await participants.get(kvKeys.participant('demo', room, joined.participant.participantId))).toBeNull();
    // The survivor keeps serving: its own session is untouched.
    expect((await agent.request('ping', { clientTimeMs: 1 })).ping).toBeTruthy();
  }, 30_000);

  it('drains on SIGTERM: not ready, no new rooms, existing rooms go on until the grace period ends', async () => {
    const room = `drain-${Date.now()}`;
    const agent = await open(sig2.wsUrl);
    expect((await agent.request('join', { token: await demoToken({ room, identity: 'agent', role: 'agent' }) })).error).toBeUndefined();
    const exited = sfu.stop('SIGTERM', 20_000);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${sfu.opsPort}/readyz`)).status === 503, 5_000, 'readyz 503');
    await waitFor(async () => (await nodeInfo())?.draining, 5_000, 'draining in the registry');

    const newcomer = await open(sig2.wsUrl);
    const refused = await newcomer.request('join', { token: await demoToken({ room: `${room}-new`, identity: 'late', role: 'agent' }) });
    expect(refused.error.code).toBe('ROOM_UNAVAILABLE');

    // The room that was there keeps working during the drain.
    const transport = await agent.request('createTransport', { direction: 'recv' });
    expect(transport.createTransport.transportId).toBeTruthy();
    expect(sfu.running).toBe(true);

    // At the end of the grace period its clients are told to rejoin, and the process exits cleanly.
    expect((await agent.closed).code).toBe(4010);
    expect(agent.notifications.some((n) => 'rejoinRequired' in n)).toBe(true);
    expect(await exited).toBe(0);
    await waitFor(async () => (await nodeInfo()) === undefined, 5_000, 'the node removed from the registry');
  }, 30_000);
});
