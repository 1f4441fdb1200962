import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { ArtifactStore, DEMO_TENANT_KEK, StaticKeyring, streams } from '@gateway/common';
import { NatsServer, startCrmSyncProcess, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { AdminClient, GatewayApiError, mintJoinToken, RoomClient, type WebhookEvent, WebhookReceiver, WebhookVerificationError } from '../../packages/server-sdk/src/index.js';
import { verifyJoinToken } from '../../services/signaling/src/auth/tokens.js';
import { DEMO_TENANT } from '../../services/signaling/src/config.js';
import { S3ContractServer } from '../contracts/s3/server.js';
import { publishTranscript } from '../support/crmSync.js';
import { metricValue } from '../support/metrics.js';
import { OpenApiContract, specFiles } from '../support/openapi.js';
import { opusRtpParameters } from '../support/rtpParameters.js';
import { GLOBEX_TENANT, twoTenantEnv } from '../support/tokens.js';
import { TestClients } from '../support/wsClient.js';

interface Received {
  headers: Record<string, string>;
  body: string;
}

/**
 * A customer's webhook endpoint on this machine: records every request as it came, and answers
 * 500 to the first `failFirst` of each event id (so crm-sync must retry) or to every one when
 * `alwaysFail`.
 */
class Endpoint {
  readonly requests: Received[] = [];
  private readonly server: http.Server;
  private readonly failures = new Map<string, number>();
  constructor(
    private readonly failFirst = 0,
    private readonly alwaysFail = false,
    /** Takes requests and never answers. */
    private readonly hang = false,
  ) {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
        this.requests.push({ headers, body: Buffer.concat(chunks).toString('utf8') });
        if (this.hang) return;
        const id = headers['webhook-id'] ?? '';
        const failed = this.failures.get(id) ?? 0;
        if (this.alwaysFail || failed < this.failFirst) {
          this.failures.set(id, failed + 1);
          res.writeHead(500).end('not now');
        } else res.writeHead(204).end();
      });
    });
  }
  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks`;
  }
  /** The requests carrying events of this type. */
  of(type: WebhookEvent['type']): Received[] {
    return this.requests.filter((r) => (JSON.parse(r.body) as { type: string }).type === type);
  }
  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Fetch that checks every admin API exchange the server SDK makes against the OpenAPI document. */
function contractFetch(contract: OpenApiContract): typeof fetch {
  return async (input, init) => {
    const url = new URL(String(input));
    const response = await fetch(input, init);
    const text = await response.clone().text();
    const problems = contract.problems({
      method: init?.method ?? 'GET',
      target: `${url.pathname}${url.search}`,
      requestBody: typeof init?.body === 'string' ? JSON.parse(init.body) : undefined,
      status: response.status,
      headers: response.headers,
      body: text ? JSON.parse(text) : undefined,
    });
    if (problems.length > 0) throw new Error(`departs from the OpenAPI contract:\n  ${problems.join('\n  ')}`);
    return response;
  };
}

/**
 * Webhooks end to end (docs/webhooks.md): real nats-server, SFU, signaling and crm-sync; the
 * tenant's backend is the server SDK (endpoints made through the admin API, tokens minted
 * locally, events verified by WebhookReceiver) and an HTTP endpoint on this machine that fails
 * on purpose.
 */
describe('webhooks', () => {
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  const clients = new TestClients();
  const flaky = new Endpoint(2);
  const broken = new Endpoint(0, true);
  const hanging = new Endpoint(0, false, true);
  let admin: AdminClient;
  let flakyUrl: string;
  let brokenUrl: string;
  let hangingUrl: string;
  const credentials = { tenant: DEMO_TENANT.name, apiKey: DEMO_TENANT.apiKey, apiSecret: DEMO_TENANT.apiSecret };

  beforeAll(async () => {
    nats = await NatsServer.start();
    [sfu, flakyUrl, brokenUrl, hangingUrl] = await Promise.all([startSfuProcess({ natsUrl: nats.url }), flaky.start(), broken.start(), hanging.start()]);
    [signaling, crm] = await Promise.all([
      startSignalingProcess({ natsUrl: nats.url, env: twoTenantEnv }),
      startCrmSyncProcess({
        natsUrl: nats.url,
        env: { ...twoTenantEnv, CRM_SYNC_WEBHOOK_RETRY_BASE_SECONDS: '0.2', CRM_SYNC_WEBHOOK_RETRY_MAX_SECONDS: '0.5', CRM_SYNC_WEBHOOK_MAX_ATTEMPTS: '4', CRM_SYNC_WEBHOOK_TIMEOUT_SECONDS: '2' },
      }),
    ]);
    admin = new AdminClient({ url: crm.url, credentials, fetch: contractFetch(OpenApiContract.load(specFiles.crmSyncAdmin)) });
  }, 90_000);

  // Each test starts with no endpoint (one that failed half-way leaves none behind).
  afterEach(async () => {
    for (const webhook of await admin.listWebhooks()) await admin.deleteWebhook(webhook.webhookId);
  });

  afterAll(async () => {
    clients.closeAll();
    await Promise.all([crm?.stop(), signaling?.stop(), sfu?.stop()]);
    await nats?.stop();
    await Promise.all([flaky.close(), broken.close(), hanging.close()]);
  });

  it('mints join tokens locally that signaling takes, with the same claims as its own', async () => {
    const { token, expiresAt } = await mintJoinToken(credentials, { room: 'wh-token', identity: 'u-1', role: 'agent', canRecord: true, name: 'Ann', phoneNumber: '+15551234567' });
    const grant = await verifyJoinToken([DEMO_TENANT], token);
    expect(grant).toMatchObject({ tenant: 'demo', room: 'wh-token', identity: 'u-1', role: 'agent', name: 'Ann', expiresAt, contact: { phoneNumber: '+15551234567' } });
    expect(grant.grants).toEqual({ canPublish: true, canSubscribe: true, sources: ['camera', 'microphone', 'screen'], canRecord: true, canUpdateMetadata: false });
    const { token: check } = await mintJoinToken(credentials, { room: 'wh-token', identity: 'u-2', role: 'end_user', preflight: true });
    expect((await verifyJoinToken([DEMO_TENANT], check)).preflight).toBe(true);
    expect(grant.preflight).toBe(false);
    await expect(mintJoinToken(credentials, { room: 'r', identity: 'u', role: 'end_user', canRecord: true })).rejects.toThrow(/agents/);
    await expect(mintJoinToken(credentials, { room: 'no spaces', identity: 'u', role: 'end_user' })).rejects.toThrow(/room/);
    // Signed with another tenant's secret under this key: refused by signaling.
    const { token: forged } = await mintJoinToken({ ...credentials, apiSecret: GLOBEX_TENANT.apiSecret }, { room: 'r', identity: 'u', role: 'agent' });
    await expect(verifyJoinToken([DEMO_TENANT], forged)).rejects.toThrow(/invalid/);
  });

  it('posts signed events of a call, retried until taken, each verified by the server SDK', async () => {
    const { webhook, secret } = await admin.createWebhook({ url: flakyUrl, description: 'all events' });
    expect(secret).toMatch(/^whsec_/);
    expect(webhook).toMatchObject({ url: flakyUrl, events: ['*'], enabled: true });
    expect(await admin.listWebhooks()).toEqual([webhook]);

    const { token } = await mintJoinToken(credentials, {
      room: 'wh-call',
      identity: 'ext-42',
      role: 'end_user',
      name: 'Bea',
      phoneNumber: '+15551234567',
      crmContactId: 'CRM-9',
      deviceIds: ['device-1'],
    });
    const { client, join } = await clients.join(signaling.wsUrl, token);
    const participantId = join.participant.participantId as string;
    const send = (await client.request('createTransport', { direction: 'send' })).createTransport;
    const trackId = (await client.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'microphone' })).produce.producerId as string;
    await client.request('leave');

    const receiver = new WebhookReceiver(secret);
    const taken = new Map<string, WebhookEvent>();
    const expected: Array<WebhookEvent['type']> = ['room.started', 'participant.joined', 'track.published', 'participant.left', 'room.ended'];
    await waitFor(
      async () => {
        for (const request of flaky.requests.slice()) {
          const id = request.headers['webhook-id']!;
          if (taken.has(id)) continue;
          // Every request verifies, failed ones included (they were answered 500, not refused).
          taken.set(id, await receiver.receive(request.body, request.headers).catch(() => undefined as never));
        }
        const types = [...taken.values()].filter(Boolean).map((e) => e.type);
        return expected.every((t) => types.includes(t) && flaky.of(t).length >= 3) ? true : undefined;
      },
      30_000,
      'every event of the call, each posted three times',
    );
    const byType = (type: WebhookEvent['type']) => [...taken.values()].find((e) => e?.type === type)!;
    expect(byType('participant.joined').data).toEqual({ room: { name: 'wh-call' }, participant: { participantId, identity: 'ext-42', role: 'end_user', name: 'Bea' } });
    expect(byType('track.published').data).toMatchObject({ participant: { participantId }, track: { trackId, source: 'microphone', kind: 'audio' } });
    expect(byType('participant.left').data).toMatchObject({ participant: { participantId } });
    const started = byType('room.started') as Extract<WebhookEvent, { type: 'room.started' }>;
    const ended = byType('room.ended') as Extract<WebhookEvent, { type: 'room.ended' }>;
    expect(ended.data.room.sessionId).toBe(started.data.room.sessionId);
    // Each event was answered 500 twice, then taken: three posts with the same id and body, each
    // signed anew; nothing was posted a fourth time.
    for (const type of expected) {
      const posts = flaky.of(type);
      expect(posts, type).toHaveLength(3);
      expect(new Set(posts.map((p) => p.headers['webhook-id'])).size, type).toBe(1);
      expect(new Set(posts.map((p) => p.body)).size, type).toBe(1);
    }
    // Nothing of the contact details is ever in an event.
    expect(flaky.requests.map((r) => r.body).join('')).not.toMatch(/5551234567|CRM-9|device-1/);
    expect(flaky.requests.map((r) => r.body).join('')).not.toMatch(/phoneNumber|crmContactId|deviceIds|\+\d{7}/);
    expect(await metricValue(crm.opsPort, 'gateway_webhook_deliveries_total', { type: 'room.ended', result: 'delivered' })).toBe(1);
    await admin.deleteWebhook(webhook.webhookId);
  });

  it("publishes nothing for a tenant without endpoints, and reaches an endpoint created after the tenant's first rooms", async () => {
    // Every event signaling publishes passes on its subject, in the order published.
    const nc = await nats.connect();
    const seen: string[] = [];
    const subscription = nc.subscribe('gateway.demo.webhook.event', {
      callback: (_, message) => {
        const event = JSON.parse(message.string()) as { type: string; data: { room?: { name: string } } };
        seen.push(`${event.data.room?.name} ${event.type}`);
      },
    });
    try {
      await nc.flush();
      const before = await mintJoinToken(credentials, { room: 'wh-before', identity: 'ext-1', role: 'end_user' });
      const first = await clients.join(signaling.wsUrl, before.token);
      await first.client.request('leave');

      const { webhook } = await admin.createWebhook({ url: flakyUrl, events: ['room.started', 'participant.joined'] });
      const after = await mintJoinToken(credentials, { room: 'wh-after', identity: 'ext-2', role: 'end_user' });
      const second = await clients.join(signaling.wsUrl, after.token);
      await waitFor(() => (flaky.of('participant.joined').some((r) => r.body.includes('"wh-after"')) ? true : undefined), 20_000, "the later room's join posted");
      expect(flaky.of('room.started').filter((r) => r.body.includes('"wh-after"')).length).toBeGreaterThan(0);
      // The first room's join and leave were never published (they would have passed before the
      // later room's); its end may come after the endpoint was made, and is then published.
      expect(seen).toContain('wh-after participant.joined');
      expect(seen.filter((each) => each.startsWith('wh-before ') && each !== 'wh-before room.ended')).toEqual([]);
      await second.client.request('leave');
      await admin.deleteWebhook(webhook.webhookId);
    } finally {
      subscription.unsubscribe();
      await nc.close();
    }
  });

  it('refuses a forged or replayed request, and a body changed in transit', async () => {
    const { webhook, secret } = await admin.createWebhook({ url: flakyUrl, events: ['webhook.test'] });
    const before = flaky.requests.length;
    const { eventId } = await admin.testWebhook(webhook.webhookId);
    const posted = await waitFor(() => flaky.requests.slice(before).find((r) => r.headers['webhook-id'] === eventId && flaky.of('webhook.test').length >= 3), 15_000, 'the test event');
    const last = flaky.requests.filter((r) => r.headers['webhook-id'] === eventId).at(-1)!;
    const receiver = new WebhookReceiver(secret);
    expect((await receiver.receive(last.body, last.headers)).type).toBe('webhook.test');
    const refusal = (promise: Promise<unknown>) =>
      promise.then(
        () => 'taken',
        (error: unknown) => (error instanceof WebhookVerificationError ? error.code : String(error)),
      );
    expect(await refusal(receiver.receive(last.body, last.headers))).toBe('REPLAYED');
    expect(await refusal(receiver.receive(last.body.replace('webhook.test', 'room.started'), last.headers))).toBe('BAD_SIGNATURE');
    expect(await refusal(new WebhookReceiver(`whsec_${Buffer.alloc(32, 1).toString('base64')}`).receive(posted.body, posted.headers))).toBe('BAD_SIGNATURE');
    await admin.deleteWebhook(webhook.webhookId);
  });

  it('signs with both secrets while a rotation overlaps, then with the new one only', async () => {
    const { webhook, secret: old } = await admin.createWebhook({ url: flakyUrl, events: ['webhook.test'] });
    const rotated = await admin.rotateWebhookSecret(webhook.webhookId, { overlapSeconds: 3600 });
    expect(rotated.secret).not.toBe(old);
    expect(rotated.webhook.previousSecretValidUntilMs).toBeGreaterThan(Date.now());
    const lastPostOf = async (eventId: string) => {
      await waitFor(() => flaky.requests.filter((r) => r.headers['webhook-id'] === eventId).length >= 3 || undefined, 15_000, 'the test event');
      return flaky.requests.filter((r) => r.headers['webhook-id'] === eventId).at(-1)!;
    };
    const during = await lastPostOf((await admin.testWebhook(webhook.webhookId)).eventId);
    expect(during.headers['webhook-signature']!.split(' ')).toHaveLength(2);
    expect((await new WebhookReceiver(old).receive(during.body, during.headers)).type).toBe('webhook.test');
    expect((await new WebhookReceiver(rotated.secret).receive(during.body, during.headers)).type).toBe('webhook.test');
    const again = await admin.rotateWebhookSecret(webhook.webhookId, { overlapSeconds: 0 });
    const after = await lastPostOf((await admin.testWebhook(webhook.webhookId)).eventId);
    expect(after.headers['webhook-signature']!.split(' ')).toHaveLength(1);
    await expect(new WebhookReceiver(rotated.secret).receive(after.body, after.headers)).rejects.toThrow(WebhookVerificationError);
    expect((await new WebhookReceiver(again.secret).receive(after.body, after.headers)).type).toBe('webhook.test');
    await admin.deleteWebhook(webhook.webhookId);
  });

  it('gives an endpoint up after its last attempt, posts nothing to a disabled one, and keeps each tenant to its own', async () => {
    const failing = await admin.createWebhook({ url: brokenUrl, events: ['webhook.test'] });
    const { eventId } = await admin.testWebhook(failing.webhook.webhookId);
    await waitFor(async () => ((await metricValue(crm.opsPort, 'gateway_webhook_deliveries_total', { type: 'webhook.test', result: 'given_up' })) ?? 0) >= 1 || undefined, 20_000, 'given up');
    expect(broken.requests.filter((r) => r.headers['webhook-id'] === eventId)).toHaveLength(4);

    const disabled = await admin.updateWebhook(failing.webhook.webhookId, { enabled: false });
    expect(disabled.enabled).toBe(false);
    const before = broken.requests.length;
    await admin.testWebhook(failing.webhook.webhookId);
    await waitFor(async () => ((await metricValue(crm.opsPort, 'gateway_webhook_deliveries_total', { type: 'webhook.test', result: 'dropped' })) ?? 0) >= 1 || undefined, 10_000, 'dropped');
    expect(broken.requests.length).toBe(before);

    const globex = new AdminClient({ url: crm.url, credentials: GLOBEX_TENANT });
    expect(await globex.listWebhooks()).toEqual([]);
    const refused = await globex.getWebhook(failing.webhook.webhookId).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(GatewayApiError);
    expect((refused as GatewayApiError).status).toBe(404);
    await admin.deleteWebhook(failing.webhook.webhookId);
  });

  it('tells the backend when a delivery to its destinations is done', async () => {
    const s3 = await S3ContractServer.start({ buckets: ['wh-calls'] });
    const nc = await nats.connect();
    try {
      const { webhook, secret } = await admin.createWebhook({ url: flakyUrl, events: ['delivery.succeeded', 'delivery.failed'] });
      await admin.putConnector('bucket', { type: 's3', config: { bucket: 'wh-calls', region: s3.region, endpoint: s3.url }, secrets: { ...S3ContractServer.defaultCredential } });
      const store = await ArtifactStore.open(nc, new StaticKeyring({ demo: DEMO_TENANT_KEK }));
      await publishTranscript(nc, store, { conversationId: 'CV_webhook1', files: [{ contentType: 'text/plain', bytes: Buffer.from('hello') }] });
      // (The calls of the tests before end in deliveries of their own: this one is found by its id.)
      const ours = () => flaky.of('delivery.succeeded').filter((r) => r.body.includes('"CV_webhook1"'));
      const post = await waitFor(() => ours().at(2), 30_000, 'delivery.succeeded, after two refusals');
      const event = await new WebhookReceiver(secret).receive(post.body, post.headers);
      expect(event).toMatchObject({ type: 'delivery.succeeded', data: { room: { name: 'r-1' }, delivery: { deliveryId: 'CV_webhook1', kind: 'transcript' } } });
      expect(s3.object('wh-calls', 'gateway/demo/transcript/CV_webhook1/manifest.json')).toBeDefined();
      await admin.deleteConnector('bucket');
      await admin.deleteWebhook(webhook.webhookId);
    } finally {
      await nc.close();
      await s3.close();
    }
  });

  it('erases the webhook events still to be posted that name a person who asked for erasure', async () => {
    const { webhook } = await admin.createWebhook({ url: hangingUrl, events: ['participant.joined'] });
    const { token } = await mintJoinToken(credentials, { room: 'wh-erase', identity: 'ext-erase', role: 'end_user' });
    const { client } = await clients.join(signaling.wsUrl, token);
    // The first post hangs (and times out after 2 s); the erasure comes meanwhile.
    const first = await waitFor(() => hanging.of('participant.joined')[0], 10_000, 'the join posted');
    await admin.eraseDataSubject({ externalId: 'ext-erase' });
    client.close();
    // Past the timeout and several retry delays: the event was not posted again.
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    expect(hanging.requests.filter((r) => r.headers['webhook-id'] === first.headers['webhook-id'])).toHaveLength(1);
    await admin.deleteWebhook(webhook.webhookId);
  });

  it('erases hostile messages on the webhooks stream, posts nothing of them, and goes on', async () => {
    const { webhook, secret } = await admin.createWebhook({ url: flakyUrl, events: ['webhook.test'] });
    const nc = await nats.connect();
    try {
      const js = jetstream(nc);
      const valid = { id: 'evt_hostile', type: 'webhook.test', createdAtMs: Date.now(), data: { webhookId: webhook.webhookId } };
      const hostile: Array<[string, string | Uint8Array]> = [
        ['gateway.demo.webhook.event', 'not json'],
        ['gateway.demo.webhook.event', JSON.stringify({ ...valid, type: 'room.exploded' })],
        ['gateway.demo.webhook.event', JSON.stringify({ ...valid, extra: 'field' })],
        ['gateway.demo.webhook.event', JSON.stringify({ ...valid, data: { room: { name: '../../x' } }, type: 'room.started' })],
        ['gateway.demo.webhook.event', `{"id":"${'x'.repeat(40_000)}"}`],
        ['gateway.demo.webhook.event', new Uint8Array([0xff, 0xfe, 0x00, 0x01])],
        [`gateway.demo.webhook.delivery.${webhook.webhookId}`, JSON.stringify({ ...valid, id: 'evt_bad id' })],
        [`gateway.demo.webhook.delivery.${webhook.webhookId}`, JSON.stringify(JSON.parse('{"__proto__": {"type": "webhook.test"}}'))],
        // Another tenant's endpoint named under this tenant: that endpoint is not found here.
        ['gateway.globex.webhook.delivery.WH_nothere', JSON.stringify(valid)],
      ];
      for (const [subject, data] of hostile) await js.publish(subject, data);
      // Then a genuine one, which goes through.
      await js.publish(`gateway.demo.webhook.delivery.${webhook.webhookId}`, JSON.stringify(valid));
      const post = await waitFor(() => flaky.requests.filter((r) => r.headers['webhook-id'] === 'evt_hostile').at(2), 15_000, 'the genuine event after the hostile ones');
      expect((await new WebhookReceiver(secret).receive(post.body, post.headers)).type).toBe('webhook.test');
      // Nothing hostile was posted, and nothing of it is left on the stream.
      expect(flaky.requests.every((r) => !r.body.includes('exploded') && !r.body.includes('../../x'))).toBe(true);
      await waitFor(async () => ((await (await jetstreamManager(nc)).streams.info(streams.webhooks.name)).state.messages === 0 ? true : undefined), 10_000, 'the stream empty');
      expect(crm.logs).not.toMatch(/uncaught|unhandled/i);
    } finally {
      await nc.close();
    }
  });

  it('refuses bad endpoints with a clear code and stores nothing', async () => {
    const codeOf = (promise: Promise<unknown>) =>
      promise.then(
        () => 'stored',
        (error: unknown) => `${(error as GatewayApiError).status} ${(error as GatewayApiError).code}`,
      );
    expect(await codeOf(admin.createWebhook({ url: 'ftp://example.com/x' }))).toBe('400 BAD_REQUEST');
    expect(await codeOf(admin.createWebhook({ url: 'https://user:pass@example.com/x' }))).toBe('400 BAD_REQUEST');
    expect(await codeOf(admin.createWebhook({ url: flakyUrl, events: ['room.exploded' as never] }))).toBe('400 BAD_REQUEST');
    expect(await codeOf(admin.createWebhook({ url: flakyUrl, secret: 'mine' } as never))).toBe('400 BAD_REQUEST');
    expect(await codeOf(admin.updateWebhook('WH_missing', { enabled: false }))).toBe('404 NOT_FOUND');
    expect(await admin.listWebhooks()).toEqual([]);
    // The room API through the server SDK, on the same tenant.
    const rooms = new RoomClient({ url: signaling.url, credentials });
    expect((await rooms.listRooms()).every(({ room, participants }) => typeof room === 'string' && participants >= 1)).toBe(true);
    expect(await codeOf(rooms.listParticipants('no-such-room'))).toBe('404 NOT_FOUND');
  });
});
