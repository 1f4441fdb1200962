/**
 * The floor: what the kernel alone spends to send and receive one UDP packet of an SFU's
 * typical size, one syscall per packet and batched (sendmmsg/recvmmsg), measured by
 * bench/udp-floor.c (compiled here with gcc). An SFU's CPU per forwarded packet is reported as
 * a multiple of it. Standalone: `node --import tsx bench/udp-floor.ts [address]`.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PAYLOAD_BYTES = 1200;
const SECONDS = Number(process.env.BENCH_FLOOR_SECONDS ?? 3);

const FLOOR_FIELDS = [
  'payload_bytes',
  'batch',
  'sent',
  'received',
  'loss_percent',
  'send_us_per_packet',
  'send_kernel_share_percent',
  'receive_us_per_packet',
  'send_and_receive_us_per_packet',
] as const;
export type FloorResult = Record<(typeof FLOOR_FIELDS)[number], number>;

/** The C program's one line of JSON, checked field by field. */
function parseFloor(line: string): FloorResult {
  const parsed = JSON.parse(line) as Record<string, unknown>;
  for (const field of FLOOR_FIELDS) {
    if (typeof parsed[field] !== 'number') throw new Error(`udp-floor printed no number for ${field}: ${line}`);
  }
  return parsed as FloorResult;
}

function compile(): string {
  const binary = join(mkdtempSync(join(tmpdir(), 'udp-floor-')), 'udp-floor');
  execFileSync('gcc', ['-O2', '-Wall', '-Werror', '-o', binary, new URL('./udp-floor.c', import.meta.url).pathname], { stdio: 'inherit' });
  return binary;
}

/** One syscall per packet, then batches of 32 (what an SFU with sendmmsg or io_uring could reach). */
export function measureFloor(address: string): { single: FloorResult; batched: FloorResult } {
  const binary = compile();
  const run = (batch: number) => parseFloor(execFileSync(binary, [address, String(PAYLOAD_BYTES), String(SECONDS), String(batch)], { encoding: 'utf8' }));
  return { single: run(1), batched: run(32) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const floor = measureFloor(process.argv[2] ?? '127.0.0.1');
  console.log(JSON.stringify({ benchmark: 'udp_floor', ...floor }));
}
