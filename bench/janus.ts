/**
 * Janus (Debian's `janus` 1.1.2) for bench/sfu-vs-janus.ts: started from the configuration in
 * bench/janus/ on a free WebSocket port, and a minimal client of the Janus API over WebSocket
 * (sessions, plugin handles, messages with JSEP), enough for the VideoRoom plugin.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';

type Json = Record<string, any>;

const JANUS_BINARY = process.env.JANUS_PATH ?? '/usr/bin/janus';
const CONFIG_TEMPLATES = new URL('./janus/', import.meta.url).pathname;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, exited: () => string | null, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const failure = exited();
    if (failure) throw new Error(`janus exited before listening: ${failure}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = new Socket();
      socket.once('connect', () => resolve(true)).once('error', () => resolve(false));
      socket.connect(port, '127.0.0.1');
    }).catch(() => false);
    if (open) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`janus did not listen on port ${port} within ${timeoutMs} ms`);
}

export interface JanusProcess {
  readonly pid: number;
  readonly wsUrl: string;
  stop(): Promise<void>;
}

/** Starts Janus with ICE on `address` only; resolves once its WebSocket transport listens. */
export async function startJanus(address: string): Promise<JanusProcess> {
  const configs = mkdtempSync(join(tmpdir(), 'bench-janus-'));
  const wsPort = await freePort();
  const values: Record<string, string> = { CONFIGS: configs, ADDRESS: address, WS_PORT: String(wsPort) };
  for (const file of readdirSync(CONFIG_TEMPLATES).filter((f) => f.endsWith('.jcfg'))) {
    const text = readFileSync(join(CONFIG_TEMPLATES, file), 'utf8').replace(/@([A-Z_]+)@/g, (_, name: string) => {
      const value = values[name];
      if (value === undefined) throw new Error(`bench/janus/${file}: no value for @${name}@`);
      return value;
    });
    writeFileSync(join(configs, file), text);
  }
  const child = spawn(JANUS_BINARY, ['--config', join(configs, 'janus.jcfg'), '--configs-folder', configs, '--disable-colors'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
    if (process.env.JANUS_DEBUG) process.stderr.write(chunk);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exit: string | null = null;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exit = `code ${code} signal ${signal}\n${output}`;
      resolve();
    }),
  );
  child.once('error', (error) => {
    exit = String(error);
  });
  await waitForPort(wsPort, () => exit);
  return {
    pid: child.pid!,
    wsUrl: `ws://127.0.0.1:${wsPort}`,
    async stop() {
      if (exit) return;
      child.kill('SIGTERM');
      const killed = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killed);
    },
  };
}

/**
 * An offer or answer. `trickle: false` says every candidate is in the SDP; `rid_order` says in
 * which order a simulcast offer lists its layers (Janus assumes high to low).
 */
export interface Jsep {
  readonly type: 'offer' | 'answer';
  readonly sdp: string;
  readonly trickle?: boolean;
  readonly rid_order?: 'hml' | 'lmh';
}

/** A plugin's reply to a message: its data and, for offers and answers, the JSEP. */
export interface PluginReply {
  readonly data: Json;
  readonly jsep?: Jsep;
}

/** One Janus session over one WebSocket, kept alive while open. */
export class JanusSession {
  private nextTransaction = 1;
  private readonly pending = new Map<string, { resolve: (message: Json) => void; reject: (error: Error) => void }>();
  private keepalive: NodeJS.Timeout | undefined;
  private sessionId = 0;

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (raw) => {
      const message = JSON.parse(raw.toString()) as Json;
      // An asynchronous plugin request is acknowledged first; its event carries the same transaction.
      if (message.janus === 'ack' || !message.transaction) return;
      const waiter = this.pending.get(message.transaction);
      if (!waiter) return;
      this.pending.delete(message.transaction);
      if (message.janus === 'error') waiter.reject(new Error(`janus error ${message.error?.code}: ${message.error?.reason}`));
      else waiter.resolve(message);
    });
    ws.on('close', () => {
      clearInterval(this.keepalive);
      for (const waiter of this.pending.values()) waiter.reject(new Error('janus WebSocket closed'));
      this.pending.clear();
    });
  }

  static async open(url: string): Promise<JanusSession> {
    const ws = new WebSocket(url, 'janus-protocol');
    await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject));
    const session = new JanusSession(ws);
    session.sessionId = (await session.send({ janus: 'create' })).data.id;
    // Janus drops a session after 60 s without a request.
    session.keepalive = setInterval(() => void session.send({ janus: 'keepalive', session_id: session.sessionId }).catch(() => {}), 20_000);
    return session;
  }

  private send(request: Json): Promise<Json> {
    const transaction = String(this.nextTransaction++);
    return new Promise((resolve, reject) => {
      this.pending.set(transaction, { resolve, reject });
      this.ws.send(JSON.stringify({ ...request, transaction }));
    });
  }

  /** Attaches a handle to a plugin (e.g. janus.plugin.videoroom); returns the handle id. */
  async attach(plugin: string): Promise<number> {
    return (await this.send({ janus: 'attach', session_id: this.sessionId, plugin })).data.id;
  }

  /** Sends a plugin request, with an offer or answer if given; resolves with the plugin's reply. */
  async message(handle: number, body: Json, jsep?: Jsep): Promise<PluginReply> {
    const reply = await this.send({ janus: 'message', session_id: this.sessionId, handle_id: handle, body, ...(jsep ? { jsep } : {}) });
    const data = reply.plugindata?.data as Json | undefined;
    if (!data) throw new Error(`janus reply without plugin data: ${JSON.stringify(reply)}`);
    if (data.error) throw new Error(`janus plugin error ${data.error_code}: ${data.error}`);
    return { data, ...(reply.jsep ? { jsep: reply.jsep } : {}) };
  }

  close(): void {
    clearInterval(this.keepalive);
    this.ws.close();
  }
}
