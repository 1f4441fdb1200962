/**
 * WebRTC peers run by GStreamer's webrtcbin (bench/webrtcbin-peers.py): subscribers that count
 * packets without decoding, and publishers of pre-encoded clips. Against Gateway they speak the
 * signaling protocol like any client; the SDP webrtcbin needs is built here from the SFU's
 * transport, producer and consumer parameters, as a client SDK would.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { TestClient } from '../test/support/wsClient.js';

type Json = Record<string, any>;

/** Opus and VP8 from the router's codecs, with their payload types: what webrtcbin receives. */
function receiveCodecs(router: Json): { audio: Json; video: Json } {
  const codecs = router.codecs as Json[];
  return { audio: codecs.find((c) => c.mimeType === 'audio/opus')!, video: codecs.find((c) => c.mimeType === 'video/VP8')! };
}

function transceiverCaps(codec: Json): string {
  const [kind, name] = (codec.mimeType as string).split('/');
  return `application/x-rtp,media=${kind},encoding-name=${name!.toUpperCase()},payload=${codec.preferredPayloadType},clock-rate=${codec.clockRate}`;
}

function fmtp(parameters: Json | undefined): string {
  return Object.entries(parameters ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(';');
}

/**
 * The SFU's answer to webrtcbin's offer: in each of the offer's m-sections (by mid) the SFU
 * sends one consumer from its ICE-lite transport and takes the DTLS server role. No header
 * extensions and no RTX are negotiated, so webrtcbin demultiplexes by the SSRCs given here.
 */
export function consumerAnswer(offer: string, transport: Json, consumers: Json[]): string {
  const mids = [...offer.matchAll(/^a=mid:(\S+)/gm)].map((m) => m[1]!);
  const fingerprint = (transport.dtlsParameters.fingerprints as Json[]).find((f) => f.algorithm === 'sha-256')!;
  const candidates = (transport.iceCandidates as Json[]).filter((c) => c.protocol === 'udp');
  const lines = ['v=0', `o=- ${Date.now()} 2 IN IP4 127.0.0.1`, 's=-', 't=0 0', 'a=ice-lite', `a=group:BUNDLE ${mids.join(' ')}`];
  consumers.forEach((consumer, index) => {
    const p = consumer.rtpParameters;
    const codecs = p.codecs as Json[];
    lines.push(`m=${consumer.kind} 7 UDP/TLS/RTP/SAVPF ${codecs.map((c) => c.payloadType).join(' ')}`);
    lines.push('c=IN IP4 127.0.0.1', `a=mid:${mids[index]}`, 'a=sendonly', 'a=rtcp-mux', 'a=rtcp-rsize');
    lines.push(`a=ice-ufrag:${transport.iceParameters.usernameFragment}`, `a=ice-pwd:${transport.iceParameters.password}`);
    lines.push(`a=fingerprint:${fingerprint.algorithm} ${fingerprint.value}`, 'a=setup:passive');
    for (const codec of codecs) {
      const [, name] = (codec.mimeType as string).split('/');
      lines.push(`a=rtpmap:${codec.payloadType} ${name}/${codec.clockRate}${codec.channels > 1 ? `/${codec.channels}` : ''}`);
      if (Object.keys(codec.parameters ?? {}).length) lines.push(`a=fmtp:${codec.payloadType} ${fmtp(codec.parameters)}`);
      for (const fb of codec.rtcpFeedback ?? []) lines.push(`a=rtcp-fb:${codec.payloadType} ${fb.type}${fb.parameter ? ` ${fb.parameter}` : ''}`);
    }
    const [encoding] = p.encodings as Json[];
    lines.push(`a=ssrc:${encoding.ssrc} cname:${p.rtcp?.cname ?? 'sfu'}`);
    for (const c of candidates) lines.push(`a=candidate:${c.foundation} 1 udp ${c.priority} ${c.address ?? c.ip} ${c.port} typ ${c.type}`);
    lines.push('a=end-of-candidates');
  });
  return `${lines.join('\r\n')}\r\n`;
}

/** A signaling request whose refusal throws. */
export async function gatewayRequest(client: TestClient, method: string, params: Json): Promise<Json> {
  const response = await client.request(method, params);
  if (response.error) throw new Error(`${method} failed: ${response.error.message}`);
  return response[method];
}

/** webrtcbin's certificate fingerprint, from its offer; it is the DTLS client. */
function clientDtls(offer: string): Json {
  const [, algorithm, value] = /a=fingerprint:(\S+) (\S+)/.exec(offer)!;
  return { role: 'client', fingerprints: [{ algorithm, value }] };
}

/** A VP8 simulcast layer or the only encoding of a video track: its SSRC and its IVF clip. */
export interface PublishedLayer {
  readonly ssrc: number;
  readonly clip: string;
}

export type PublishedTrack = { readonly kind: 'audio'; readonly ssrc: number } | { readonly kind: 'video'; readonly layers: readonly PublishedLayer[] };

/** Payload types of what the peers send (bench/webrtcbin-peers.py). */
export const SENT_PAYLOAD_TYPES = { audio: 111, video: 96 } as const;

/**
 * The SFU's answer to a publishing webrtcbin's offer: in each m-section the SFU receives from its
 * ICE-lite transport and takes the DTLS server role. The SSRCs go to the SFU in the producers'
 * RTP parameters, not here.
 */
export function producerAnswer(offer: string, transport: Json): string {
  const sections = offer.split(/\r?\nm=/).slice(1);
  const fingerprint = (transport.dtlsParameters.fingerprints as Json[]).find((f) => f.algorithm === 'sha-256')!;
  const candidates = (transport.iceCandidates as Json[]).filter((c) => c.protocol === 'udp');
  const mids = sections.map((s) => /a=mid:(\S+)/.exec(s)![1]!);
  const lines = ['v=0', `o=- ${Date.now()} 2 IN IP4 127.0.0.1`, 's=-', 't=0 0', 'a=ice-lite', `a=group:BUNDLE ${mids.join(' ')}`];
  sections.forEach((section, index) => {
    const kind = section.startsWith('audio') ? 'audio' : 'video';
    const pt = SENT_PAYLOAD_TYPES[kind];
    lines.push(`m=${kind} 7 UDP/TLS/RTP/SAVPF ${pt}`, 'c=IN IP4 127.0.0.1', `a=mid:${mids[index]}`, 'a=recvonly', 'a=rtcp-mux', 'a=rtcp-rsize');
    lines.push(`a=ice-ufrag:${transport.iceParameters.usernameFragment}`, `a=ice-pwd:${transport.iceParameters.password}`);
    lines.push(`a=fingerprint:${fingerprint.algorithm} ${fingerprint.value}`, 'a=setup:passive');
    if (kind === 'audio') lines.push(`a=rtpmap:${pt} OPUS/48000/2`, `a=fmtp:${pt} useinbandfec=1`);
    else lines.push(`a=rtpmap:${pt} VP8/90000`, `a=rtcp-fb:${pt} nack`, `a=rtcp-fb:${pt} nack pli`, `a=rtcp-fb:${pt} ccm fir`);
    for (const c of candidates) lines.push(`a=candidate:${c.foundation} 1 udp ${c.priority} ${c.address ?? c.ip} ${c.port} typ ${c.type}`);
    lines.push('a=end-of-candidates');
  });
  return `${lines.join('\r\n')}\r\n`;
}

/**
 * WebRTC peers in one GStreamer process (bench/webrtcbin-peers.py): publishers of pre-encoded
 * clips and subscribers that count packets, each peer one webrtcbin.
 */
export class WebrtcbinPeers {
  private readonly waiting = new Map<string, (answer: string) => void>();
  private readonly firstFrames = new Map<string, (monotonicNs: bigint) => void>();
  private statsWaiter: ((stats: { received: number; lost: number }) => void) | null = null;
  private failure: Error | null = null;

  protected constructor(private readonly process: ChildProcessWithoutNullStreams) {
    createInterface({ input: process.stdout }).on('line', (line) => {
      // Only protocol lines are JSON; GStreamer and libnice debug output may share stdout.
      if (!line.startsWith('{')) {
        if (globalThis.process.env.WEBRTCBIN_DEBUG) console.error(line);
        return;
      }
      const message = JSON.parse(line);
      if (message.stats) this.statsWaiter?.(message.stats);
      else if (message.error) this.failure = new Error(`webrtcbin peer ${message.id}: ${message.error}`);
      else if (message.firstFrame !== undefined) this.firstFrames.get(message.id)?.(BigInt(message.firstFrame));
      else this.waiting.get(message.id)?.(message.sdp);
    });
    process.stderr.on('data', (chunk: Buffer) => globalThis.process.stderr.write(chunk));
  }

  static start(): WebrtcbinPeers {
    return new WebrtcbinPeers(WebrtcbinPeers.spawn());
  }

  protected static spawn(): ChildProcessWithoutNullStreams {
    return spawn('/usr/bin/python3', [new URL('./webrtcbin-peers.py', import.meta.url).pathname]);
  }

  get pid(): number {
    return this.process.pid!;
  }

  protected command(command: Json): Promise<string> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve) => {
      this.waiting.set(command.id, resolve);
      this.process.stdin.write(`${JSON.stringify(command)}\n`);
    });
  }

  /** A publisher of the tracks, one m-line each in this order; resolves with its offer. */
  publish(id: string, tracks: readonly PublishedTrack[]): Promise<string> {
    return this.command({ cmd: 'publish', id, tracks });
  }

  /** A receive-only peer with one m-line per caps; `watch` is the m-line to decode until its first frame. */
  offerToReceive(id: string, media: string[], watch?: number): Promise<string> {
    return this.command({ cmd: 'offer', id, media, ...(watch === undefined ? {} : { watch }) });
  }

  /** Gives a peer that offered the server's answer. */
  async setAnswer(id: string, sdp: string): Promise<void> {
    await this.command({ cmd: 'answer', id, sdp });
  }

  /**
   * A subscriber for a server that offers (Janus): webrtcbin answers the offer, with its
   * candidates in the answer. Returns the answer.
   */
  answerOffer(id: string, offer: string, watch?: number): Promise<string> {
    return this.command({ cmd: 'accept-offer', id, sdp: offer, ...(watch === undefined ? {} : { watch }) });
  }

  /** Resolves with the CLOCK_MONOTONIC time (process.hrtime's clock) of the watched track's first decoded frame. */
  firstFrame(id: string): Promise<bigint> {
    return new Promise((resolve) => this.firstFrames.set(id, resolve));
  }

  async close(id: string): Promise<void> {
    await this.command({ cmd: 'close', id });
  }

  /**
   * Receives the tracks (`{producerId, kind}` as signaling lists them) on a new receive transport
   * of a joined client, one m-line each in this order.
   */
  async receiveFromGateway(id: string, client: TestClient, routerRtpCapabilities: Json, tracks: Json[], watch?: number): Promise<void> {
    const codecs = receiveCodecs(routerRtpCapabilities);
    const capabilities = { codecs: [codecs.audio, codecs.video], headerExtensions: [] };
    const offer = await this.offerToReceive(
      id,
      tracks.map((t) => transceiverCaps(codecs[t.kind as 'audio' | 'video'])),
      watch,
    );
    const transport = await gatewayRequest(client, 'createTransport', { direction: 'recv' });
    const consumers: Json[] = [];
    for (const track of tracks) consumers.push(await gatewayRequest(client, 'consume', { producerId: track.producerId, rtpCapabilities: capabilities, transportId: transport.transportId }));
    await this.setAnswer(id, consumerAnswer(offer, transport, consumers));
    await gatewayRequest(client, 'connectTransport', { transportId: transport.transportId, dtlsParameters: clientDtls(offer) });
    for (const consumer of consumers) await gatewayRequest(client, 'resumeConsumer', { consumerId: consumer.consumerId });
  }

  /**
   * Publishes the tracks of a joined client on a new send transport, each as the source given
   * with it; resolves with their producer ids, in order. A video track with several layers is
   * SSRC simulcast: one encoding per layer, lowest first.
   */
  async publishToGateway(id: string, client: TestClient, tracks: ReadonlyArray<PublishedTrack & { source: string }>): Promise<string[]> {
    const offer = await this.publish(id, tracks);
    const transport = await gatewayRequest(client, 'createTransport', { direction: 'send' });
    await this.setAnswer(id, producerAnswer(offer, transport));
    await gatewayRequest(client, 'connectTransport', { transportId: transport.transportId, dtlsParameters: clientDtls(offer) });
    const mids = [...offer.matchAll(/^a=mid:(\S+)/gm)].map((m) => m[1]!);
    const cname = `peer-${id}`;
    const producerIds: string[] = [];
    for (const [index, track] of tracks.entries()) {
      const pt = SENT_PAYLOAD_TYPES[track.kind];
      const codec =
        track.kind === 'audio'
          ? { mimeType: 'audio/opus', payloadType: pt, clockRate: 48_000, channels: 2, parameters: { useinbandfec: 1 } }
          : { mimeType: 'video/VP8', payloadType: pt, clockRate: 90_000, rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }] };
      const encodings = track.kind === 'audio' ? [{ ssrc: track.ssrc }] : track.layers.map((layer) => ({ ssrc: layer.ssrc }));
      const rtpParameters = { mid: mids[index], codecs: [codec], headerExtensions: [], encodings, rtcp: { cname, reducedSize: true } };
      const produced = await gatewayRequest(client, 'produce', { transportId: transport.transportId, kind: track.kind, rtpParameters, source: track.source });
      producerIds.push(produced.producerId);
    }
    return producerIds;
  }

  /** Packets received and lost so far, over every subscriber (webrtcbin's inbound-rtp stats). */
  stats(): Promise<{ received: number; lost: number }> {
    return new Promise((resolve) => {
      this.statsWaiter = resolve;
      this.process.stdin.write(`${JSON.stringify({ cmd: 'stats' })}\n`);
    });
  }

  stop(): void {
    this.process.stdin.end();
    this.process.kill();
  }
}

/**
 * Subscribers that join through Gateway's signaling like any client and receive every track of
 * the room, or answer Janus's offers.
 */
export class WebrtcbinSubscribers extends WebrtcbinPeers {
  readonly clients: TestClient[] = [];

  static override start(): WebrtcbinSubscribers {
    return new WebrtcbinSubscribers(WebrtcbinPeers.spawn());
  }

  /** Joins the room with the token and receives every track already published in it. */
  async add(url: string, token: string): Promise<void> {
    const client = await TestClient.open(url);
    this.clients.push(client);
    const joined = await client.request('join', { token, protocolVersion: 1 });
    if (joined.error) throw new Error(`join failed: ${joined.error.message}`);
    const tracks = (joined.join.participants ?? []).flatMap((p: Json) => (p.tracks ?? []) as Json[]);
    await this.receiveFromGateway(`sub-${this.clients.length}`, client, joined.join.routerRtpCapabilities, tracks);
  }

  override stop(): void {
    for (const client of this.clients) client.close();
    super.stop();
  }
}
