/**
 * Subscribers run by GStreamer's webrtcbin (bench/webrtcbin-subscribers.py): they join through
 * signaling like any client, receive every track of the room and count packets without
 * decoding. The SDP offer for webrtcbin is built here from the SFU's transport and consumer
 * parameters, as a client SDK would.
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

export class WebrtcbinSubscribers {
  readonly clients: TestClient[] = [];
  private readonly waiting = new Map<string, (answer: string) => void>();
  private statsWaiter: ((stats: { received: number; lost: number }) => void) | null = null;

  private constructor(private readonly process: ChildProcessWithoutNullStreams) {
    createInterface({ input: process.stdout }).on('line', (line) => {
      // Only protocol lines are JSON; GStreamer and libnice debug output may share stdout.
      if (!line.startsWith('{')) {
        if (globalThis.process.env.WEBRTCBIN_DEBUG) console.error(line);
        return;
      }
      const message = JSON.parse(line);
      if (message.stats) this.statsWaiter?.(message.stats);
      else if (message.error) throw new Error(`webrtcbin could not answer: ${message.error}`);
      else this.waiting.get(message.id)?.(message.sdp);
    });
    process.stderr.on('data', (chunk: Buffer) => globalThis.process.stderr.write(chunk));
  }

  static start(): WebrtcbinSubscribers {
    return new WebrtcbinSubscribers(spawn('/usr/bin/python3', [new URL('./webrtcbin-subscribers.py', import.meta.url).pathname]));
  }

  get pid(): number {
    return this.process.pid!;
  }

  private command(command: Json): Promise<string> {
    return new Promise((resolve) => {
      this.waiting.set(command.id, resolve);
      this.process.stdin.write(`${JSON.stringify(command)}\n`);
    });
  }

  /** Joins the room with the token and receives every track already published in it. */
  async add(url: string, token: string): Promise<void> {
    const id = `sub-${this.clients.length}`;
    const client = await TestClient.open(url);
    this.clients.push(client);
    const joined = await client.request('join', { token, protocolVersion: 1 });
    if (joined.error) throw new Error(`join failed: ${joined.error.message}`);
    const codecs = receiveCodecs(joined.join.routerRtpCapabilities);
    const capabilities = { codecs: [codecs.audio, codecs.video], headerExtensions: [] };
    const tracks = (joined.join.participants ?? []).flatMap((p: Json) => (p.tracks ?? []) as Json[]);
    const offer = await this.command({ cmd: 'offer', id, media: tracks.map((t: Json) => transceiverCaps(codecs[t.kind as 'audio' | 'video'])) });
    const transport = (await client.request('createTransport', { direction: 'recv' })).createTransport;
    const consumers: Json[] = [];
    for (const track of tracks) {
      const response = await client.request('consume', { producerId: track.producerId, rtpCapabilities: capabilities, transportId: transport.transportId });
      if (response.error) throw new Error(`consume failed: ${response.error.message}`);
      consumers.push(response.consume);
    }
    await this.command({ cmd: 'answer', id, sdp: consumerAnswer(offer, transport, consumers) });
    const [, algorithm, value] = /a=fingerprint:(\S+) (\S+)/.exec(offer)!;
    await client.request('connectTransport', { transportId: transport.transportId, dtlsParameters: { role: 'client', fingerprints: [{ algorithm, value }] } });
    for (const consumer of consumers) await client.request('resumeConsumer', { consumerId: consumer.consumerId });
  }

  /**
   * A subscriber for a server that offers (Janus): webrtcbin answers the offer, with its
   * candidates in the answer. Returns the answer.
   */
  answerOffer(id: string, offer: string): Promise<string> {
    return this.command({ cmd: 'accept-offer', id, sdp: offer });
  }

  /** Packets received and lost so far, over every subscriber (webrtcbin's inbound-rtp stats). */
  stats(): Promise<{ received: number; lost: number }> {
    return new Promise((resolve) => {
      this.statsWaiter = resolve;
      this.process.stdin.write(`${JSON.stringify({ cmd: 'stats' })}\n`);
    });
  }

  stop(): void {
    for (const client of this.clients) client.close();
    this.process.stdin.end();
    this.process.kill();
  }
}
