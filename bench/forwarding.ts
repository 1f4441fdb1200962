import { cpuTimes } from './stack.js';

/** Packets the subscribers have received and lost so far, over all of them. */
export type PacketCounter = () => Promise<{ received: number; lost: number }>;

export interface ForwardingWindow {
  readonly packetsPerS: number;
  /** CPU seconds per second of the media process, user + kernel. */
  readonly cpuPerS: number;
  readonly userPerS: number;
  readonly systemShare: number;
  readonly lossPercent: number;
}

/**
 * Packets forwarded to the subscribers (received plus lost, from their inbound-rtp stats) and the
 * media process's CPU (from /proc) over one window.
 */
export async function measureForwarding(mediaPid: number, packets: PacketCounter, windowMs: number): Promise<ForwardingWindow> {
  const p0 = await packets();
  const c0 = await cpuTimes(mediaPid);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, windowMs));
  const p1 = await packets();
  const c1 = await cpuTimes(mediaPid);
  const seconds = (performance.now() - t0) / 1000;
  const lost = p1.lost - p0.lost;
  const forwarded = p1.received - p0.received + lost;
  const cpu = c1.user + c1.system - c0.user - c0.system;
  return {
    packetsPerS: forwarded / seconds,
    cpuPerS: cpu / seconds,
    userPerS: (c1.user - c0.user) / seconds,
    systemShare: (c1.system - c0.system) / Math.max(0.01, cpu),
    lossPercent: (lost / Math.max(1, forwarded)) * 100,
  };
}

/**
 * CPU per extra forwarded packet between two windows with different subscriber counts: the
 * media process's fixed per-room work (receiving from the publisher, RTCP, timers) cancels out.
 */
export function marginalSecondsPerPacket(low: ForwardingWindow, high: ForwardingWindow, cpu: 'cpuPerS' | 'userPerS' = 'cpuPerS'): number {
  return (high[cpu] - low[cpu]) / (high.packetsPerS - low.packetsPerS);
}
