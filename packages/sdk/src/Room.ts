import { Device } from 'mediasoup-client';
import type { types } from 'mediasoup-client';
import type { JoinResponse, Notification, ParticipantInfo, TransportInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { Emitter } from './emitter.js';
import { GatewayError } from './errors.js';
import { SignalingClient, type SignalingClientOptions } from './SignalingClient.js';

export type Source = 'camera' | 'microphone' | 'screen';
export type RemoteSource = Source | 'screen_audio';

export interface Participant {
  id: string;
  identity: string;
  role: string;
  /** Remote tracks by source. */
  tracks: Map<RemoteSource, MediaStreamTrack>;
}

export interface TrackEvent {
  participant: Participant;
  source: RemoteSource;
  track: MediaStreamTrack;
}

export type RoomEvents = {
  participantJoined: [participant: Participant];
  participantLeft: [participant: Participant];
  track: [event: TrackEvent];
  trackEnded: [event: TrackEvent];
  activeSpeaker: [participant: Participant | undefined];
  reconnecting: [];
  reconnected: [];
  disconnected: [info: { code: number; reason: string }];
};

export interface ConnectOptions extends SignalingClientOptions {
  /** Signaling URL: ws(s)://host/ws, or the http(s) base of the server. */
  url: string;
  token: string;
  /** How long to keep trying to get back after the connection drops. */
  reconnectForMs?: number;
}

export interface PublishOptions {
  camera?: boolean | MediaStreamTrack;
  microphone?: boolean | MediaStreamTrack;
  screen?: boolean | MediaStreamTrack;
}

/** Close codes after which trying again is pointless (see CloseCode in the protocol). */
const FINAL_CLOSE_CODES = new Set([4000, 4001, 4004, 1000]);
const REJOIN_CLOSE_CODE = 4010;

// Three simulcast layers for the camera: receivers on weak links get the lower ones.
const CAMERA_ENCODINGS: RTCRtpEncodingParameters[] = [
  { scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { scaleResolutionDownBy: 1, maxBitrate: 1_200_000 },
];

const kindOf: Record<Source, 'audio' | 'video'> = { camera: 'video', microphone: 'audio', screen: 'video' };

interface RemoteConsumer {
  consumer: types.Consumer;
  participantId: string;
  source: RemoteSource;
}

export function signalingUrl(url: string): string {
  const u = new URL(url);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/ws';
  return u.toString();
}

/**
 * A joined room. Publishes local tracks, receives everyone else's, and gets itself back after
 * network trouble: ICE restart for the media path, session resume for signaling, and a full
 * rejoin (republishing the same tracks) when the session cannot be resumed.
 */
export class Room extends Emitter<RoomEvents> {
  readonly participants = new Map<string, Participant>();
  localParticipant!: Participant;
  readonly localTracks = new Map<Source, MediaStreamTrack>();
  name = '';
  private client!: SignalingClient;
  private device: Device | undefined;
  private sendTransport: types.Transport | undefined;
  private recvTransport: types.Transport | undefined;
  private readonly producers = new Map<Source, types.Producer>();
  /** by producer id */
  private readonly remote = new Map<string, RemoteConsumer>();
  private resumeToken = '';
  private grants = { canPublish: false, canSubscribe: false, sources: [] as string[] };
  private state: 'connected' | 'reconnecting' | 'closed' = 'connected';
  /** Serialises consume work so notifications and reconciliation don't race. */
  private consumeChain: Promise<void> = Promise.resolve();

  private constructor(private readonly options: ConnectOptions) {
    super();
  }

  static async connect(options: ConnectOptions): Promise<Room> {
    const room = new Room(options);
    await room.join();
    return room;
  }

  get connectionState(): 'connected' | 'reconnecting' | 'closed' {
    return this.state;
  }

  async publish(options: PublishOptions): Promise<void> {
    const wanted = (['camera', 'microphone', 'screen'] as const).filter((s) => options[s]);
    for (const source of wanted) {
      if (this.producers.has(source)) continue;
      const given = options[source];
      const track = typeof given === 'object' ? given : await capture(source);
      this.localTracks.set(source, track);
      try {
        await this.produce(source, track);
      } catch (error) {
        this.localTracks.delete(source);
        if (typeof given !== 'object') track.stop();
        throw error;
      }
      // The browser's "stop sharing" button ends the screen track.
      if (source === 'screen') track.addEventListener('ended', () => void this.unpublish('screen').catch(() => undefined));
    }
  }

  async unpublish(source: Source): Promise<void> {
    const producer = this.producers.get(source);
    const track = this.localTracks.get(source);
    this.producers.delete(source);
    this.localTracks.delete(source);
    if (producer) {
      producer.close();
      await this.client.request('closeProducer', { producerId: producer.id }).catch(() => undefined);
    }
    track?.stop();
  }

  /** Leaves the room for good: media closed for everyone, no reconnection. */
  async leave(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    await this.client.request('leave', {}).catch(() => undefined);
    this.client.close(1000, 'left');
    this.teardownMedia();
    for (const track of this.localTracks.values()) track.stop();
    this.localTracks.clear();
    this.emit('disconnected', { code: 4000, reason: 'left' });
  }

  /** Per-consumer receive statistics, handy for quality indicators and tests. */
  async getReceiveStats(): Promise<Array<{ participantId: string; source: RemoteSource; kind: string; stats: RTCStatsReport }>> {
    return Promise.all(
      [...this.remote.values()].map(async (r) => ({ participantId: r.participantId, source: r.source, kind: r.consumer.kind, stats: await r.consumer.getStats() })),
    );
  }

  async getStats(): Promise<{ send?: RTCStatsReport; recv?: RTCStatsReport }> {
    return { send: await this.sendTransport?.getStats(), recv: await this.recvTransport?.getStats() };
  }

  /** Test hook: drops the WebSocket as a network cut would (no leave). */
  _debugDropSocket(): void {
    this.client.drop(4901, 'dropped for test');
  }

  // ---------------------------------------------------------------- joining

  private async openClient(): Promise<SignalingClient> {
    const client = await SignalingClient.open(signalingUrl(this.options.url), this.options);
    client.on('notification', (event) => this.onNotification(event));
    client.on('close', (code, reason) => this.onSocketClosed(client, code, reason));
    return client;
  }

  private async join(): Promise<void> {
    this.client = await this.openClient();
    let response: JoinResponse;
    try {
      response = await this.client.request('join', { token: this.options.token, protocolVersion: 1 });
    } catch (error) {
      this.client.close(1000, 'join failed');
      throw error;
    }
    await this.setUp(response);
  }

  private async setUp(response: JoinResponse): Promise<void> {
    this.applyJoin(response);
    if (!this.device) {
      this.device = new Device();
      await this.device.load({ routerRtpCapabilities: response.routerRtpCapabilities as types.RtpCapabilities });
    }
    if (this.grants.canPublish) this.sendTransport = await this.createTransport('send');
    if (this.grants.canSubscribe) this.recvTransport = await this.createTransport('recv');
    for (const participant of response.participants) this.addParticipant(participant, false);
    await this.consumeAll(response.participants);
  }

  private applyJoin(response: JoinResponse): void {
    const me = response.participant!;
    this.name = response.room;
    this.resumeToken = response.resumeToken;
    this.grants = { canPublish: response.grants?.canPublish ?? false, canSubscribe: response.grants?.canSubscribe ?? false, sources: response.grants?.sources ?? [] };
    this.localParticipant = { id: me.participantId, identity: me.identity, role: me.role, tracks: new Map() };
  }

  private async createTransport(direction: 'send' | 'recv'): Promise<types.Transport> {
    const info: TransportInfo = await this.client.request('createTransport', { direction });
    const options = {
      id: info.transportId,
      iceParameters: info.iceParameters as types.IceParameters,
      iceCandidates: info.iceCandidates as unknown as types.IceCandidate[],
      dtlsParameters: info.dtlsParameters as types.DtlsParameters,
    };
    const transport = direction === 'send' ? this.device!.createSendTransport(options) : this.device!.createRecvTransport(options);
    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      this.client
        .request('connectTransport', { transportId: transport.id, dtlsParameters: dtlsParameters as unknown as Record<string, unknown> })
        .then(() => callback(), errback);
    });
    if (direction === 'send') {
      transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
        this.client
          .request('produce', {
            transportId: transport.id,
            kind,
            rtpParameters: rtpParameters as unknown as Record<string, unknown>,
            source: String(appData.source),
            paused: false,
          })
          .then(({ producerId }) => callback({ id: producerId }), errback);
      });
    }
    transport.on('connectionstatechange', (state) => {
      if (state === 'disconnected' || state === 'failed') this.scheduleIceRestart(transport);
    });
    return transport;
  }

  private async produce(source: Source, track: MediaStreamTrack): Promise<void> {
    if (!this.sendTransport) throw new GatewayError('PERMISSION_DENIED', 'this token may not publish');
    if (track.kind !== kindOf[source]) throw new GatewayError('BAD_REQUEST', `${source} needs a ${kindOf[source]} track`);
    const simulcast = source === 'camera' && (track.getSettings().height ?? 720) >= 360;
    if (source === 'screen') track.contentHint = 'detail';
    const producer = await this.sendTransport.produce({
      track,
      encodings: simulcast ? CAMERA_ENCODINGS : undefined,
      codecOptions: source === 'microphone' ? { opusFec: true, opusDtx: true } : { videoGoogleStartBitrate: 1000 },
      stopTracks: false,
      appData: { source },
    });
    this.producers.set(source, producer);
  }

  // ---------------------------------------------------------------- receiving

  private addParticipant(info: ParticipantInfo, announce: boolean): Participant {
    let participant = this.participants.get(info.participantId);
    if (!participant) {
      participant = { id: info.participantId, identity: info.identity, role: info.role, tracks: new Map() };
      this.participants.set(participant.id, participant);
      if (announce) this.emit('participantJoined', participant);
      else queueMicrotask(() => this.emit('participantJoined', participant!));
    }
    return participant;
  }

  private consumeAll(infos: ParticipantInfo[]): Promise<void> {
    const work = infos.flatMap((p) => p.tracks.map((t) => ({ participantId: p.participantId, producerId: t.producerId })));
    return Promise.all(work.map((w) => this.consume(w.participantId, w.producerId))).then(() => undefined);
  }

  private consume(participantId: string, producerId: string): Promise<void> {
    const run = async () => {
      if (!this.recvTransport || this.remote.has(producerId) || this.state === 'closed') return;
      const info = await this.client.request('consume', {
        producerId,
        rtpCapabilities: this.device!.rtpCapabilities as unknown as Record<string, unknown>,
        transportId: this.recvTransport.id,
      });
      const consumer = await this.recvTransport.consume({
        id: info.consumerId,
        producerId: info.producerId,
        kind: info.kind as 'audio' | 'video',
        rtpParameters: info.rtpParameters as types.RtpParameters,
      });
      const source = info.source as RemoteSource;
      this.remote.set(producerId, { consumer, participantId, source });
      await this.client.request('resumeConsumer', { consumerId: consumer.id });
      const participant = this.participants.get(participantId);
      if (participant) {
        participant.tracks.set(source, consumer.track);
        this.emit('track', { participant, source, track: consumer.track });
      }
    };
    const next = this.consumeChain.then(run, run);
    this.consumeChain = next.catch(() => undefined);
    return next.catch(() => undefined);
  }

  private endRemote(producerId: string): void {
    const remote = this.remote.get(producerId);
    if (!remote) return;
    this.remote.delete(producerId);
    remote.consumer.close();
    const participant = this.participants.get(remote.participantId);
    if (participant && participant.tracks.get(remote.source) === remote.consumer.track) participant.tracks.delete(remote.source);
    if (participant) this.emit('trackEnded', { participant, source: remote.source, track: remote.consumer.track });
  }

  private removeParticipant(participantId: string): void {
    for (const [producerId, r] of [...this.remote]) if (r.participantId === participantId) this.endRemote(producerId);
    const participant = this.participants.get(participantId);
    if (!participant) return;
    this.participants.delete(participantId);
    this.emit('participantLeft', participant);
  }

  private onNotification(event: NonNullable<Notification['event']>): void {
    switch (event.$case) {
      case 'participantJoined':
        this.addParticipant(event.value, true);
        return;
      case 'participantLeft':
        this.removeParticipant(event.value.participantId);
        return;
      case 'producerAdded':
        if (this.participants.has(event.value.participantId) && event.value.track) {
          void this.consume(event.value.participantId, event.value.track.producerId);
        }
        return;
      case 'producerClosed':
        this.endRemote(event.value.producerId);
        return;
      case 'producerPaused':
      case 'producerResumed':
        return;
      case 'activeSpeaker':
        this.emit('activeSpeaker', event.value.participantId === this.localParticipant.id ? this.localParticipant : this.participants.get(event.value.participantId));
        return;
      case 'rejoinRequired':
        // The socket closes with 4010 right after; the close handler rejoins.
        return;
    }
  }

  // ---------------------------------------------------------------- reconnection

  private iceRestartTimers = new Map<string, ReturnType<typeof setTimeout>>();

  private scheduleIceRestart(transport: types.Transport, attempt = 0): void {
    if (this.iceRestartTimers.has(transport.id) || this.state === 'closed') return;
    const delay = Math.min(5_000, 500 * 2 ** attempt);
    this.iceRestartTimers.set(
      transport.id,
      setTimeout(async () => {
        this.iceRestartTimers.delete(transport.id);
        if (transport.closed || transport.connectionState === 'connected' || this.state !== 'connected') return;
        try {
          const { iceParameters } = await this.client.request('restartIce', { transportId: transport.id });
          await transport.restartIce({ iceParameters: iceParameters as types.IceParameters });
        } catch {
          this.scheduleIceRestart(transport, attempt + 1);
        }
      }, delay),
    );
  }

  private onSocketClosed(client: SignalingClient, code: number, reason: string): void {
    if (client !== this.client || this.state === 'closed') return;
    if (FINAL_CLOSE_CODES.has(code)) {
      this.close(code, reason);
      return;
    }
    void this.reconnect(code === REJOIN_CLOSE_CODE);
  }

  private async reconnect(rejoin: boolean): Promise<void> {
    this.state = 'reconnecting';
    this.emit('reconnecting');
    const deadline = Date.now() + (this.options.reconnectForMs ?? 60_000);
    for (let attempt = 0; Date.now() < deadline; attempt++) {
      if ((this.state as string) === 'closed') return;
      try {
        if (!rejoin) {
          try {
            await this.resume();
          } catch (error) {
            const code = (error as GatewayError).code;
            if (code === 'SESSION_EXPIRED' || code === 'UNAUTHENTICATED' || code === 'NOT_FOUND') rejoin = true;
            else throw error;
          }
        }
        if (rejoin) await this.rejoin();
        this.state = 'connected';
        this.emit('reconnected');
        return;
      } catch (error) {
        const code = (error as GatewayError).code;
        if (code === 'TOKEN_EXPIRED' || code === 'PERMISSION_DENIED') break;
        const delay = Math.min(5_000, 250 * 2 ** attempt) * (0.5 + Math.random() / 2);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    this.close(4408, 'could not reconnect');
  }

  /** Takes the same session back: transports, producers and consumers live on in the SFU. */
  private async resume(): Promise<void> {
    const client = await this.openClient();
    let response: JoinResponse;
    try {
      response = await client.request('resume', { resumeToken: this.resumeToken, protocolVersion: 1 });
    } catch (error) {
      client.close(1000, 'resume failed');
      throw error;
    }
    this.client = client;
    // Reconcile what changed while the socket was away.
    const present = new Map(response.participants.map((p) => [p.participantId, p]));
    for (const id of [...this.participants.keys()]) if (!present.has(id)) this.removeParticipant(id);
    const liveProducers = new Set(response.participants.flatMap((p) => p.tracks.map((t) => t.producerId)));
    for (const producerId of [...this.remote.keys()]) if (!liveProducers.has(producerId)) this.endRemote(producerId);
    for (const p of response.participants) this.addParticipant(p, true);
    await this.consumeAll(response.participants);
    // The network may have changed under the media too.
    for (const transport of [this.sendTransport, this.recvTransport]) {
      if (!transport || transport.closed) continue;
      const { iceParameters } = await this.client.request('restartIce', { transportId: transport.id });
      await transport.restartIce({ iceParameters: iceParameters as types.IceParameters });
    }
  }

  /** A new session with the original token, republishing the same local tracks. */
  private async rejoin(): Promise<void> {
    this.teardownMedia();
    for (const id of [...this.participants.keys()]) this.removeParticipant(id);
    await this.join();
    const tracks = [...this.localTracks.entries()];
    for (const [source, track] of tracks) if (track.readyState === 'live') await this.produce(source, track);
  }

  private teardownMedia(): void {
    for (const timer of this.iceRestartTimers.values()) clearTimeout(timer);
    this.iceRestartTimers.clear();
    for (const producerId of [...this.remote.keys()]) this.endRemote(producerId);
    for (const producer of this.producers.values()) producer.close();
    this.producers.clear();
    this.sendTransport?.close();
    this.recvTransport?.close();
    this.sendTransport = undefined;
    this.recvTransport = undefined;
  }

  private close(code: number, reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.client.close(1000, reason);
    this.teardownMedia();
    this.emit('disconnected', { code, reason });
  }
}

async function capture(source: Source): Promise<MediaStreamTrack> {
  const media = navigator.mediaDevices;
  if (source === 'screen') return (await media.getDisplayMedia({ video: { frameRate: 15 }, audio: false })).getVideoTracks()[0]!;
  if (source === 'camera') return (await media.getUserMedia({ video: { width: { ideal: 1280 }, height: { ideal: 720 } } })).getVideoTracks()[0]!;
  return (await media.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } })).getAudioTracks()[0]!;
}
