import type { types } from 'mediasoup';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { NodeLoad } from '@gateway/proto/gateway/sfu/v1/sfu';
import type { Room, TransportFailure } from './Room.js';
import type { SfuObserver } from './observer.js';

/**
 * How often the workers are asked for their RTP stream statistics. Sampling on a timer rather
 * than on each scrape keeps the RTT histogram independent of how many Prometheus servers scrape,
 * and bounds what a stream that closes between two samples goes uncounted by (its last 5 s).
 */
const STATS_INTERVAL_MS = 5_000;

type Direction = 'in' | 'out';

/** Cumulative figures of one RTP stream (one SSRC of a producer or consumer) at the last sample. */
interface StreamTotals {
  packets: number;
  bytes: number;
  lost: number;
  nacks: number;
  plis: number;
}

/** What the metrics read of their node besides its observer: its workers, and its load at a scrape. */
export interface MeasuredNode {
  readonly observer: SfuObserver;
  readonly workerIndexes: number[];
  /** Whether the node keeps its Pod's deletion cost (POD_NAME and POD_NAMESPACE set). */
  readonly keepsDeletionCost: boolean;
  /** The address in the node's ICE candidates and its source (SFU_ANNOUNCED_ADDRESS_SOURCE). */
  readonly announced: { address: string; source: string };
  load(): NodeLoad;
}

/** The node's load (rooms, transports, ...), whether it drains, and its workers' deaths. */
export function observeNodeMetrics(node: MeasuredNode, registry: Registry): void {
  const gauge = (name: string, help: string, read: (load: NodeLoad) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read(node.load()));
      },
    });
  gauge('gateway_sfu_workers', 'Live mediasoup workers', (l) => l.workers);
  gauge('gateway_sfu_rooms', 'Open rooms', (l) => l.rooms);
  gauge('gateway_sfu_transports', 'WebRTC transports', (l) => l.transports);
  gauge('gateway_sfu_producers', 'Producers', (l) => l.producers);
  gauge('gateway_sfu_consumers', 'Consumers', (l) => l.consumers);
  gauge('gateway_sfu_max_consumers', 'Consumers the node takes before new participants go to other nodes', (l) => l.maxConsumers);
  gauge('gateway_sfu_imported_producers', 'Producers of other nodes received through pipes', (l) => l.importedProducers);
  gauge('gateway_sfu_pipes', 'Pipes to and from other nodes', (l) => l.pipes);
  // An info metric (always 1): which source gave the announced address, and the address, found once at start-up.
  new Gauge({
    name: 'gateway_sfu_announced_address_info',
    help: 'The address in ICE candidates (address) and where it came from (source); always 1',
    labelNames: ['source', 'address'],
    registers: [registry],
  }).set({ source: node.announced.source, address: node.announced.address }, 1);
  const draining = new Gauge({ name: 'gateway_sfu_draining', help: '1 while the node drains', registers: [registry] });
  draining.set(0);
  node.observer.on('draining', () => draining.set(1));
  const deaths = new Counter({ name: 'gateway_sfu_worker_deaths_total', help: 'mediasoup workers that died', registers: [registry] });
  node.observer.on('workerdied', () => deaths.inc());
  // Only where the node keeps its Pod's deletion cost (in Kubernetes): the series stay absent elsewhere.
  const cost = new Gauge({ name: 'gateway_sfu_pod_deletion_cost', help: "The Pod's deletion cost as last written: its load, or the lowest while draining", registers: [] });
  const costWrites = new Counter({ name: 'gateway_sfu_pod_deletion_cost_writes_total', help: "Writes of the Pod's deletion cost the API server took", registers: [] });
  const costFailures = new Counter({
    name: 'gateway_sfu_pod_deletion_cost_failures_total',
    help: "Writes of the Pod's deletion cost that failed, by why (rate_limited, server_error, unauthenticated, forbidden, not_found, refused, unreachable, bad_answer, credentials)",
    labelNames: ['failure'] as const,
    registers: [],
  });
  if (node.keepsDeletionCost) for (const metric of [cost, costWrites, costFailures]) registry.registerMetric(metric);
  node.observer.on('deletioncost', (value) => {
    cost.set(value);
    costWrites.inc();
  });
  node.observer.on('deletioncostfailed', (failure) => costFailures.inc({ failure }));
  const qualityChanges = new Counter({
    name: 'gateway_sfu_connection_quality_changes_total',
    help: 'Connection quality levels announced, by side (upstream: what the node receives of a participant; downstream: what it sends it) and level',
    labelNames: ['side', 'level'] as const,
    registers: [registry],
  });
  const transportsOpened = new Counter({ name: 'gateway_sfu_transports_opened_total', help: 'WebRTC transports created for clients', registers: [registry] });
  const transportFailures = new Counter({
    name: 'gateway_sfu_transport_failures_total',
    help: 'Client transports that failed, by reason: ice (ICE never connected before the transport was given up), dtls (the DTLS handshake failed)',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  // From the start at 0, so the failure ratio reads 0 rather than "no data".
  const reasons: TransportFailure[] = ['ice', 'dtls'];
  for (const reason of reasons) transportFailures.inc({ reason }, 0);
  node.observer.on('newroom', (room) => {
    room.observer.on('connectionquality', ({ upstream, downstream }) => {
      qualityChanges.inc({ side: 'upstream', level: upstream });
      qualityChanges.inc({ side: 'downstream', level: downstream });
    });
    room.observer.on('newtransport', () => transportsOpened.inc());
    room.observer.on('transportfailed', (reason) => transportFailures.inc({ reason }));
  });
}

/**
 * The media figures of this node: participants, and per worker, direction and kind the RTP
 * packets and bytes, losses, NACKs and PLIs, and the round-trip time to the clients. "in" is
 * what publishers send (producers, measured by this node); "out" is what subscribers get
 * (consumers, with losses, NACKs and PLIs as the subscribers report them). Producers imported
 * from another node through a pipe are counted as "in" on their own node only.
 *
 * mediasoup's statistics are cumulative per stream and streams come and go, so the counters
 * grow by each stream's difference since the previous sample: they only ever increase, which
 * keeps `rate()` right when a stream ends.
 */
export function observeMediaMetrics(node: MeasuredNode, registry: Registry): void {
  const registers = [registry];
  // The open rooms, as the observer reports them.
  const rooms = new Set<Room>();
  node.observer.on('newroom', (room) => {
    rooms.add(room);
    room.observer.once('close', () => rooms.delete(room));
  });
  const labelNames = ['worker', 'direction', 'kind'] as const;
  const packets = new Counter({ name: 'gateway_sfu_rtp_packets_total', help: 'RTP packets received from publishers (direction="in") and sent to subscribers ("out")', labelNames, registers });
  const bytes = new Counter({ name: 'gateway_sfu_rtp_bytes_total', help: 'RTP bytes received from publishers (direction="in") and sent to subscribers ("out")', labelNames, registers });
  const lost = new Counter({
    name: 'gateway_sfu_rtp_lost_packets_total',
    help: 'RTP packets lost: from publishers as this node counts them ("in"), to subscribers as they report them ("out")',
    labelNames,
    registers,
  });
  const nacks = new Counter({
    name: 'gateway_sfu_rtcp_nacks_total',
    help: 'RTCP NACKs (retransmission requests): sent to publishers ("in"), received from subscribers ("out")',
    labelNames,
    registers,
  });
  const plis = new Counter({ name: 'gateway_sfu_rtcp_plis_total', help: 'RTCP PLIs (key frame requests): sent to publishers ("in"), received from subscribers ("out")', labelNames, registers });
  const rtt = new Histogram({
    name: 'gateway_sfu_rtt_seconds',
    help: `Round-trip time between this node and its clients, one observation per stream every ${STATS_INTERVAL_MS / 1000} s`,
    labelNames: ['worker', 'direction'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5],
    registers,
  });
  // Every series exists from the start at 0, so a ratio such as loss over packets reads 0
  // rather than "no data" on a node that never lost a packet.
  for (const index of node.workerIndexes) {
    for (const direction of ['in', 'out'] as const) {
      for (const kind of ['audio', 'video'] as const) for (const counter of [packets, bytes, lost, nacks, plis]) counter.inc({ worker: String(index), direction, kind }, 0);
    }
  }
  new Gauge({
    name: 'gateway_sfu_participants',
    help: 'Participants with at least one WebRTC transport on this node',
    registers,
    collect() {
      let participants = 0;
      for (const room of rooms) participants += new Set([...room.transports.values()].map((t) => t.appData.participantId)).size;
      this.set(participants);
    },
  });

  // What leaves for the recorders, apart from what subscribers get: during a PCI pause nothing
  // may (docs/recording.md), and these are how that is seen, in operation and in the tests.
  const tapPackets = new Counter({ name: 'gateway_sfu_tap_rtp_packets_total', help: 'RTP packets sent to recorders by recording taps', labelNames: ['worker', 'kind'] as const, registers });
  for (const index of node.workerIndexes) for (const kind of ['audio', 'video'] as const) tapPackets.inc({ worker: String(index), kind }, 0);
  new Gauge({
    name: 'gateway_sfu_tap_streams',
    help: 'Streams of recording taps open on this node, sending (state="sending") or paused ("paused")',
    labelNames: ['kind', 'state'] as const,
    registers,
    collect() {
      this.reset();
      for (const kind of ['audio', 'video'] as const) for (const state of ['sending', 'paused'] as const) this.set({ kind, state }, 0);
      for (const room of rooms) {
        for (const consumer of room.taps.consumers) if (!consumer.closed) this.inc({ kind: consumer.kind, state: consumer.paused ? 'paused' : 'sending' });
      }
    },
  });

  let previous = new Map<string, StreamTotals>();
  let sampling = false;
  const sample = async () => {
    if (sampling) return;
    sampling = true;
    const seen = new Map<string, StreamTotals>();
    const record = (key: string, worker: string, direction: Direction, kind: string, stat: types.RtpStreamSendStats | types.RtpStreamRecvStats) => {
      const now: StreamTotals = { packets: stat.packetCount, bytes: stat.byteCount, lost: stat.packetsLost, nacks: stat.nackCount, plis: stat.pliCount };
      const before = previous.get(key);
      seen.set(key, now);
      const labels = { worker, direction, kind };
      // A figure that went down (a receiver report correcting its loss count) adds nothing.
      const grow = (counter: Counter<'worker' | 'direction' | 'kind'>, field: keyof StreamTotals) => {
        const delta = now[field] - (before?.[field] ?? 0);
        if (delta > 0) counter.inc(labels, delta);
      };
      grow(packets, 'packets');
      grow(bytes, 'bytes');
      grow(lost, 'lost');
      grow(nacks, 'nacks');
      grow(plis, 'plis');
      if (stat.roundTripTime && stat.roundTripTime > 0) rtt.observe({ worker, direction }, stat.roundTripTime / 1000);
    };
    // A stream that could not be read this time (closing, a busy worker) keeps its last figures,
    // so that it is not counted from zero again if it answers next time.
    const keep = (prefix: string) => {
      for (const [key, totals] of previous) if (key.startsWith(prefix)) seen.set(key, totals);
    };
    const reads: Array<Promise<void>> = [];
    for (const room of rooms) {
      const worker = String(room.worker.index);
      for (const producer of room.producers.values()) {
        if (producer.appData.importedFrom) continue;
        reads.push(
          producer.getStats().then(
            (stats) => {
              for (const s of stats) record(`p/${producer.id}/${s.ssrc}`, worker, 'in', producer.kind, s);
            },
            () => keep(`p/${producer.id}/`),
          ),
        );
      }
      for (const consumer of room.consumers.values()) {
        reads.push(
          consumer.getStats().then(
            // A consumer's statistics include its producer's inbound stream: only its own count here.
            (stats) => {
              for (const s of stats) if (s.type === 'outbound-rtp') record(`c/${consumer.id}/${s.ssrc}`, worker, 'out', consumer.kind, s);
            },
            () => keep(`c/${consumer.id}/`),
          ),
        );
      }
      for (const consumer of room.taps.consumers) {
        reads.push(
          consumer.getStats().then(
            (stats) =>
              stats.forEach((s) => {
                if (s.type !== 'outbound-rtp') return;
                const key = `t/${consumer.id}/${s.ssrc}`;
                const delta = s.packetCount - (previous.get(key)?.packets ?? 0);
                seen.set(key, { packets: s.packetCount, bytes: s.byteCount, lost: 0, nacks: 0, plis: 0 });
                if (delta > 0) tapPackets.inc({ worker, kind: consumer.kind }, delta);
              }),
            () => keep(`t/${consumer.id}/`),
          ),
        );
      }
    }
    await Promise.all(reads);
    previous = seen;
    sampling = false;
  };
  const timer = setInterval(() => void sample(), STATS_INTERVAL_MS);
  timer.unref();
  // The node stopped: nothing left to sample.
  node.observer.once('close', () => clearInterval(timer));
}
