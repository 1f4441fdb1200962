import type { SmartAction as SmartActionInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { deliver } from '../deliver.js';
import { ErrorCode, GatewayError } from '../errors.js';
import type { Emit } from '../events.js';
import { httpError, httpFetch } from '../http.js';
import { canvasToPng, captureFrame } from '../media/capture.js';
import type { SignalingClient } from '../signaling/SignalingClient.js';
import type { RoomEvents, SmartAction, SmartActionKind, SmartActionUpload, Source } from '../types.js';
import { SmartActionLog, smartActionFrom } from './SmartActionLog.js';
import { createDeviceKey, signChallenge } from './webauthn.js';

/** What Smart Actions need of their room. */
export interface SmartActionsContext {
  signaling: Pick<SignalingClient, 'request' | 'whenConnected' | 'sessionToken'>;
  /** The signaling server's HTTP side, where uploads and attachment URLs go. */
  httpBase: string;
  /** Throws ROOM_CLOSED once the room was left or disconnected. */
  assertOpen(): void;
  /** Lets the room announce what it held back since connect() before anything newer is taken in. */
  announceHeldBack(): void;
  localParticipantId(): string;
  /** The track published for a source, if it is still live (what a screenshot is taken of). */
  liveLocalTrack(source: Source): MediaStreamTrack | undefined;
  emit: Emit<Pick<RoomEvents, 'smartAction'>>;
}

type Answer = { decline: boolean; webauthnResponse: Record<string, unknown> | undefined };

/**
 * The room's Smart Actions: agents ask and fetch attachments, end users answer with a photo, a
 * screenshot or a verification with their device key. Each method is documented on Room.
 */
export class SmartActions {
  private readonly log = new SmartActionLog();

  constructor(private readonly context: SmartActionsContext) {}

  get actions(): readonly SmartAction[] {
    return this.log.actions;
  }

  async request(kind: SmartActionKind, participantId: string): Promise<SmartAction> {
    const { signaling } = this.context;
    this.context.assertOpen();
    await signaling.whenConnected();
    return this.take(await signaling.request('requestSmartAction', { kind, participantId }));
  }

  async attachmentUrl(artifactId: string): Promise<string> {
    const { signaling, httpBase } = this.context;
    this.context.assertOpen();
    const { url } = await deliver(
      signaling,
      () => signaling.request('artifactUrl', { artifactId }),
      () => undefined,
    );
    return /^https?:\/\//.test(url) ? url : `${httpBase}${url.startsWith('/') ? '' : '/'}${url}`;
  }

  async fetchAttachment(artifactId: string): Promise<Blob> {
    const response = await httpFetch(await this.attachmentUrl(artifactId), { cache: 'no-store' });
    if (!response.ok) throw await httpError(response);
    return response.blob();
  }

  async sendPhoto(actionId: string, photo: Blob): Promise<SmartActionUpload> {
    this.pendingForMe(actionId, 'photo');
    if (!(photo instanceof Blob)) throw new GatewayError(ErrorCode.BAD_REQUEST, 'a photo is a Blob or File');
    return this.upload(actionId, photo);
  }

  async sendScreenshot(actionId: string, source?: HTMLCanvasElement | MediaStreamTrack): Promise<SmartActionUpload> {
    this.pendingForMe(actionId, 'screenshot');
    const screen = this.context.liveLocalTrack('screen');
    const camera = this.context.liveLocalTrack('camera');
    let png: Blob;
    if (screen) png = await captureFrame(screen);
    else if (source && isTrack(source)) png = await captureFrame(source);
    else if (source) png = await canvasToPng(source);
    else if (camera) png = await captureFrame(camera);
    else throw new GatewayError(ErrorCode.INVALID_STATE, 'nothing to capture: share the screen first');
    return this.upload(actionId, png);
  }

  async decline(actionId: string): Promise<SmartAction> {
    this.pendingForMe(actionId);
    return this.answer(actionId, { decline: true, webauthnResponse: undefined });
  }

  async verifyDevice(actionId: string): Promise<SmartAction> {
    this.context.assertOpen();
    const action = this.log.get(actionId);
    if (!action) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such Smart Action in this room');
    if (action.kind !== 'verification') throw new GatewayError(ErrorCode.BAD_REQUEST, `a ${action.kind} is answered by uploading it`);
    if (action.state !== 'requested') return action;
    this.pendingForMe(actionId, 'verification');
    const optionsJSON = action.webauthnOptions;
    if (!optionsJSON) throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'the verification carries no WebAuthn options');
    const webauthnResponse = await signChallenge(optionsJSON);
    return this.answer(actionId, { decline: false, webauthnResponse });
  }

  async registerDeviceKey(): Promise<string> {
    const { signaling } = this.context;
    this.context.assertOpen();
    await signaling.whenConnected();
    const options = await signaling.request('deviceKeyOptions', {});
    if (!options) throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'the server sent no registration options');
    const response = await createDeviceKey(options);
    // On the same connection when possible: the server keeps the challenge with the session.
    const { credentialId } = await signaling.request('registerDeviceKey', { response });
    return credentialId;
  }

  /** Takes in a copy of a Smart Action (a notification, a snapshot, a response) and returns the room's copy. */
  take(info: SmartActionInfo): SmartAction {
    this.context.announceHeldBack();
    const changed = this.log.upsert(info);
    if (changed) this.context.emit('smartAction', changed);
    return this.log.get(info.actionId) ?? smartActionFrom(info);
  }

  /** Sends the end user's answer, once: repeated after a cut only if the action is still open. */
  private answer(actionId: string, answer: Answer): Promise<SmartAction> {
    const { signaling } = this.context;
    return deliver(
      signaling,
      async () => this.take(await signaling.request('answerSmartAction', { actionId, ...answer })),
      () => {
        const action = this.log.get(actionId);
        return action && action.state !== 'requested' ? action : undefined;
      },
    );
  }

  /** Checks locally what the server would refuse anyway, before asking the user for anything. */
  private pendingForMe(actionId: string, kind?: SmartActionKind): SmartAction {
    this.context.assertOpen();
    const action = this.log.get(actionId);
    if (!action) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such Smart Action in this room');
    if (kind && action.kind !== kind) throw new GatewayError(ErrorCode.BAD_REQUEST, `this Smart Action asks for a ${action.kind}, not a ${kind}`);
    if (action.participantId !== this.context.localParticipantId()) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this Smart Action asks someone else');
    if (action.state !== 'requested') throw new GatewayError(ErrorCode.INVALID_STATE, `this Smart Action is already ${action.state}`);
    return action;
  }

  /** Uploads a photo or screenshot over HTTP, authenticated by the session's token. */
  private async upload(actionId: string, image: Blob): Promise<SmartActionUpload> {
    const { signaling, httpBase } = this.context;
    await signaling.whenConnected();
    const response = await httpFetch(`${httpBase}/v1/smart-actions/${encodeURIComponent(actionId)}/upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${signaling.sessionToken}`, 'content-type': image.type || 'application/octet-stream' },
      body: image,
    });
    if (response.status !== 201) throw await httpError(response);
    const body = (await response.json()) as Partial<SmartActionUpload>;
    return { actionId: body.actionId ?? actionId, artifactId: body.artifactId ?? '', contentType: body.contentType ?? '', sizeBytes: Number(body.sizeBytes ?? 0) };
  }
}

function isTrack(source: HTMLCanvasElement | MediaStreamTrack): source is MediaStreamTrack {
  return typeof (source as MediaStreamTrack).kind === 'string' && typeof (source as MediaStreamTrack).readyState === 'string';
}
