import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { ArtifactStore, DEMO_TENANT_KEK, StaticKeyring, buckets, kvKeys, streams, subjects } from '@gateway/common';
import { NatsServer, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { TestClients, type TestClient } from '../support/wsClient.js';
import { readTranscripts } from '../support/events.js';
import { demoToken, globexToken, twoTenantEnv } from '../support/tokens.js';

/**
 * Chat over signaling against real processes: nats-server (JetStream), an SFU and two
 * signaling replicas, so a message sent through one replica reaches a client of the other.
 */
describe('chat', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig1: Awaited<ReturnType<typeof startSignalingProcess>>;
  let sig2: Awaited<ReturnType<typeof startSignalingProcess>>;
  const clients = new TestClients();

  beforeAll(async () => {
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    const env = {
      ...twoTenantEnv,
      SIGNALING_CHAT_MAX_CHARS: '200',
      SIGNALING_CHAT_RATE_PER_SECOND: '2',
      SIGNALING_CHAT_RATE_BURST: '4',
    };
    [sig1, sig2] = await Promise.all([startSignalingProcess({ natsUrl: nats.url, env }), startSignalingProcess({ natsUrl: nats.url, env })]);
    nc = await nats.connect();
  }, 60_000);

  afterAll(async () => {
    clients.closeAll();
    await nc?.close();
    await Promise.all([sig1?.stop(), sig2?.stop()]);
    await sfu?.stop();
    await nats?.stop();
  });

  const joined = (url: string, token: string) => clients.join(url, token);

  const notificationsOf = (client: TestClient, kind: string) => client.notifications.filter((n) => kind in n).map((n) => n[kind]);

  /** Every stored chat entry of a room, as raw bytes. */
  async function storedEntries(tenant: string, room: string): Promise<Buffer[]> {
    const jsm = await jetstreamManager(nc);
    const subject = subjects.chat(tenant, room);
    const count = (await jsm.streams.info(streams.chat.name, { subjects_filter: subject })).state.subjects?.[subject] ?? 0;
    if (count === 0) return [];
    const consumer = await jetstream(nc).consumers.get(streams.chat.name, { filter_subjects: subject });
    const out: Buffer[] = [];
    const messages = await consumer.consume();
    for await (const m of messages) {
      out.push(Buffer.from(m.data));
      if (m.info.pending === 0) break;
    }
    messages.stop();
    return out;
  }

  it('shows names and metadata from the tokens, and changes made by those allowed, across replicas and a resume', async () => {
    const room = `names-${Date.now()}`;
    const { client: user, join: userJoin } = await joined(sig1.wsUrl, await demoToken({ room, identity: 'ext-9', role: 'end_user', name: 'Sam', metadata: '{"plan":"gold"}' }));
    expect(userJoin.participant).toMatchObject({ name: 'Sam', metadata: '{"plan":"gold"}' });
    const { client: agent, join: agentJoin } = await joined(sig2.wsUrl, await demoToken({ room, identity: 'agent-3', role: 'agent', name: 'Ann', canUpdateMetadata: true }));
    expect(agentJoin.participants.find((p: { participantId: string }) => p.participantId === userJoin.participant.participantId)).toMatchObject({ name: 'Sam', metadata: '{"plan":"gold"}' });
    expect(await user.waitForNotification('participantJoined')).toMatchObject({ name: 'Ann' });

    // The agent renames itself; the end user, whose token does not allow it, cannot.
    const renamed = await agent.request('updateParticipant', { name: 'Ann (Billing)', metadata: '{"queue":"billing"}' });
    expect(renamed.updateParticipant).toMatchObject({ participantId: agentJoin.participant.participantId, name: 'Ann (Billing)', metadata: '{"queue":"billing"}' });
    expect(await user.waitForNotification('participantUpdated')).toMatchObject({ participantId: agentJoin.participant.participantId, name: 'Ann (Billing)', metadata: '{"queue":"billing"}' });
    expect((await user.request('updateParticipant', { name: 'Supervisor' })).error.code).toBe('PERMISSION_DENIED');
    expect((await agent.request('updateParticipant', { name: 'two\nlines' })).error.code).toBe('MALFORMED_MESSAGE');
    expect((await agent.request('updateParticipant', { metadata: 'x'.repeat(4097) })).error.code).toBe('MALFORMED_MESSAGE');
    expect(notificationsOf(agent, 'participantUpdated')).toEqual([]);

    // A resume on the other replica keeps the new name.
    agent.close();
    const resumed = await (await clients.open(sig1.wsUrl)).request('resume', { resumeToken: agentJoin.resumeToken, protocolVersion: 1 });
    expect(resumed.resume.participant).toMatchObject({ name: 'Ann (Billing)', metadata: '{"queue":"billing"}' });
  });

  it('relays ephemeral data messages across replicas: to the room or to whom they name, never back, never stored, within a budget', async () => {
    const room = `data-${Date.now()}`;
    const { client: user, join: userJoin } = await joined(sig1.wsUrl, await demoToken({ room, identity: 'ext-7', role: 'end_user' }));
    const { client: agent, join: agentJoin } = await joined(sig2.wsUrl, await demoToken({ room, identity: 'agent-1', role: 'agent' }));
    const { client: supervisor } = await joined(sig1.wsUrl, await demoToken({ room, identity: 'agent-2', role: 'agent' }));
    const userId = userJoin.participant.participantId;

    const toAll = await user.request('sendData', { topic: 'typing', payload: '{"typing":true}' });
    expect(Number(toAll.sendData.sentAtMs)).toBeGreaterThan(0);
    for (const client of [agent, supervisor]) {
      expect(await client.waitForNotification('dataMessage')).toEqual({ topic: 'typing', payload: '{"typing":true}', sentAtMs: toAll.sendData.sentAtMs, participantId: userId });
    }
    // Only to the agent: the supervisor gets nothing, and the agent does not learn whom else it named.
    await user.request('sendData', { topic: 'typing', payload: '{"typing":false}', destinationParticipantIds: [agentJoin.participant.participantId] });
    await waitFor(() => notificationsOf(agent, 'dataMessage').length === 2, 5_000, 'the second data message');
    expect(notificationsOf(agent, 'dataMessage')[1]).toEqual({ topic: 'typing', payload: '{"typing":false}', sentAtMs: expect.any(Number), participantId: userId });
    await new Promise((r) => setTimeout(r, 300));
    expect(notificationsOf(supervisor, 'dataMessage')).toHaveLength(1);
    expect(notificationsOf(user, 'dataMessage')).toEqual([]);
    // Nothing of it is stored as chat.
    expect(await storedEntries('demo', room)).toEqual([]);

    // Hostile or excessive: a payload over 16 KiB, a topic that is not an id, over 100 destinations, a flood.
    expect((await user.request('sendData', { payload: 'x'.repeat(16 * 1024 + 1) })).error.code).toBe('MALFORMED_MESSAGE');
    expect((await user.request('sendData', { topic: 'a b', payload: 'x' })).error.code).toBe('MALFORMED_MESSAGE');
    expect((await user.request('sendData', { payload: 'x', destinationParticipantIds: Array.from({ length: 101 }, (_, i) => `PA_${i}`) })).error.code).toBe('MALFORMED_MESSAGE');
    const codes: string[] = [];
    for (let i = 0; i < 30; i++) codes.push((await user.request('sendData', { payload: String(i) })).error?.code ?? 'OK');
    expect(codes).toContain('RATE_LIMITED');
  });

  it('delivers messages across replicas in order, redacted, with server ids and times, and keeps them encrypted', async () => {
    const room = `chat-${Date.now()}`;
    const { client: user, join: userJoin } = await joined(sig1.wsUrl, await demoToken({ room, identity: 'ext-42', role: 'end_user' }));
    const { client: agent } = await joined(sig2.wsUrl, await demoToken({ room, identity: 'agent-ann', role: 'agent' }));
    expect(userJoin.messages ?? []).toEqual([]);

    const before = Date.now();
    const first = await user.request('sendMessage', { text: 'hello, my card is 4111 1111 1111 1111', clientMessageId: 'c1' });
    const second = await agent.request('sendMessage', { text: 'thanks, write to me at ann@example.com', clientMessageId: 'c1' });
    expect(first.sendMessage).toMatchObject({ participantId: userJoin.participant.participantId, identity: 'ext-42', role: 'end_user', text: 'hello, my card is [CARD]', redactedKinds: ['card'] });
    expect(first.sendMessage.messageId).toMatch(/^MS_/);
    expect(Number(first.sendMessage.sentAtMs)).toBeGreaterThanOrEqual(before);
    expect(second.sendMessage.text).toBe('thanks, write to me at [EMAIL]');
    expect(second.sendMessage.messageId > first.sendMessage.messageId).toBe(true);

    // Each side hears both messages once, in the same order, the sender included.
    for (const client of [user, agent]) {
      await waitFor(() => notificationsOf(client, 'message').length >= 2, 5_000, 'both messages');
      expect(notificationsOf(client, 'message').map((m) => m.messageId)).toEqual([first.sendMessage.messageId, second.sendMessage.messageId]);
    }
    expect(notificationsOf(agent, 'message')[0].text).not.toContain('4111');

    // Stored sealed: neither the original nor the redacted text appears in the stream.
    const stored = await storedEntries('demo', room);
    expect(stored).toHaveLength(2);
    for (const entry of stored) {
      expect(entry.includes('4111')).toBe(false);
      expect(entry.includes('hello')).toBe(false);
      expect(entry.includes('thanks')).toBe(false);
    }

    // A late joiner (and a resume) gets the conversation as history.
    const { join: lateJoin } = await joined(sig2.wsUrl, await demoToken({ room, identity: 'agent-bob', role: 'agent' }));
    expect(lateJoin.messages.map((m: { text: string }) => m.text)).toEqual(['hello, my card is [CARD]', 'thanks, write to me at [EMAIL]']);
    user.close();
    const resumed = await (await clients.open(sig2.wsUrl)).request('resume', { resumeToken: userJoin.resumeToken, protocolVersion: 1 });
    expect(resumed.error).toBeUndefined();
    expect(resumed.resume.messages.map((m: { messageId: string }) => m.messageId)).toEqual([first.sendMessage.messageId, second.sendMessage.messageId]);
  });

  it('stores a retried message once', async () => {
    const room = `chat-retry-${Date.now()}`;
    const { client } = await joined(sig1.wsUrl, await demoToken({ room, identity: 'u', role: 'end_user' }));
    const a = await client.request('sendMessage', { text: 'only once', clientMessageId: 'same-id' });
    const b = await client.request('sendMessage', { text: 'only once', clientMessageId: 'same-id' });
    expect(b.sendMessage.messageId).toBe(a.sendMessage.messageId);
    expect(await storedEntries('demo', room)).toHaveLength(1);
    // The room is told once.
    await waitFor(() => notificationsOf(client, 'message').length === 1, 5_000, 'the notification');
    // A duplicate would be published before the retry was answered and cross the same NATS hop
    // as the first notice (milliseconds); a second covers a loaded machine.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(notificationsOf(client, 'message')).toHaveLength(1);
  });

  it('refuses oversized and empty messages and rate-limits a flood, without disturbing anyone else', async () => {
    const room = `chat-limits-${Date.now()}`;
    const { client: flooder } = await joined(sig1.wsUrl, await demoToken({ room, identity: 'flood', role: 'end_user' }));
    const { client: other } = await joined(sig1.wsUrl, await demoToken({ room, identity: 'calm', role: 'agent' }));
    expect((await flooder.request('sendMessage', { text: 'x'.repeat(201) })).error).toMatchObject({ code: 'MESSAGE_TOO_LARGE' });
    expect((await flooder.request('sendMessage', { text: '   ' })).error).toMatchObject({ code: 'BAD_REQUEST' });
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => flooder.request('sendMessage', { text: `spam ${i}` })));
    const limited = results.filter((r) => r.error?.code === 'RATE_LIMITED');
    expect(limited.length).toBeGreaterThanOrEqual(3);
    expect(limited[0].error.retryAfterMs).toBeGreaterThan(0);
    expect(results.filter((r) => r.sendMessage).length).toBeLessThanOrEqual(5);
    // The other participant and the flooder's connection are fine.
    expect((await other.request('sendMessage', { text: 'still here' })).sendMessage.text).toBe('still here');
    expect(flooder.ws.readyState).toBe(flooder.ws.OPEN);
    expect(await storedEntries('demo', room)).toHaveLength(results.filter((r) => r.sendMessage).length + 1);
  });

  it('lets an agent redact a message for everyone and in storage; an end user may not', async () => {
    const room = `chat-redact-${Date.now()}`;
    const { client: user } = await joined(sig1.wsUrl, await demoToken({ room, identity: 'u', role: 'end_user' }));
    const { client: agent, join: agentJoin } = await joined(sig2.wsUrl, await demoToken({ room, identity: 'a', role: 'agent' }));
    const sent = (await user.request('sendMessage', { text: 'my mother maiden name is Smith' })).sendMessage;
    expect((await user.request('redactMessage', { messageId: sent.messageId })).error).toMatchObject({ code: 'PERMISSION_DENIED' });
    expect((await agent.request('redactMessage', { messageId: 'MS_nope' })).error).toMatchObject({ code: 'NOT_FOUND' });
    expect((await agent.request('redactMessage', { messageId: sent.messageId })).error).toBeUndefined();
    await waitFor(() => notificationsOf(user, 'messageRedacted').length === 1, 5_000, 'redaction notice');
    expect(notificationsOf(user, 'messageRedacted')[0]).toEqual({ messageId: sent.messageId, by: agentJoin.participant.participantId });
    const { join: later } = await joined(sig1.wsUrl, await demoToken({ room, identity: 'b', role: 'agent' }));
    expect(later.messages).toHaveLength(1);
    expect(later.messages[0]).toMatchObject({ messageId: sent.messageId, redacted: true, redactedBy: agentJoin.participant.participantId });
    expect(later.messages[0].text ?? '').toBe('');
    // The original entry is erased; only the replacement is stored.
    expect(await storedEntries('demo', room)).toHaveLength(1);
  });

  it("keeps tenants apart and applies each tenant's redaction policy", async () => {
    const room = `chat-tenants-${Date.now()}`;
    const { client: demoUser } = await joined(sig1.wsUrl, await demoToken({ room, identity: 'u', role: 'end_user' }));
    await demoUser.request('sendMessage', { text: 'demo secret' });
    const { client: globexUser, join } = await joined(sig1.wsUrl, await globexToken({ room, identity: 'g', role: 'end_user' }));
    expect(join.messages ?? []).toEqual([]);
    // globex redacts only emails: the card number stays.
    const sent = (await globexUser.request('sendMessage', { text: 'card 4111 1111 1111 1111, mail g@example.com' })).sendMessage;
    expect(sent.text).toBe('card 4111 1111 1111 1111, mail [EMAIL]');
    // A leak would be published to the room before the send was answered, on the same replica
    // as the demo user; a second covers a loaded machine.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(notificationsOf(demoUser, 'message').map((m) => m.text)).toEqual(['demo secret']);
  });

  it('stores the transcript when the room ends, announces it, and deletes the conversation', async () => {
    const room = `chat-transcript-${Date.now()}`;
    const transcripts = await readTranscripts(nc);
    const { client: user } = await joined(sig1.wsUrl, await demoToken({ room, identity: 'ext-7', role: 'end_user' }));
    const { client: agent } = await joined(sig2.wsUrl, await demoToken({ room, identity: 'agent-7', role: 'agent' }));
    await user.request('sendMessage', { text: 'card 4111-1111-1111-1111 please' });
    const redactMe = (await user.request('sendMessage', { text: 'my password is hunter2' })).sendMessage;
    await agent.request('sendMessage', { text: 'got it' });
    await agent.request('redactMessage', { messageId: redactMe.messageId });
    await user.request('leave');
    await agent.request('leave');

    const ready = await transcripts.forRoom(room, 10_000);
    expect(ready).toMatchObject({ tenant: 'demo', room, messageCount: 3 });
    expect(ready.contacts.map((c) => c.externalId).sort()).toEqual(['agent-7', 'ext-7']);
    expect(ready.artifacts.map((a) => a.contentType).sort()).toEqual(['application/json', 'text/plain']);

    const artifacts = await ArtifactStore.open(nc, new StaticKeyring({ demo: DEMO_TENANT_KEK }));
    const json = JSON.parse((await artifacts.get('demo', ready.artifacts.find((a) => a.contentType === 'application/json')!.artifactId)).data.toString());
    expect(json.messages.map((m: { text: string }) => m.text)).toEqual(['card [CARD] please', '', 'got it']);
    expect(json.messages[1].redacted).toBe(true);
    const text = (await artifacts.get('demo', ready.artifacts.find((a) => a.contentType === 'text/plain')!.artifactId)).data.toString();
    expect(text).toContain('ext-7 (end_user): card [CARD] please');
    expect(text).toContain('[message redacted]');
    expect(text).not.toContain('4111');
    expect(text).not.toContain('hunter2');
    // Another tenant cannot read it.
    await expect(artifacts.get('globex', ready.artifacts[0]!.artifactId)).rejects.toMatchObject({ code: 'NOT_FOUND' });

    // Nothing of the conversation is left in the chat stream or the key bucket.
    await waitFor(async () => (await storedEntries('demo', room)).length === 0, 5_000, 'chat purged');
    const keys = await new Kvm(nc).open(buckets.chatKeys);
    const key = await keys.get(kvKeys.room('demo', room));
    expect(key === null || key.operation !== 'PUT').toBe(true);
  });
});
