import { ErrorCode, GatewayError } from '@gateway/common';

/**
 * Pieces for streaming artifacts to destinations: whatever an artifact's size, a destination
 * holds at most one part, one segment or one base64 block of it.
 */

/** The length of the base64 of `bytes` bytes (with padding). */
export const base64Length = (bytes: number): number => 4 * Math.ceil(bytes / 3);

/** Base64 of a byte stream, block by block: up to two bytes are carried to the next chunk. */
export async function* base64Of(chunks: AsyncIterable<Buffer>): AsyncGenerator<string> {
  let carry = Buffer.alloc(0);
  for await (const chunk of chunks) {
    const bytes = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
    const whole = bytes.length - (bytes.length % 3);
    if (whole > 0) yield bytes.subarray(0, whole).toString('base64');
    carry = Buffer.from(bytes.subarray(whole));
  }
  if (carry.length > 0) yield carry.toString('base64');
}

/** Consecutive pieces of exactly `size` bytes (the last one shorter; none for an empty stream). */
export async function* piecesOf(chunks: AsyncIterable<Buffer>, size: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of chunks) {
    pending.push(chunk);
    pendingBytes += chunk.length;
    if (pendingBytes < size) continue;
    let all = Buffer.concat(pending, pendingBytes);
    while (all.length >= size) {
      yield all.subarray(0, size);
      all = all.subarray(size);
    }
    pending = all.length > 0 ? [Buffer.from(all)] : [];
    pendingBytes = all.length;
  }
  if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes);
}

/** The whole stream in one buffer: only for what is known to be small. */
export async function collect(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of chunks) parts.push(chunk);
  return Buffer.concat(parts);
}

/**
 * A byte stream read in consecutive ranges: `take(n)` yields exactly the next n bytes, so a
 * large artifact goes out as several request bodies in one pass.
 */
export class ByteCursor {
  private readonly iterator: AsyncIterator<Buffer>;
  private rest: Buffer | undefined;
  /** Bytes handed out so far. */
  position = 0;

  constructor(chunks: AsyncIterable<Buffer>) {
    this.iterator = chunks[Symbol.asyncIterator]();
  }

  async *take(count: number): AsyncGenerator<Buffer> {
    let remaining = count;
    while (remaining > 0) {
      let chunk = this.rest;
      this.rest = undefined;
      if (!chunk) {
        const step = await this.iterator.next();
        if (step.done) throw new GatewayError(ErrorCode.INTERNAL, 'the artifact ended before its size');
        chunk = step.value;
      }
      if (chunk.length > remaining) {
        this.rest = chunk.subarray(remaining);
        chunk = chunk.subarray(0, remaining);
      }
      remaining -= chunk.length;
      this.position += chunk.length;
      yield chunk;
    }
  }

  /** Moves on to `offset`, dropping what lies before it (a range that was read elsewhere). */
  async skipTo(offset: number): Promise<void> {
    if (offset > this.position) for await (const _skipped of this.take(offset - this.position));
  }

  /** Stops the underlying read (its resources are released). */
  async close(): Promise<void> {
    await this.iterator.return?.();
  }
}

/** Skips `offset` bytes of a stream, then yields the next `count`. */
export async function* rangeOf(chunks: AsyncIterable<Buffer>, offset: number, count: number): AsyncGenerator<Buffer> {
  const cursor = new ByteCursor(chunks);
  try {
    for await (const _skipped of cursor.take(offset));
    yield* cursor.take(count);
  } finally {
    await cursor.close();
  }
}

/** Strings and bytes as the bytes of a request body. */
export async function* bodyOf(...pieces: Array<string | Buffer | AsyncIterable<Buffer | string>>): AsyncGenerator<Uint8Array> {
  for (const piece of pieces) {
    if (typeof piece === 'string') yield Buffer.from(piece);
    else if (Buffer.isBuffer(piece)) yield piece;
    else for await (const part of piece) yield typeof part === 'string' ? Buffer.from(part) : part;
  }
}

/** A request body streamed from a source that can be read again (for a retry), with its length known up front. */
export interface StreamedBody {
  length: number;
  open(): AsyncIterable<Uint8Array>;
}
