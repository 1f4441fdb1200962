import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RecordingState, type Recording } from '@gateway/proto/gateway/recorder/v1/recorder';
import { callUnary } from '@gateway/common';
import { NatsServer, startRecorderProcess, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { mintJoinToken } from '../../services/signaling/src/auth/tokens.js';
import { DEMO_TENANT } from '../../services/signaling/src/config.js';
import { TestClient } from '../support/wsClient.js';
import { recorderClientAs } from '../support/grpcClients.js';
import { demoToken } from '../support/tokens.js';
import { metricValue, scrapeMetrics, sumOf } from '../support/metrics.js';
import { opusRtpParameters, vp8RtpParameters } from '../support/rtpParameters.js';

const autoTenant = { name: 'autorec', apiKey: 'autorec-key', apiSecret: 'autorec-secret-for-tests-only-0000000', recording: { onAgentJoin: true, mp4: false, skipPausedAudio: false } };

/**
 * Recording controlled over signaling: an agent with canRecord starts, pauses, resumes and stops;
 * everyone in the room is told; nobody else may; a tenant can have calls recorded as soon as an
 * agent joins. (The media of a recording is checked by the browser test.)
 */
describe('recording controls over signaling', () => {
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  let recorder: Awaited<ReturnType<typeof startRecorderProcess>>;
  const workDir = mkdtempSync(path.join(tmpdir(), 'gateway-recorder-control-'));
  const clients: TestClient[] = [];

  const joined = async (token: string) => {
    const client = await TestClient.open(signaling.wsUrl);
    clients.push(client);
    const join = (await client.request('join', { token })).join;
    return { client, join };
  };
  /** A participant that publishes a microphone (no real media: the SFU has a producer to tap). */
  const withMicrophone = async (client: TestClient) => {
    const send = (await client.request('createTransport', { direction: 'send' })).createTransport;
    await client.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'microphone' });
  };

  beforeAll(async () => {
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    const tenantKeys = JSON.stringify({ demo: Buffer.alloc(32, 1).toString('base64'), autorec: Buffer.alloc(32, 2).toString('base64') });
    signaling = await startSignalingProcess({ natsUrl: nats.url, env: { GATEWAY_TENANTS: JSON.stringify([DEMO_TENANT, autoTenant]), GATEWAY_TENANT_KEYS: tenantKeys } });
    recorder = await startRecorderProcess({ natsUrl: nats.url, workDir, env: { RECORDER_CPU_BUDGET: '0.1', GATEWAY_TENANT_KEYS: tenantKeys } });
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await recorder?.stop();
    await signaling?.stop();
    await sfu?.stop();
    await nats?.stop();
    rmSync(workDir, { recursive: true, force: true });
  });

  it('lets an agent with canRecord control the recording, and tells everyone', async () => {
    const room = `ctl-${Date.now()}`;
    const customer = await joined(await demoToken({ room, identity: 'customer', role: 'end_user' }));
    await withMicrophone(customer.client);
    const agent = await joined(await demoToken({ room, identity: 'agent', role: 'agent', canRecord: true }));
    const plainAgent = await joined(await demoToken({ room, identity: 'agent-2', role: 'agent' }));
    const agentId = agent.join.participant.participantId;

    // Neither the end user nor an agent without the grant may record.
    expect((await customer.client.request('startRecording', {})).error.code).toBe('PERMISSION_DENIED');
    expect((await plainAgent.client.request('startRecording', {})).error.code).toBe('PERMISSION_DENIED');
    // Nothing to pause yet.
    expect((await agent.client.request('pauseRecording', {})).error.code).toBe('NOT_FOUND');

    const started = (await agent.client.request('startRecording', {})).startRecording;
    expect(started).toMatchObject({ state: 'started', by: agentId });
    expect(started.recordingId).toMatch(/^RC_/);
    for (const { client } of [customer, agent, plainAgent]) {
      expect(await client.waitForNotification('recording')).toMatchObject({ recordingId: started.recordingId, state: 'started' });
    }
    // A second start is refused while the first runs.
    expect((await agent.client.request('startRecording', {})).error.code).toBe('ALREADY_EXISTS');
    // Someone joining now learns it from the join response.
    const late = await joined(await demoToken({ room, identity: 'late', role: 'end_user' }));
    expect(late.join.recording).toMatchObject({ recordingId: started.recordingId, state: 'started' });

    expect((await agent.client.request('pauseRecording', {})).pauseRecording).toMatchObject({ state: 'paused' });
    expect((await agent.client.request('pauseRecording', {})).error.code).toBe('INVALID_STATE');
    expect((await agent.client.request('resumeRecording', {})).resumeRecording).toMatchObject({ state: 'resumed' });
    expect((await agent.client.request('stopRecording', {})).stopRecording).toMatchObject({ state: 'stopped', by: agentId });
    const states = customer.client.notifications.filter((n) => n.recording).map((n) => n.recording.state);
    expect(states).toEqual(['started', 'paused', 'resumed', 'stopped']);
  }, 60_000);

  it('sends the recorder nothing during a PCI pause, microphone, camera and screen alike, and taps them again on resume', async () => {
    // The streams the SFU sends to recorders, by kind: a pause must leave none of them sending.
    const tapStreams = async () => {
      const scrape = await scrapeMetrics(sfu.opsPort);
      const count = (kind: string, state: string) => sumOf(scrape, 'gateway_sfu_tap_streams', { kind, state });
      return { audio: count('audio', 'sending'), video: count('video', 'sending'), paused: count('audio', 'paused') + count('video', 'paused') };
    };
    const sending = async (audio: number, video: number, what: string, timeoutMs = 10_000) =>
      waitFor(
        async () => {
          const now = await tapStreams();
          return now.audio === audio && now.video === video ? now : undefined;
        },
        timeoutMs,
        what,
      );
    // Whatever an earlier recording left is gone first.
    await sending(0, 0, 'no tap from earlier tests');

    const room = `pci-${Date.now()}`;
    const customer = await joined(await demoToken({ room, identity: 'customer', role: 'end_user' }));
    const send = (await customer.client.request('createTransport', { direction: 'send' })).createTransport;
    const microphone = (await customer.client.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'microphone' })).produce;
    await customer.client.request('produce', { transportId: send.transportId, kind: 'video', rtpParameters: vp8RtpParameters(2222), source: 'camera' });
    await customer.client.request('produce', { transportId: send.transportId, kind: 'video', rtpParameters: vp8RtpParameters(3333), source: 'screen' });
    const agent = await joined(await demoToken({ room, identity: 'agent', role: 'agent', canRecord: true }));
    expect((await agent.client.request('startRecording', {})).startRecording).toMatchObject({ state: 'started' });
    await sending(1, 2, 'the microphone, the camera and the screen tapped');

    expect((await agent.client.request('pauseRecording', {})).pauseRecording).toMatchObject({ state: 'paused' });
    // By the time anyone is told of the pause, no stream of the room is sent to the recorder.
    expect(await tapStreams()).toMatchObject({ audio: 0, video: 0 });
    // Nor is one that appears during the pause (the agent's camera).
    const agentSend = (await agent.client.request('createTransport', { direction: 'send' })).createTransport;
    await agent.client.request('produce', { transportId: agentSend.transportId, kind: 'video', rtpParameters: vp8RtpParameters(4444), source: 'camera' });
    // A wrongly tapped new producer would show once the recorder's 300 ms debounce of room events
    // and one refresh of its taps (a few SFU calls) are over: three seconds cover a loaded machine.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(await tapStreams()).toMatchObject({ audio: 0, video: 0 });

    expect((await agent.client.request('resumeRecording', {})).resumeRecording).toMatchObject({ state: 'resumed' });
    // The new camera's room event may reach the recorder after the resume took it in: that costs
    // nothing (no new capture). A loaded machine may need a while to start ffmpeg.
    await sending(1, 3, 'every stream tapped again, the new camera too', 20_000);
    const captures = () => metricValue(recorder.opsPort, 'gateway_recorder_captures_started_total');
    const capturesAfterResume = await captures();
    // A track that pauses and resumes changes nothing the recording carries: its capture goes on
    // (a restart would cut every stream's segments for nothing).
    expect((await customer.client.request('pauseProducer', { producerId: microphone.producerId })).error).toBeUndefined();
    expect((await customer.client.request('resumeProducer', { producerId: microphone.producerId })).error).toBeUndefined();
    await new Promise((r) => setTimeout(r, 3_000));
    expect(await captures()).toBe(capturesAfterResume);
    expect(await tapStreams()).toMatchObject({ audio: 1, video: 3 });
    expect((await agent.client.request('stopRecording', {})).stopRecording).toMatchObject({ state: 'stopped' });
    await sending(0, 0, 'the taps closed with the recording');
    await customer.client.request('leave', {});
    await agent.client.request('leave', {});
  }, 90_000);

  it('records a tenant\u2019s calls as soon as an agent joins, when the tenant asks for it', async () => {
    const room = `auto-${Date.now()}`;
    const token = async (identity: string, role: 'agent' | 'end_user') => (await mintJoinToken(autoTenant, { room, identity, role })).token;
    const customer = await joined(await token('customer', 'end_user'));
    await withMicrophone(customer.client);
    const agent = await joined(await token('agent', 'agent'));
    const notice = await customer.client.waitForNotification('recording', 10_000);
    expect(notice.state).toBe('started');
    expect(notice.by ?? '').toBe('');
    expect((await agent.client.waitForNotification('recording')).recordingId).toBe(notice.recordingId);
    // Once everyone has left, the recording ends by itself.
    await customer.client.request('leave', {});
    await agent.client.request('leave', {});
    const recorderClient = recorderClientAs(recorder.grpcAddress);
    const ended = await waitFor(
      async () => {
        const recording: Recording = await callUnary(recorderClient, recorderClient.getRecording, { tenant: 'autorec', recordingId: notice.recordingId, requestedBy: '' });
        return recording.endedAtMs > 0 ? recording : undefined;
      },
      15_000,
      'the recording ended with the call',
    );
    // No media ever flowed (no browser here), so there is nothing to keep: the recording says so.
    expect(ended.state).toBe(RecordingState.RECORDING_STATE_FAILED);
    recorderClient.close();
  }, 30_000);

  it('places recordings on recorders with room for them: a full node passes the job on', async () => {
    const second = await startRecorderProcess({ natsUrl: nats.url, workDir: mkdtempSync(path.join(tmpdir(), 'gateway-recorder-second-')), env: { RECORDER_CPU_BUDGET: '0.1' } });
    try {
      const statuses = [];
      for (const name of ['one', 'two', 'three']) {
        const room = `cap-${name}-${Date.now()}`;
        const customer = await joined(await demoToken({ room, identity: 'customer', role: 'end_user' }));
        await withMicrophone(customer.client);
        const agent = await joined(await demoToken({ room, identity: 'agent', role: 'agent', canRecord: true }));
        statuses.push(await agent.client.request('startRecording', {}));
      }
      // Both nodes took one each (whichever was asked first); the third found every node full.
      expect(statuses[0].startRecording.state).toBe('started');
      expect(statuses[1].startRecording.state).toBe('started');
      expect(statuses[2].error).toMatchObject({ code: 'UNAVAILABLE' });
      const nodes = await Promise.all([recorder, second].map((r) => metricValue(r.opsPort, 'gateway_recorder_jobs_active')));
      expect(nodes).toEqual([1, 1]);
    } finally {
      await second.stop();
    }
  }, 60_000);

  it('drains on SIGTERM when given a grace: no new recording, the running one ends with its call, then the node exits', async () => {
    const node = await startRecorderProcess({ natsUrl: nats.url, workDir: mkdtempSync(path.join(tmpdir(), 'gateway-recorder-drain-')), env: { RECORDER_DRAIN_GRACE_SECONDS: '60' } });
    const nodeClient = recorderClientAs(node.grpcAddress);
    try {
      const room = `drain-${Date.now()}`;
      const customer = await joined(await demoToken({ room, identity: 'customer', role: 'end_user' }));
      await withMicrophone(customer.client);
      const agent = await joined(await demoToken({ room, identity: 'agent', role: 'agent', canRecord: true }));
      const started: Recording = await callUnary(nodeClient, nodeClient.startRecording, { tenant: 'demo', room, requestedBy: agent.join.participant.participantId, options: undefined });
      const exited = node.stop('SIGTERM', 60_000);
      await waitFor(async () => (await fetch(`http://127.0.0.1:${node.opsPort}/readyz`)).status === 503, 5_000, 'not ready while draining');
      // The node takes nothing new, and the recording runs on.
      const other = `drain-other-${Date.now()}`;
      const otherCustomer = await joined(await demoToken({ room: other, identity: 'customer', role: 'end_user' }));
      await withMicrophone(otherCustomer.client);
      await expect(callUnary(nodeClient, nodeClient.startRecording, { tenant: 'demo', room: other, requestedBy: '', options: undefined })).rejects.toMatchObject({ code: 'DRAINING' });
      // A drain that ended the recording or the process early would do it at the latest in the
      // node's periodic work: the heartbeat (2 s) or the record refresh and orphan sweep (5 s).
      await new Promise((r) => setTimeout(r, 6_000));
      expect(node.running).toBe(true);
      const running: Recording = await callUnary(nodeClient, nodeClient.getRecording, { tenant: 'demo', recordingId: started.recordingId, requestedBy: '' });
      expect(running.endedAtMs).toBe(0);
      // The call ends: the recording ends with it (not cut by the stop), and the node exits.
      await customer.client.request('leave', {});
      await agent.client.request('leave', {});
      await otherCustomer.client.request('leave', {});
      expect(await exited).toBe(0);
      const recorderClient = recorderClientAs(recorder.grpcAddress);
      const ended: Recording = await callUnary(recorderClient, recorderClient.getRecording, { tenant: 'demo', recordingId: started.recordingId, requestedBy: '' });
      recorderClient.close();
      expect(ended.endedAtMs).toBeGreaterThan(0);
      expect(ended.failureReason).not.toBe('the recorder stopped');
    } finally {
      nodeClient.close();
      await node.stop('SIGKILL');
    }
  }, 90_000);
});
