/**
 * The contact-center workload: many small rooms, Gateway against Janus 1.1.2 on the same calls.
 * Each call is a room of two: the end user publishes a camera (three SSRC simulcast layers of a
 * 720p clip with motion and noise), a microphone and a screen share; the agent publishes a
 * microphone and a camera (the same three layers, as the SDK publishes any 720p camera); each
 * receives the other's tracks. Every peer is a GStreamer webrtcbin in one process
 * (bench/webrtcbin-peers.py) sending pre-encoded clips, so a call costs the generators no
 * encoding.
 *
 * 1. Capacity: calls are added level by level (BENCH_CALL_LEVELS) on one SFU node (one
 *    mediasoup worker; the janus process) until loss exceeds 1 % on a machine with CPU to spare
 *    or the media process nears a core (the worker is one thread). When the machine itself is
 *    saturated at the last level, the generators were the limit, and the figure that stands is
 *    the media process's CPU per call and the calls per core it implies. Per level: the media
 *    process's CPU, packets forwarded to the receivers, loss (sequence gaps per received SSRC),
 *    the generators' CPU and the whole machine's.
 *    With BENCH_MEDIA_CPU_SHARE (say 0.2), the media process runs in a slice of one core of that
 *    size (a cgroup with a CFS quota, bench/cpuSlice.ts; root): where the generators cannot drive
 *    a whole core's worth of calls, the server's own limit is found on the slice (loss over 1 %:
 *    the process cannot pass its quota, and whether it keeps up there shows in the loss alone),
 *    and calls per core at the limit are the capacity over the share.
 * 2. Join under load: new calls while the node carries 80 % and 40 % of the capacity found (or
 *    of BENCH_CALLS): the time from the agent's first signaling message (Gateway: opening the
 *    WebSocket; Janus: opening the WebSocket that creates its session) to the first frame of the
 *    end user's camera that the agent's webrtcbin decodes (rtpvp8depay then vp8dec; the layer
 *    each server sends first). Each timed call ends before the next one.
 *
 * Standalone: `node --import tsx bench/contact-center-calls.ts` (about 6-8 minutes).
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { generatedClip } from '../test/support/media.js';
import { demoToken } from '../test/support/tokens.js';
import { TestClient } from '../test/support/wsClient.js';
import { type ForwardingWindow, measureForwarding } from './forwarding.js';
import { JanusSession, startJanus } from './janus.js';
import { cameraClip, externalAddress } from './media.js';
import { CpuSlice, cpuShareFromEnv } from './cpuSlice.js';
import { childPids, cpuTimes, percentile, startStack } from './stack.js';
import { gatewayRequest, type PublishedTrack, WebrtcbinPeers } from './webrtcbin.js';

const LEVELS = (process.env.BENCH_CALL_LEVELS ?? '2,4,6,8').split(',').map(Number);
/** Calls the join phase takes as the node's capacity, instead of the one measured. */
const GIVEN_CAPACITY = process.env.BENCH_CALLS ? Number(process.env.BENCH_CALLS) : undefined;
const JOIN_LOADS = [0.8, 0.4];
const JOINS = Number(process.env.BENCH_JOINS ?? 8);
const WINDOW_MS = Number(process.env.BENCH_WINDOW_MS ?? 10_000);
/** Time for new calls to settle: ICE, DTLS, key frames, each receiver's layer. */
const SETTLE_MS = 8_000;
const FIRST_FRAME_TIMEOUT_MS = 10_000;
/**
 * Before a timed join, the end user has been publishing this long (waiting in the queue), so the
 * agent's join is not timed against the end user's own connection set-up.
 */
const END_USER_WAIT_MS = 1_500;
const LOSS_LIMIT_PERCENT = 1;
/** The media process's share of one core, when it runs in a slice (BENCH_MEDIA_CPU_SHARE). */
const MEDIA_CPU_SHARE = cpuShareFromEnv('BENCH_MEDIA_CPU_SHARE');
/** The worker is one thread: near a core, it falls behind. */
const WORKER_LIMIT_CPU = 0.9;
/** Over this share of the machine busy (everyone's work), the generators are short of CPU. */
const MACHINE_LIMIT_BUSY = 0.95;
const CORES = cpus().length;
const VIDEOROOM = 'janus.plugin.videoroom';

// ---- the clips every call sends (pre-encoded VP8, made once under .tmp/) ----

/**
 * Key frames held to 3× an average frame, as a real-time encoder holds them: an unbounded one is
 * a burst of a hundred packets that the sending socket cannot take at once.
 */
const VP8_OPTIONS = ['-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-g', '1000', '-auto-alt-ref', '0', '-lag-in-frames', '0', '-max-intra-rate', '300'];

/** One layer of the 720p camera clip: CBR VP8, one key frame at the start of its 4-second loop. */
function cameraLayer(name: string, scale: string, fps: number, kbps: number): string {
  return generatedClip(`bench-cc-${name}-intra300.ivf`, [
    '-i',
    cameraClip(),
    '-vf',
    `scale=${scale}`,
    '-r',
    String(fps),
    ...VP8_OPTIONS,
    ...['-b:v', `${kbps}k`, '-minrate', `${kbps}k`, '-maxrate', `${kbps}k`],
  ]);
}

/** The layers the SDK asks of a 720p camera (packages/sdk/src/media/encodings.ts), lowest first. */
const CAMERA_LAYERS = [cameraLayer('r0', '320:180', 15, 150), cameraLayer('r1', '640:360', 30, 500), cameraLayer('r2', '1280:720', 30, 1500)];
/**
 * A screen share: 1080p at 5 frames per second and 800 kbit/s, content that changes every frame
 * (a screen being scrolled or typed into, not a still page, which would send almost nothing).
 */
const SCREEN = generatedClip('bench-cc-screen-intra300.ivf', [
  ...['-f', 'lavfi', '-i', 'testsrc2=size=1920x1080:rate=5', '-t', '4'],
  ...VP8_OPTIONS,
  ...['-b:v', '800k', '-minrate', '800k', '-maxrate', '800k'],
]);

type Source = 'camera' | 'microphone' | 'screen';
type SourcedTrack = PublishedTrack & { source: Source };

/** The end user's and the agent's tracks, with SSRCs unique to the call. */
function callTracks(call: number): { endUser: SourcedTrack[]; agent: SourcedTrack[] } {
  const ssrc = (k: number) => 100_000 + call * 16 + k;
  const camera = (base: number): SourcedTrack => ({ source: 'camera', kind: 'video', layers: CAMERA_LAYERS.map((clip, i) => ({ ssrc: ssrc(base + i), clip })) });
  return {
    endUser: [camera(0), { source: 'microphone', kind: 'audio', ssrc: ssrc(3) }, { source: 'screen', kind: 'video', layers: [{ ssrc: ssrc(4), clip: SCREEN }] }],
    agent: [camera(6), { source: 'microphone', kind: 'audio', ssrc: ssrc(5) }],
  };
}

// ---- one call on each server ----

interface Call {
  /** Join to the agent's first decoded frame of the end user's camera, when timed. */
  readonly joinMs?: number;
  end(): Promise<void>;
}

interface CallServer {
  readonly name: 'gateway' | 'janus';
  readonly mediaPid: number;
  startCall(call: number, timed: boolean): Promise<Call>;
  stop(): Promise<void>;
}

const elapsedMs = (from: bigint, to: bigint) => Number(to - from) / 1e6;

async function timedFirstFrame(peers: WebrtcbinPeers, id: string, started: bigint): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no decoded frame at ${id} within ${FIRST_FRAME_TIMEOUT_MS} ms`)), FIRST_FRAME_TIMEOUT_MS);
  });
  try {
    return elapsedMs(started, await Promise.race([peers.firstFrame(id), timeout]));
  } finally {
    clearTimeout(timer);
  }
}

/** Starts timing a join; a failure is kept for whoever awaits it, not thrown unhandled meanwhile. */
function startTiming(peers: WebrtcbinPeers, id: string, started: bigint): Promise<number> {
  const timing = timedFirstFrame(peers, id, started);
  timing.catch(() => {});
  return timing;
}

/** Gateway: the stack of `make up` with one worker; both sides join through signaling. */
async function gatewayServer(peers: WebrtcbinPeers, address: string): Promise<CallServer> {
  // webrtcbin 1.22 keeps ICE alive with STUN indications, not consent requests (RFC 7675).
  const stack = await startStack({ workers: 1, sfuEnv: { SFU_LISTEN_IP: address, SFU_ANNOUNCED_ADDRESS: address, SFU_ICE_CONSENT_TIMEOUT_SECONDS: '0' } });
  const [workerPid] = await childPids(stack.sfu.pid);
  if (!workerPid) throw new Error('no mediasoup worker process found');
  const url = stack.signaling.wsUrl;
  const run = Date.now();
  const join = async (client: TestClient, room: string, identity: string, role: 'agent' | 'end_user') =>
    gatewayRequest(client, 'join', { token: await demoToken({ room, identity, role }), protocolVersion: 1 });
  return {
    name: 'gateway',
    mediaPid: workerPid,
    async startCall(call, timed) {
      const room = `cc-${run}-${call}`;
      const tracks = callTracks(call);
      const ids = { endUserSend: `c${call}-eu-send`, endUserRecv: `c${call}-eu-recv`, agentSend: `c${call}-agent-send`, agentRecv: `c${call}-agent-recv` };
      const agentToken = await demoToken({ room, identity: 'agent', role: 'agent' });
      const endUser = await TestClient.open(url);
      const endUserJoin = await join(endUser, room, 'end-user', 'end_user');
      await peers.publishToGateway(ids.endUserSend, endUser, tracks.endUser);
      if (timed) await new Promise((r) => setTimeout(r, END_USER_WAIT_MS));

      const started = process.hrtime.bigint();
      const agent = await TestClient.open(url);
      const agentJoin = await gatewayRequest(agent, 'join', { token: agentToken, protocolVersion: 1 });
      const published = (agentJoin.participants as Array<{ tracks?: Array<{ source: string }> }>).flatMap((p) => p.tracks ?? []);
      const firstFrame = timed ? startTiming(peers, ids.agentRecv, started) : undefined;
      await peers.receiveFromGateway(ids.agentRecv, agent, agentJoin.routerRtpCapabilities, published, timed ? published.findIndex((t) => t.source === 'camera') : undefined);
      const agentProducers = await peers.publishToGateway(ids.agentSend, agent, tracks.agent);
      const fromAgent = tracks.agent.map((t, i) => ({ producerId: agentProducers[i], kind: t.kind }));
      await peers.receiveFromGateway(ids.endUserRecv, endUser, endUserJoin.routerRtpCapabilities, fromAgent);
      const joinMs = await firstFrame;
      return {
        ...(joinMs === undefined ? {} : { joinMs }),
        async end() {
          for (const client of [agent, endUser]) {
            await client.request('leave');
            client.close();
          }
          for (const id of Object.values(ids)) await peers.close(id);
        },
      };
    },
    stop: () => stack.stop(),
  };
}

/**
 * The publisher's offer as Janus reads it: webrtcbin 1.22 cannot announce simulcast itself, so
 * each m-section gets the SSRCs its track sends, a simulcast track's in an `ssrc-group:SIM`
 * (lowest layer first, as browsers list them).
 */
function withSsrcs(offer: string, tracks: readonly PublishedTrack[], cname: string): string {
  const [head, ...sections] = offer.split(/\r\nm=/);
  const marked = sections.map((section, index) => {
    const track = tracks[index]!;
    const ssrcs = track.kind === 'audio' ? [track.ssrc] : track.layers.map((l) => l.ssrc);
    const lines = section.split('\r\n').filter((line) => line && !line.startsWith('a=ssrc'));
    if (ssrcs.length > 1) lines.push(`a=ssrc-group:SIM ${ssrcs.join(' ')}`);
    for (const ssrc of ssrcs) lines.push(`a=ssrc:${ssrc} cname:${cname}`);
    return lines.join('\r\n');
  });
  return `${[head, ...marked].join('\r\nm=')}\r\n`;
}

/** Janus: one VideoRoom per call; each side a publisher and a subscriber of the other. */
async function janusServer(peers: WebrtcbinPeers, address: string): Promise<CallServer> {
  const janus = await startJanus(address);
  const roomBase = 1000 + Math.floor(Math.random() * 1e6);

  async function publish(session: JanusSession, room: number, id: string, display: string, tracks: SourcedTrack[], create: boolean) {
    const handle = await session.attach(VIDEOROOM);
    // No cap on the publishers' bitrate (Janus's default REMB cap would hold them below the top layer).
    if (create) await session.message(handle, { request: 'create', room, publishers: 2, audiocodec: 'opus', videocodec: 'vp8', bitrate: 0, fir_freq: 0 });
    const joined = await session.message(handle, { request: 'join', ptype: 'publisher', room, display });
    const offer = await peers.publish(id, tracks);
    const mids = [...offer.matchAll(/^a=mid:(\S+)/gm)].map((m) => m[1]!);
    const published = await session.message(handle, { request: 'publish' }, { type: 'offer', sdp: withSsrcs(offer, tracks, id), trickle: false });
    if (!published.jsep) throw new Error(`janus did not answer the publisher: ${JSON.stringify(published.data)}`);
    await peers.setAnswer(id, published.jsep.sdp);
    const feed = joined.data.id as number;
    // Subscribers are refused ("No such feed") until the publisher's PeerConnection is up.
    for (let waited = 0; ; waited += 100) {
      const { data } = await session.message(handle, { request: 'listparticipants', room });
      if ((data.participants as Array<{ id: number; publisher: boolean }>).some((p) => p.id === feed && p.publisher)) break;
      if (waited > 10_000) throw new Error(`janus publisher ${id} not live within 10 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return { feed, mids };
  }

  /** Subscribes to every track of a feed, in the publisher's order, a simulcast camera at its top layer. */
  async function subscribe(session: JanusSession, room: number, id: string, feed: { feed: number; mids: string[] }, tracks: SourcedTrack[], watch?: number) {
    const handle = await session.attach(VIDEOROOM);
    const streams = tracks.map((t, i) => ({ feed: feed.feed, mid: feed.mids[i], ...(t.source === 'camera' ? { substream: 2, temporal: 2 } : {}) }));
    const attached = await session.message(handle, { request: 'join', ptype: 'subscriber', room, streams });
    if (!attached.jsep) throw new Error(`janus sent the subscriber no offer: ${JSON.stringify(attached.data)}`);
    const answer = await peers.answerOffer(id, attached.jsep.sdp, watch);
    await session.message(handle, { request: 'start' }, { type: 'answer', sdp: answer, trickle: false });
  }

  return {
    name: 'janus',
    mediaPid: janus.pid,
    async startCall(call, timed) {
      const room = roomBase + call;
      const tracks = callTracks(call);
      const ids = { endUserSend: `c${call}-eu-send`, endUserRecv: `c${call}-eu-recv`, agentSend: `c${call}-agent-send`, agentRecv: `c${call}-agent-recv` };
      const endUser = await JanusSession.open(janus.wsUrl);
      const endUserFeed = await publish(endUser, room, ids.endUserSend, 'end-user', tracks.endUser, true);
      if (timed) await new Promise((r) => setTimeout(r, END_USER_WAIT_MS));

      const started = process.hrtime.bigint();
      const agent = await JanusSession.open(janus.wsUrl);
      const firstFrame = timed ? startTiming(peers, ids.agentRecv, started) : undefined;
      await subscribe(agent, room, ids.agentRecv, endUserFeed, tracks.endUser, timed ? 0 : undefined);
      const agentFeed = await publish(agent, room, ids.agentSend, 'agent', tracks.agent, false);
      await subscribe(endUser, room, ids.endUserRecv, agentFeed, tracks.agent);
      const joinMs = await firstFrame;
      return {
        ...(joinMs === undefined ? {} : { joinMs }),
        async end() {
          // Janus ends the sessions, their handles and the room's publishers with the WebSockets.
          agent.close();
          endUser.close();
          for (const id of Object.values(ids)) await peers.close(id);
        },
      };
    },
    stop: () => janus.stop(),
  };
}

// ---- measuring ----

/** Busy and total CPU time of the whole machine so far (everyone's work), from /proc/stat. */
function machineTimes(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = fields[3]! + fields[4]!;
  return { busy: total - idle, total };
}

interface Level extends ForwardingWindow {
  readonly calls: number;
  readonly generatorCpuPerS: number;
  readonly machineBusy: number;
}

async function measureLevel(server: CallServer, peers: WebrtcbinPeers, calls: number): Promise<Level> {
  const g0 = await cpuTimes(peers.pid);
  const m0 = machineTimes();
  const t0 = performance.now();
  const window = await measureForwarding(server.mediaPid, () => peers.stats(), WINDOW_MS);
  const g1 = await cpuTimes(peers.pid);
  const m1 = machineTimes();
  const seconds = (performance.now() - t0) / 1000;
  return { calls, ...window, generatorCpuPerS: (g1.user + g1.system - g0.user - g0.system) / seconds, machineBusy: (m1.busy - m0.busy) / (m1.total - m0.total) };
}

type Limit = 'loss' | 'media process' | 'machine (generators)' | 'levels exhausted';

interface ServerResult {
  readonly levels: Level[];
  readonly capacity: number;
  readonly limit: Limit;
  readonly joins: Array<{ calls: number; ms: number[]; failed: number }>;
  /** The slice's throttling over the whole run, when the media process ran in one. */
  readonly throttled?: ReturnType<CpuSlice['throttled']>;
}

async function measureServer(server: CallServer, peers: WebrtcbinPeers, slice?: CpuSlice): Promise<ServerResult> {
  const calls: Call[] = [];
  const levels: Level[] = [];
  let limit: Limit = 'levels exhausted';
  let capacity = 0;
  for (const target of LEVELS) {
    while (calls.length < target) calls.push(await server.startCall(calls.length, false));
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const level = await measureLevel(server, peers, target);
    levels.push(level);
    console.error(
      `${server.name}: ${target} calls, media ${(level.cpuPerS * 100).toFixed(1)} %, loss ${level.lossPercent.toFixed(2)} %, generators ${(level.generatorCpuPerS * 100).toFixed(0)} %, machine ${(level.machineBusy * 100).toFixed(0)} %`,
    );
    // In a slice the quota is the whole process's (Janus's threads share it as the worker's one
    // does) and the process cannot pass it: whether it keeps up at the quota shows in the loss
    // alone (a throttled process handles more packets per wake-up, so its CPU per call falls).
    const mediaLimit = MEDIA_CPU_SHARE ? Number.POSITIVE_INFINITY : server.name === 'gateway' ? WORKER_LIMIT_CPU : WORKER_LIMIT_CPU * CORES;
    // Loss on a saturated machine is the generators' (and the other work's) as much as the
    // server's: it ends the search only while the machine has CPU to spare.
    const saturated = level.machineBusy > MACHINE_LIMIT_BUSY;
    if (level.cpuPerS > mediaLimit) limit = 'media process';
    else if (level.lossPercent > LOSS_LIMIT_PERCENT && !saturated) limit = 'loss';
    else {
      capacity = target;
      if (saturated) limit = 'machine (generators)';
      continue;
    }
    break;
  }

  const joins: ServerResult['joins'] = [];
  const base = GIVEN_CAPACITY ?? capacity;
  let nextCall = calls.length;
  for (const share of JOIN_LOADS) {
    const load = Math.round(base * share);
    while (calls.length > load) await calls.pop()!.end();
    while (calls.length < load) calls.push(await server.startCall(nextCall++, false));
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const ms: number[] = [];
    let failed = 0;
    for (let i = 0; i < JOINS; i++) {
      await new Promise((r) => setTimeout(r, 1_000));
      try {
        const call = await server.startCall(nextCall++, true);
        ms.push(call.joinMs!);
        await call.end();
      } catch (error) {
        failed++;
        console.error(`${server.name}: a timed join failed: ${(error as Error).message}`);
      }
    }
    joins.push({ calls: load, ms, failed });
  }
  for (const call of calls) await call.end();
  return { levels, capacity, limit, joins, ...(slice ? { throttled: slice.throttled() } : {}) };
}

const round = (value: number, digits = 2) => +value.toFixed(digits);

function summary(result: ServerResult) {
  const top = result.levels.find((l) => l.calls === result.capacity) ?? result.levels.at(-1)!;
  const first = result.levels[0]!;
  const cpuPerCall = top.cpuPerS / top.calls;
  // Between the first and the highest level, the media process's fixed work cancels out.
  const marginal = top.calls > first.calls ? (top.cpuPerS - first.cpuPerS) / (top.calls - first.calls) : cpuPerCall;
  return {
    calls: result.levels.map((l) => l.calls),
    media_cpu_percent: result.levels.map((l) => round(l.cpuPerS * 100, 1)),
    media_cpu_percent_per_call: result.levels.map((l) => round((l.cpuPerS / l.calls) * 100)),
    packets_out_per_s_per_call: result.levels.map((l) => Math.round(l.packetsPerS / l.calls)),
    loss_percent: result.levels.map((l) => round(l.lossPercent)),
    generator_cpu_percent: result.levels.map((l) => Math.round(l.generatorCpuPerS * 100)),
    machine_busy_percent: result.levels.map((l) => Math.round(l.machineBusy * 100)),
    capacity_calls: result.capacity,
    limit: result.limit,
    cpu_percent_per_call_at_capacity: round(cpuPerCall * 100),
    cpu_percent_per_call_marginal: round(marginal * 100),
    calls_per_core: Math.round(1 / cpuPerCall),
    calls_per_core_marginal: Math.round(1 / marginal),
    ...(MEDIA_CPU_SHARE
      ? {
          media_cpu_share: MEDIA_CPU_SHARE,
          // The limit itself, when the slice reached one: the capacity over the share of a core.
          calls_per_core_at_limit: result.limit === 'loss' ? round(result.capacity / MEDIA_CPU_SHARE, 1) : null,
          throttled_percent_of_periods: result.throttled ? round((result.throttled.throttledPeriods / Math.max(result.throttled.periods, 1)) * 100, 1) : null,
        }
      : {}),
    join_to_first_frame_ms: result.joins.map((j) => ({
      load_calls: j.calls,
      joins: j.ms.length,
      failed: j.failed,
      ...(j.ms.length ? { p50: Math.round(percentile(j.ms, 50)), p95: Math.round(percentile(j.ms, 95)), max: Math.round(Math.max(...j.ms)) } : {}),
    })),
  };
}

const address = externalAddress();
const results: Record<string, ReturnType<typeof summary>> = {};
const servers = { gateway: gatewayServer, janus: janusServer };
/** Which servers to measure (both unless told; the ratios need both). */
const chosen = (process.env.BENCH_SERVERS ?? 'gateway,janus').split(',') as Array<keyof typeof servers>;
for (const start of chosen.map((name) => servers[name])) {
  const peers = WebrtcbinPeers.start();
  const server = await start(peers, address);
  let slice: CpuSlice | undefined;
  try {
    if (MEDIA_CPU_SHARE) {
      slice = CpuSlice.create(`gateway-bench-${process.pid}-${server.name}`, MEDIA_CPU_SHARE);
      slice.add(server.mediaPid);
    }
    results[server.name] = summary(await measureServer(server, peers, slice));
  } finally {
    peers.stop();
    slice?.close();
    await server.stop();
  }
}
const ratio = (key: 'calls_per_core' | 'calls_per_core_marginal') => (results.gateway && results.janus ? round(results.gateway[key] / results.janus[key]) : null);
console.log(
  JSON.stringify({
    benchmark: 'contact_center_calls',
    cores: CORES,
    ...results,
    ratio_calls_per_core_gateway_over_janus: ratio('calls_per_core'),
    ratio_calls_per_core_marginal_gateway_over_janus: ratio('calls_per_core_marginal'),
  }),
);
