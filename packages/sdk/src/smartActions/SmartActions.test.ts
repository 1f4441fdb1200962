import { afterEach, describe, expect, it, vi } from 'vitest';
import { Room } from '../Room.js';
import { FakeSignaling, JPEG, PNG, agent, type Frame } from '../testing/FakeSignaling.js';
import { connectOptions, record, until } from '../testing/roomHelpers.js';
import type { ConnectOptions } from '../types.js';

// The browser's WebAuthn prompt, as a device holding the key 'cred-1' would answer it.
const webauthn = vi.hoisted(() => ({
  startAuthentication: vi.fn(async ({ optionsJSON }: { optionsJSON: Record<string, any> }) => ({
    id: 'cred-1',
    rawId: 'cred-1',
    type: 'public-key',
    response: { signed: optionsJSON.challenge },
    clientExtensionResults: {},
  })),
  startRegistration: vi.fn(async ({ optionsJSON }: { optionsJSON: Record<string, any> }) => ({
    id: 'cred-1',
    rawId: 'cred-1',
    type: 'public-key',
    response: { attested: optionsJSON.challenge },
    clientExtensionResults: {},
  })),
}));
vi.mock('@simplewebauthn/browser', () => ({ browserSupportsWebAuthn: () => true, ...webauthn }));

describe('Room Smart Actions', () => {
  let server: FakeSignaling;
  let room: Room | undefined;
  afterEach(async () => {
    await room?.leave();
    await server?.stop();
    room = undefined;
  });

  async function connect(extra: Partial<ConnectOptions> = {}): Promise<{ room: Room; events: string[] }> {
    room = await Room.connect(connectOptions(server, extra));
    return { room, events: record(room) };
  }

  /** Records the room's smartAction events as short strings. */
  function recordActions(room: Room): string[] {
    const out: string[] = [];
    room.on('smartAction', (a) => out.push(`${a.actionId}:${a.kind}:${a.state}`));
    return out;
  }
  /** The agent (another participant) asks us, as the server announces it. */
  function askMe(room: Room, kind: string, extra: Frame = {}): Frame {
    const action: Frame = {
      actionId: `SA_${kind}`,
      kind,
      state: 'requested',
      requestedBy: 'PA_a',
      participantId: room.localParticipant.id,
      requestedAtMs: '1700000000500',
      externalId: 'me',
      ...extra,
    };
    server.smartActions.push(action);
    server.notify({ smartAction: action });
    return action;
  }

  it('announces the actions the room had after connect, then each new action and change of state once, with numbers', async () => {
    server = await FakeSignaling.start();
    server.others.set('PA_a', agent('PA_a'));
    server.smartActions.push({
      actionId: 'SA_old',
      kind: 'photo',
      state: 'completed',
      requestedBy: 'PA_a',
      participantId: 'PA_1',
      requestedAtMs: '1700000000000',
      completedAtMs: '1700000000200',
      artifactId: 'AT_old',
      contentType: 'image/jpeg',
      sizeBytes: '1234',
      externalId: 'me',
    });
    const { room } = await connect();
    const actions = recordActions(room);
    expect(room.smartActions).toEqual([]);
    await until(() => actions.length === 1, 'the actions of the join');
    expect(room.smartActions[0]).toEqual({
      actionId: 'SA_old',
      kind: 'photo',
      state: 'completed',
      requestedBy: 'PA_a',
      participantId: 'PA_1',
      externalId: 'me',
      requestedAtMs: 1_700_000_000_000,
      completedAtMs: 1_700_000_000_200,
      artifactId: 'AT_old',
      contentType: 'image/jpeg',
      sizeBytes: 1234,
      webauthnOptions: undefined,
      verified: false,
      reason: '',
    });

    const asked = askMe(room, 'screenshot');
    server.notify({ smartAction: asked });
    await until(() => actions.length === 2, 'the request');
    // Answered elsewhere; then a late copy of the request, which must not undo it.
    server.notify({ smartAction: { ...asked, state: 'declined', reason: 'the end user declined', completedAtMs: 1_700_000_000_900 } });
    server.notify({ smartAction: asked });
    await until(() => actions.length === 3, 'the decline');
    await new Promise((r) => setTimeout(r, 30));
    expect(actions).toEqual(['SA_old:photo:completed', 'SA_screenshot:screenshot:requested', 'SA_screenshot:screenshot:declined']);
    expect(room.smartActions.map((a) => `${a.actionId}:${a.state}`)).toEqual(['SA_old:completed', 'SA_screenshot:declined']);
    expect(room.smartActions[1]).toMatchObject({ completedAtMs: 1_700_000_000_900, reason: 'the end user declined' });
  });

  it('agents: requests an action (announced once although the notification comes too) and gets absolute attachment URLs', async () => {
    server = await FakeSignaling.start();
    const { room } = await connect();
    const actions = recordActions(room);
    const action = await room.requestSmartAction('photo', 'PA_u');
    expect(action).toMatchObject({ kind: 'photo', state: 'requested', participantId: 'PA_u', requestedAtMs: expect.any(Number) });
    expect(room.smartActions).toEqual([action]);
    expect(server.log.find((l) => l.method === 'requestSmartAction')!.params).toEqual({ kind: 'photo', participantId: 'PA_u' });
    // A verification of someone without a device key fails at once, with the reason.
    const verification = await room.requestSmartAction('verification');
    expect(verification).toMatchObject({ state: 'failed', reason: 'no device key is registered for this end user' });

    // The end user uploads (as signaling would take it); the agent sees it and fetches the picture.
    const upload = await fetch(`${server.url}/v1/smart-actions/${action.actionId}/upload`, { method: 'POST', headers: { authorization: 'Bearer rt-PA_u' }, body: new Uint8Array(PNG) });
    expect(upload.status).toBe(201);
    await until(() => room.smartActions[0]!.state === 'completed', 'the completion');
    await new Promise((r) => setTimeout(r, 30));
    expect(actions).toEqual([`${action.actionId}:photo:requested`, `${verification.actionId}:verification:failed`, `${action.actionId}:photo:completed`]);
    const { artifactId, sizeBytes, contentType } = room.smartActions[0]!;
    expect({ sizeBytes, contentType }).toEqual({ sizeBytes: PNG.length, contentType: 'image/png' });
    const url = await room.attachmentUrl(artifactId);
    expect(url).toBe(`${server.url}/v1/artifacts/${artifactId}?token=tk`);
    const blob = await room.fetchAttachment(artifactId);
    expect(Buffer.from(await blob.arrayBuffer())).toEqual(PNG);
    await expect(room.attachmentUrl('AT_nope')).rejects.toMatchObject({ name: 'GatewayError', code: 'NOT_FOUND' });
  });

  it("end users: uploads a photo with the session token as bearer, and rejects with the server's codes", async () => {
    server = await FakeSignaling.start();
    server.others.set('PA_a', agent('PA_a'));
    const { room } = await connect();
    const actions = recordActions(room);
    const { actionId } = askMe(room, 'photo');
    await until(() => actions.length === 1, 'the request');

    await expect(room.sendPhoto(actionId, new Blob(['<script>'], { type: 'image/jpeg' }))).rejects.toMatchObject({ code: 'UNSUPPORTED_CONTENT', message: 'the file is not a JPEG, PNG or WebP image' });
    server.onUpload = () => ({ status: 413, body: { error: { code: 'MESSAGE_TOO_LARGE', message: 'a photo is limited to 10 bytes' } } });
    await expect(room.sendPhoto(actionId, new Blob([JPEG], { type: 'image/jpeg' }))).rejects.toMatchObject({ code: 'MESSAGE_TOO_LARGE' });
    // A proxy's answer without the server's body: the status says it.
    server.onUpload = () => ({ status: 403, body: {} });
    await expect(room.sendPhoto(actionId, new Blob([JPEG]))).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    server.onUpload = undefined;

    const sent = await room.sendPhoto(actionId, new Blob([JPEG], { type: 'image/jpeg' }));
    expect(sent).toEqual({ actionId, artifactId: expect.stringMatching(/^AT_/), contentType: 'image/jpeg', sizeBytes: JPEG.length });
    const last = server.uploads.at(-1)!;
    expect(last).toMatchObject({ authorization: `Bearer rt-${room.localParticipant.id}`, contentType: 'image/jpeg' });
    expect(last.body).toEqual(JPEG);
    await until(() => actions.length === 2, 'the completion');
    expect(room.smartActions[0]).toMatchObject({ state: 'completed', artifactId: sent.artifactId });

    // Refused before anything is sent: answered already, unknown, someone else's, the wrong kind.
    const uploads = server.uploads.length;
    await expect(room.sendPhoto(actionId, new Blob([JPEG]))).rejects.toMatchObject({ code: 'INVALID_STATE' });
    await expect(room.sendPhoto('SA_nope', new Blob([JPEG]))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    askMe(room, 'screenshot', { participantId: 'PA_other' });
    await until(() => actions.length === 3, 'the other request');
    await expect(room.sendScreenshot('SA_screenshot')).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    await expect(room.sendPhoto('SA_screenshot', new Blob([JPEG]))).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    expect(server.uploads.length).toBe(uploads);
  });

  it('end users: a screenshot is a PNG of the given canvas when nothing is shared; without either there is nothing to capture', async () => {
    server = await FakeSignaling.start();
    const { room } = await connect();
    const actions = recordActions(room);
    const { actionId } = askMe(room, 'screenshot');
    await until(() => actions.length === 1, 'the request');
    await expect(room.sendScreenshot(actionId)).rejects.toMatchObject({ code: 'INVALID_STATE', message: expect.stringContaining('share the screen') });
    const canvas = { toBlob: (done: (b: Blob | null) => void, type: string) => done(new Blob([PNG], { type })) } as unknown as HTMLCanvasElement;
    const sent = await room.sendScreenshot(actionId, canvas);
    expect(sent.contentType).toBe('image/png');
    expect(server.uploads.at(-1)).toMatchObject({ contentType: 'image/png', body: PNG });
  });

  it('end users: declines; registers a device key and verifies with it; a failed verification needs nothing', async () => {
    server = await FakeSignaling.start();
    const { room } = await connect();
    const actions = recordActions(room);
    const photo = askMe(room, 'photo');
    await until(() => actions.length === 1, 'the request');
    const declined = await room.declineSmartAction(photo.actionId);
    expect(declined).toMatchObject({ actionId: photo.actionId, state: 'declined', reason: 'the end user declined' });
    expect(server.log.find((l) => l.method === 'answerSmartAction')!.params).toEqual({ actionId: photo.actionId, decline: true });

    expect(await room.registerDeviceKey()).toBe('cred-1');
    expect(webauthn.startRegistration).toHaveBeenCalledWith({ optionsJSON: { challenge: 'reg-1', rp: { id: 'localhost', name: 'Gateway' } } });
    const verification = askMe(room, 'verification', { webauthnOptions: { challenge: 'ch-v', rpId: 'localhost' } });
    await until(() => actions.length === 3, 'the verification request');
    const verified = await room.verifyDevice(verification.actionId);
    expect(verified).toMatchObject({ state: 'completed', verified: true, completedAtMs: expect.any(Number) });
    expect(webauthn.startAuthentication).toHaveBeenCalledWith({ optionsJSON: { challenge: 'ch-v', rpId: 'localhost' } });
    // Asked again for the same action: the answer stands, nothing is signed again.
    const calls = webauthn.startAuthentication.mock.calls.length;
    expect(await room.verifyDevice(verification.actionId)).toBe(verified);
    expect(webauthn.startAuthentication.mock.calls.length).toBe(calls);

    // The user cancels the prompt: PERMISSION_DENIED, and the action stays open.
    const second = askMe(room, 'verification', { actionId: 'SA_v2', webauthnOptions: { challenge: 'ch-2' } });
    await until(() => actions.length === 5, 'the second request');
    webauthn.startAuthentication.mockRejectedValueOnce(Object.assign(new Error('The operation either timed out or was not allowed.'), { name: 'NotAllowedError' }));
    await expect(room.verifyDevice(second.actionId)).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    expect(room.smartActions.find((a) => a.actionId === 'SA_v2')!.state).toBe('requested');

    const failed = askMe(room, 'verification', { actionId: 'SA_v3', state: 'failed', reason: 'no device key is registered for this end user' });
    await until(() => actions.length === 6, 'the failed request');
    expect(await room.verifyDevice(failed.actionId)).toMatchObject({ state: 'failed' });
    expect(webauthn.startAuthentication.mock.calls.length).toBe(calls + 1);
  });

  it('announces what changed while the connection was away, once', async () => {
    server = await FakeSignaling.start();
    const { room, events } = await connect();
    const actions = recordActions(room);
    const asked = askMe(room, 'photo');
    await until(() => actions.length === 1, 'the request');
    room._debugDropSocket();
    Object.assign(asked, { state: 'declined', completedAtMs: '1700000000900' });
    await until(() => events.includes('reconnected:resumed'), 'the resume');
    await until(() => actions.length === 2, 'the change');
    await new Promise((r) => setTimeout(r, 30));
    expect(actions).toEqual(['SA_photo:photo:requested', 'SA_photo:photo:declined']);
  });
});
