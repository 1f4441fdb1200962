import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT } from 'jose';
import type { NatsConnection } from '@nats-io/transport-node';
import { Objm } from '@nats-io/obj';
import { Kvm } from '@nats-io/kv';
import { DeviceKeys, buckets } from '@gateway/common';
import { NatsServer, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { TestClients } from '../support/wsClient.js';
import { readAttachments, readTranscripts } from '../support/events.js';
import { GLOBEX_TENANT, demoToken, globexToken, twoTenantEnv } from '../support/tokens.js';
import { exifOf, imageFormat, photoWithGps } from '../support/images.js';
import { OpenApiContract, specFiles } from '../support/openapi.js';

const MAX_PHOTO_BYTES = 200_000;

/**
 * Smart Actions against real processes: an agent asks for a photo, a screenshot or a
 * verification; the end user uploads over HTTP with the session token; the agent views the
 * attachment through a short-lived tenant-scoped URL. WebAuthn itself is exercised in Chromium
 * (test/e2e/chat.test.ts).
 */
describe('Smart Actions', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig: Awaited<ReturnType<typeof startSignalingProcess>>;
  const clients = new TestClients();

  beforeAll(async () => {
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    sig = await startSignalingProcess({
      natsUrl: nats.url,
      env: {
        ...twoTenantEnv,
        SIGNALING_MAX_PHOTO_BYTES: String(MAX_PHOTO_BYTES),
        SIGNALING_ATTACHMENT_URL_SECONDS: '2',
      },
    });
    nc = await nats.connect();
  }, 60_000);

  afterAll(async () => {
    clients.closeAll();
    await nc?.close();
    await sig?.stop();
    await sfu?.stop();
    await nats?.stop();
  });

  const joined = (token: string) => clients.join(sig.wsUrl, token);

  async function call(room = `sa-${Date.now()}-${Math.random().toString(36).slice(2, 6)}`) {
    const user = await joined(await demoToken({ room, identity: 'ext-99', role: 'end_user' }));
    const agent = await joined(await demoToken({ room, identity: 'agent-1', role: 'agent' }));
    return { room, user, agent };
  }

  const contract = OpenApiContract.load(specFiles.signaling);
  /** A request to signaling whose answer must be one docs/openapi/signaling.yaml documents. */
  const checkedFetch = async (target: string, init: RequestInit = {}) => {
    const response = await fetch(`${sig.url}${target}`, init);
    await contract.assertAnswer(init.method ?? 'GET', target, response);
    return response;
  };

  const upload = (actionId: string, resumeToken: string, body: Buffer, contentType = 'image/jpeg') =>
    checkedFetch(`/v1/smart-actions/${actionId}/upload`, { method: 'POST', headers: { authorization: `Bearer ${resumeToken}`, 'content-type': contentType }, body: new Uint8Array(body) });

  it('takes a photo: the end user is asked, uploads it, and the agent sees it without EXIF or GPS', async () => {
    const { user, agent } = await call();
    const requested = await agent.client.request('requestSmartAction', { kind: 'photo' });
    expect(requested.requestSmartAction).toMatchObject({ kind: 'photo', state: 'requested', participantId: user.join.participant.participantId, externalId: 'ext-99' });
    const actionId = requested.requestSmartAction.actionId;
    const notice = await user.client.waitForNotification('smartAction');
    expect(notice).toMatchObject({ actionId, kind: 'photo', state: 'requested' });

    const photo = await photoWithGps();
    expect((await exifOf(photo))?.GPSInfo?.GPSLatitude).toEqual([48, 51, 29.64]);
    const response = await upload(actionId, user.join.resumeToken, photo);
    expect(response.status).toBe(201);
    const body = await response.json();
    expect(body).toMatchObject({ actionId, contentType: 'image/jpeg' });

    // The agent is told, asks for a URL and fetches the picture.
    await waitFor(() => agent.client.notifications.find((n) => n.smartAction?.state === 'completed'), 5_000, 'completion notice');
    const { artifactUrl } = await agent.client.request('artifactUrl', { artifactId: body.artifactId });
    expect(artifactUrl.url).toMatch(/^\/v1\/artifacts\//);
    const fetched = await checkedFetch(artifactUrl.url);
    expect(fetched.status).toBe(200);
    expect(fetched.headers.get('content-type')).toBe('image/jpeg');
    expect(fetched.headers.get('cache-control')).toBe('no-store');
    const image = Buffer.from(await fetched.arrayBuffer());
    expect(await imageFormat(image)).toBe('jpeg');
    expect(await exifOf(image)).toBeUndefined();
    expect(image.includes(Buffer.from('PhoneCo'))).toBe(false);

    // The end user may not ask for URLs; the URL expires.
    expect((await user.client.request('artifactUrl', { artifactId: body.artifactId })).error).toMatchObject({ code: 'PERMISSION_DENIED' });
    await new Promise((r) => setTimeout(r, 3_000));
    const expired = await checkedFetch(artifactUrl.url);
    expect(expired.status).toBe(401);
    expect((await expired.json()).error.code).toBe('TOKEN_EXPIRED');
  });

  it('refuses uploads that are too large, not images, unauthenticated, from someone else or answered already', async () => {
    const { user, agent } = await call();
    const actionId = (await agent.client.request('requestSmartAction', { kind: 'photo' })).requestSmartAction.actionId;

    const tooLarge = await upload(actionId, user.join.resumeToken, Buffer.alloc(MAX_PHOTO_BYTES + 1, 1));
    expect(tooLarge.status).toBe(413);
    expect((await tooLarge.json()).error.code).toBe('MESSAGE_TOO_LARGE');
    // Declared as a JPEG, named like one, but the bytes are a script.
    const fake = await upload(actionId, user.join.resumeToken, Buffer.from('<script>alert(1)</script>'.repeat(20)));
    expect(fake.status).toBe(415);
    expect((await fake.json()).error.code).toBe('UNSUPPORTED_CONTENT');
    const unauthenticated = await upload(actionId, `${user.join.resumeToken.slice(0, -3)}xyz`, await photoWithGps());
    expect(unauthenticated.status).toBe(401);
    const byAgent = await upload(actionId, agent.join.resumeToken, await photoWithGps());
    expect(byAgent.status).toBe(403);
    const unknown = await upload('SA_nope', user.join.resumeToken, await photoWithGps());
    expect(unknown.status).toBe(404);

    // None of that consumed the request: a good photo still answers it, once.
    expect((await upload(actionId, user.join.resumeToken, await photoWithGps())).status).toBe(201);
    const again = await upload(actionId, user.join.resumeToken, await photoWithGps());
    expect(again.status).toBe(409);
    expect((await again.json()).error.code).toBe('INVALID_STATE');
  });

  it('takes one of two uploads racing for the same request, and keeps no copy of the other', async () => {
    const { user, agent } = await call();
    const actionId = (await agent.client.request('requestSmartAction', { kind: 'photo' })).requestSmartAction.actionId;
    const store = await new Objm(nc).open(buckets.conversationArtifacts);
    const storedCount = async () => (await store.list()).filter((o) => !o.deleted && o.name.startsWith('demo.')).length;
    const before = await storedCount();
    const photo = await photoWithGps();
    const answers = await Promise.all([upload(actionId, user.join.resumeToken, photo), upload(actionId, user.join.resumeToken, photo)]);
    // The loser is refused while the winner's upload is in progress (one upload per action at a
    // time, LIMIT_EXCEEDED) or after it settled the action (INVALID_STATE); either way untaken.
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses[0]).toBe(201);
    expect([409, 429]).toContain(statuses[1]);
    const loser = answers.find((a) => a.status !== 201)!;
    expect(['INVALID_STATE', 'LIMIT_EXCEEDED']).toContain((await loser.json()).error.code);
    expect(await storedCount()).toBe(before + 1);
  });

  it('does not take a verification with a key registered after the agent asked', async () => {
    const { user, agent } = await call();
    const keys = new DeviceKeys(await new Kvm(nc).open(buckets.deviceKeys));
    const key = (id: string) => ({ id, publicKey: Buffer.from('not-a-real-key').toString('base64'), counter: 0, transports: [], registeredAtMs: Date.now() });
    // A key the end user registered earlier lets the agent ask.
    await keys.add('demo', 'ext-99', key('earlier-key-000000000001'));
    await new Promise((r) => setTimeout(r, 5));
    const actionId = (await agent.client.request('requestSmartAction', { kind: 'verification' })).requestSmartAction.actionId;
    // While the request is open, a key is registered from the session, and the answer uses it.
    await new Promise((r) => setTimeout(r, 5));
    await keys.add('demo', 'ext-99', key('late-key-0000000000000002'));
    try {
      const answer = await user.client.request('answerSmartAction', {
        actionId,
        webauthnResponse: {
          id: 'late-key-0000000000000002',
          rawId: 'late-key-0000000000000002',
          type: 'public-key',
          response: { clientDataJSON: 'e30', authenticatorData: 'AAAA', signature: 'AAAA' },
        },
      });
      expect(answer.answerSmartAction).toMatchObject({ state: 'completed', reason: 'the key used was registered after the request' });
      expect(answer.answerSmartAction.verified ?? false).toBe(false);
      // Both registrations were kept (the list is changed with compare-and-set).
      expect((await keys.list('demo', 'ext-99')).map((k) => k.id)).toEqual(['earlier-key-000000000001', 'late-key-0000000000000002']);
    } finally {
      // The other tests' end user has no device key.
      await keys.removeAll('demo', 'ext-99');
    }
  });

  it('lets the same end user answer after a rejoin, and lets other origins upload (CORS, bearer token)', async () => {
    const { room, user, agent } = await call();
    const actionId = (await agent.client.request('requestSmartAction', { kind: 'photo' })).requestSmartAction.actionId;
    // The session is lost; the app joins again with a new token for the same end user.
    await user.client.request('leave');
    const again = await joined(await demoToken({ room, identity: 'ext-99', role: 'end_user' }));
    expect(again.join.smartActions.map((a: { actionId: string }) => a.actionId)).toContain(actionId);
    const preflight = await checkedFetch(`/v1/smart-actions/${actionId}/upload`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.customer.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('*');
    expect(preflight.headers.get('access-control-allow-headers')).toContain('authorization');
    const response = await upload(actionId, again.join.resumeToken, await photoWithGps());
    expect(response.status).toBe(201);
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    // Another end user of the room may not answer it.
    const other = await joined(await demoToken({ room, identity: 'ext-100', role: 'end_user' }));
    const second = (await agent.client.request('requestSmartAction', { kind: 'photo', participantId: again.join.participant.participantId })).requestSmartAction;
    expect((await upload(second.actionId, other.join.resumeToken, await photoWithGps())).status).toBe(403);
  });

  it('keeps attachment URLs to their tenant and refuses forged ones', async () => {
    const { user, agent } = await call();
    const actionId = (await agent.client.request('requestSmartAction', { kind: 'photo' })).requestSmartAction.actionId;
    const { artifactId } = await (await upload(actionId, user.join.resumeToken, await photoWithGps())).json();

    // An agent of another tenant in a room of the same name knows nothing of it.
    const other = await joined(await globexToken({ room: 'anything', identity: 'g-agent', role: 'agent' }));
    expect((await other.client.request('artifactUrl', { artifactId })).error).toMatchObject({ code: 'NOT_FOUND' });
    // A URL signed by the other tenant for this artifact opens nothing.
    const forged = await new SignJWT({ tnt: 'globex', art: artifactId })
      .setProtectedHeader({ alg: 'HS256', typ: 'gateway-artifact' })
      .setExpirationTime('1m')
      .sign(new TextEncoder().encode(GLOBEX_TENANT.apiSecret));
    expect((await checkedFetch(`/v1/artifacts/${artifactId}?token=${forged}`)).status).toBe(404);
    // Claiming the demo tenant without its secret fails the signature.
    const unsigned = await new SignJWT({ tnt: 'demo', art: artifactId })
      .setProtectedHeader({ alg: 'HS256', typ: 'gateway-artifact' })
      .setExpirationTime('1m')
      .sign(new TextEncoder().encode(GLOBEX_TENANT.apiSecret));
    expect((await checkedFetch(`/v1/artifacts/${artifactId}?token=${unsigned}`)).status).toBe(401);
    expect((await checkedFetch(`/v1/artifacts/${artifactId}`)).status).toBe(401);
  });

  it('records declines and verifications of end users without a device key, and only agents ask', async () => {
    const { user, agent } = await call();
    expect((await user.client.request('requestSmartAction', { kind: 'photo' })).error).toMatchObject({ code: 'PERMISSION_DENIED' });
    expect((await agent.client.request('requestSmartAction', { kind: 'selfie' })).error).toMatchObject({ code: 'MALFORMED_MESSAGE' });
    const screenshot = (await agent.client.request('requestSmartAction', { kind: 'screenshot' })).requestSmartAction;
    expect((await agent.client.request('answerSmartAction', { actionId: screenshot.actionId, decline: true })).error).toMatchObject({ code: 'PERMISSION_DENIED' });
    expect((await user.client.request('answerSmartAction', { actionId: screenshot.actionId, decline: true })).answerSmartAction).toMatchObject({ state: 'declined' });
    const verification = (await agent.client.request('requestSmartAction', { kind: 'verification' })).requestSmartAction;
    expect(verification).toMatchObject({ state: 'failed', reason: 'no device key is registered for this end user' });
  });

  it("announces attachments and the actions' outcomes when the room ends", async () => {
    const { room, user, agent } = await call();
    const attachments = await readAttachments(nc);
    const transcripts = await readTranscripts(nc);
    const actionId = (await agent.client.request('requestSmartAction', { kind: 'photo' })).requestSmartAction.actionId;
    const { artifactId } = await (await upload(actionId, user.join.resumeToken, await photoWithGps())).json();
    await agent.client.request('requestSmartAction', { kind: 'verification' });
    await user.client.request('leave');
    await agent.client.request('leave');

    const attachment = await attachments.forRoom(room, 10_000);
    expect(attachment.artifact).toMatchObject({ artifactId, kind: 'photo', contentType: 'image/jpeg' });
    expect(attachment.contact).toMatchObject({ externalId: 'ext-99', role: 'end_user' });
    const transcript = await transcripts.forRoom(room, 10_000);
    expect(transcript.messageCount).toBe(0);
    expect(transcript.smartActions.map((a) => [a.kind, a.state])).toEqual([
      ['photo', 'completed'],
      ['verification', 'failed'],
    ]);
  });
});
