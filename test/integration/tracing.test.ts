import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_TENANT } from '@gateway/common';
import { NatsServer, startCrmSyncProcess, startRecorderProcess, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { OtlpCollector, SpanKinds, type CollectedSpan } from '../support/otlpCollector.js';
import { TestClients } from '../support/wsClient.js';
import { demoToken } from '../support/tokens.js';
import { opusRtpParameters } from '../support/rtpParameters.js';

/** The demo tenant, recording every call an agent joins: one join then reaches the recorder too. */
const recordedDemo = { ...DEMO_TENANT, recording: { onAgentJoin: true, mp4: false, skipPausedAudio: false } };

/**
 * One join is one trace across services. Every process exports to an in-memory OTLP collector,
 * configured by the standard OTEL_ variables only. An agent joins through signaling replica A; the
 * trace must hold the SFU's handling of the room (gRPC metadata), replica B relaying the join to
 * the end user it serves (NATS headers), and the recorder starting the tenant's automatic
 * recording, with its own calls to the SFU. crm-sync's delivery of the session that ends is a
 * trace of its own, linked to the leave that ended it.
 */
describe('tracing across services', () => {
  let nats: NatsServer;
  let collector: OtlpCollector;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let recorder: Awaited<ReturnType<typeof startRecorderProcess>>;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  let sigA: Awaited<ReturnType<typeof startSignalingProcess>>;
  let sigB: Awaited<ReturnType<typeof startSignalingProcess>>;
  const workDir = mkdtempSync(path.join(tmpdir(), 'gateway-tracing-'));
  const clients = new TestClients();

  beforeAll(async () => {
    [nats, collector] = await Promise.all([NatsServer.start(), OtlpCollector.start()]);
    const tenants = { GATEWAY_TENANTS: JSON.stringify([recordedDemo]) };
    sfu = await startSfuProcess({ natsUrl: nats.url, env: collector.env() });
    [recorder, crm, sigA, sigB] = await Promise.all([
      startRecorderProcess({ natsUrl: nats.url, workDir, env: collector.env() }),
      startCrmSyncProcess({ natsUrl: nats.url, env: collector.env({ ...tenants, CRM_SYNC_RETRY_BASE_SECONDS: '0.2', CRM_SYNC_RETRY_MAX_SECONDS: '0.5' }) }),
      startSignalingProcess({ natsUrl: nats.url, env: collector.env({ ...tenants, OTEL_RESOURCE_ATTRIBUTES: 'service.instance.id=sig-a' }) }),
      startSignalingProcess({ natsUrl: nats.url, env: collector.env({ ...tenants, OTEL_RESOURCE_ATTRIBUTES: 'service.instance.id=sig-b' }) }),
    ]);
  }, 90_000);

  afterAll(async () => {
    clients.closeAll();
    await Promise.all([sigA?.stop(), sigB?.stop(), crm?.stop(), recorder?.stop()]);
    await sfu?.stop();
    await nats?.stop();
    await collector?.close();
    rmSync(workDir, { recursive: true, force: true });
  });

  const find = (what: string, check: (s: CollectedSpan) => boolean) => waitFor(() => collector.spans.find(check), 15_000, what);
  const leadsTo = (span: CollectedSpan, ancestor: CollectedSpan) => collector.ancestors(span).some((s) => s.spanId === ancestor.spanId);
  /** Spans come in batches from each process: the ones between the two may arrive after both. */
  const expectLeadsTo = (span: CollectedSpan, ancestor: CollectedSpan) => waitFor(() => leadsTo(span, ancestor) || undefined, 10_000, `${span.name} under ${ancestor.name}`);

  it('follows a join from the WebSocket through gRPC and NATS to the SFU, another replica and the recorder', async () => {
    const room = `traced-${Date.now()}`;
    // The end user is served by replica B and publishes a microphone (a producer for the recording to tap).
    const user = await clients.join(sigB.wsUrl, await demoToken({ room, identity: 'ext-1', role: 'end_user' }));
    const send = (await user.client.request('createTransport', { direction: 'send' })).createTransport;
    await user.client.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(2222), source: 'microphone' });

    const agent = await clients.join(sigA.wsUrl, await demoToken({ room, identity: 'agent-1', role: 'agent' }));
    const agentId: string = agent.join.participant.participantId;
    expect((await user.client.waitForNotification('recording', 10_000)).state).toBe('started');

    const join = await find('the join span', (s) => s.name === 'gateway.signaling.v1/join' && s.attributes['gateway.participant_id'] === agentId);
    expect(join).toMatchObject({ service: 'signaling', instance: 'sig-a', kind: SpanKinds.server, parentSpanId: '', statusCode: 0 });
    expect(join.attributes).toMatchObject({ 'gateway.tenant': 'demo', 'gateway.room': room });
    const inJoin = (check: (s: CollectedSpan) => boolean) => (s: CollectedSpan) => s.traceId === join.traceId && check(s);

    // gRPC: the SFU's OpenRoom continues the join's trace, under signaling's client call.
    const sfuOpen = await find(
      'the SFU span of the join',
      inJoin((s) => s.service === 'sfu' && s.name === 'gateway.sfu.v1.Sfu/OpenRoom'),
    );
    expect(sfuOpen.kind).toBe(SpanKinds.server);
    const [client] = collector.ancestors(sfuOpen);
    expect(client).toMatchObject({ service: 'signaling', kind: SpanKinds.client, name: 'gateway.sfu.v1.Sfu/OpenRoom' });
    await expectLeadsTo(sfuOpen, join);

    // NATS: replica B relays the agent's arrival to the end user within the join's trace.
    const relayed = await find(
      'replica B relaying the join',
      inJoin((s) => s.instance === 'sig-b' && s.name === 'room event participantJoined'),
    );
    expect(relayed).toMatchObject({ kind: SpanKinds.consumer, parentSpanId: join.spanId });
    expect(relayed.attributes).toMatchObject({ 'messaging.system': 'nats', 'gateway.room': room });

    // The automatic recording: signaling -> recorder (gRPC) -> SFU (the tap), all in the join's trace.
    const start = await find(
      'the recorder starting the recording',
      inJoin((s) => s.service === 'recorder' && s.name === 'gateway.recorder.v1.Recorder/StartRecording'),
    );
    await expectLeadsTo(start, join);
    const tap = await find(
      'the SFU tapping for the recorder',
      inJoin((s) => s.service === 'sfu' && s.name === 'gateway.sfu.v1.Sfu/CreateTapStream'),
    );
    await expectLeadsTo(tap, start);

    const services = new Set(collector.trace(join.traceId).map((s) => s.service));
    expect([...services].sort()).toEqual(['recorder', 'sfu', 'signaling']);
    // Ids only: no identity of a person anywhere in the trace.
    expect(JSON.stringify(collector.trace(join.traceId))).not.toMatch(/ext-1|agent-1/);

    // The room ends with the last leave; crm-sync's delivery of session.ended is a trace of its
    // own, linked to that leave's.
    await user.client.request('leave');
    await agent.client.request('leave');
    const delivery = await find('crm-sync delivering the session', (s) => s.service === 'crm-sync' && s.name === 'deliver session' && s.attributes['gateway.room'] === room);
    expect(delivery).toMatchObject({ kind: SpanKinds.consumer, parentSpanId: '' });
    const leaves = collector.spans.filter((s) => s.name === 'gateway.signaling.v1/leave' && s.attributes['gateway.room'] === room);
    expect(leaves).toHaveLength(2);
    const linked = leaves.filter((leave) => delivery.links.some((l) => l.traceId === leave.traceId && l.spanId === leave.spanId));
    expect(linked).toHaveLength(1);
    expect(delivery.traceId).not.toBe(linked[0]!.traceId);
  }, 60_000);
});
