import type { ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { ErrorCode, GatewayError } from '@gateway/common';

/**
 * An even port whose successor is free too (RTP and RTCP), picked by the kernel. `taken`: pairs
 * already picked for the same capture, free until ffmpeg binds them all, so never picked twice.
 */
export async function freePortPair(taken: ReadonlySet<number> = new Set()): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const probe = createSocket('udp4');
    const port = await new Promise<number>((resolve, reject) => {
      probe.once('error', reject);
      probe.bind(0, '0.0.0.0', () => resolve(probe.address().port));
    });
    probe.close();
    const even = port % 2 === 0 ? port : port - 1;
    if (even < 1024 || taken.has(even)) continue;
    if ((await portFree(even)) && (await portFree(even + 1))) return even;
  }
  throw new GatewayError(ErrorCode.UNAVAILABLE, 'no free UDP port pair for a recording stream');
}

export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    socket.once('error', () => resolve(false));
    socket.bind(port, '0.0.0.0', () => socket.close(() => resolve(true)));
  });
}

/** ffmpeg has opened its inputs once their ports are taken. */
export async function waitForBoundPorts(ports: number[], child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new GatewayError(ErrorCode.INTERNAL, 'ffmpeg exited while starting');
    const free = await Promise.all(ports.map(portFree));
    if (free.every((f) => !f)) return;
    if (Date.now() > deadline) throw new GatewayError(ErrorCode.TIMEOUT, 'ffmpeg did not open its inputs');
    await new Promise((r) => setTimeout(r, 50));
  }
}
