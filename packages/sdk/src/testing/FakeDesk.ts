import { WebSocketServer, type WebSocket as ServerSocket } from 'ws';

/** A frame of the desk protocol, as JSON. */
export type DeskFrame = Record<string, any>;

export interface DeskConn {
  ws: ServerSocket;
  /** The path the client opened. */
  path: string;
  frames: DeskFrame[];
}

/**
 * A scripted desk server at /v1/desk: `answer` gets every request and returns the result
 * (`{ contact: {...} }`, `{ error: {...} }`; nothing to leave it unanswered), which goes back
 * as `{"response": {"id": n, ...result}}`. Hello and ping have default answers.
 */
export class FakeDesk {
  readonly conns: DeskConn[] = [];
  /** The role hello answers with. */
  role = 'end_user';
  /** hello's answer besides the role (an agent's state, say), or an error. */
  welcome: DeskFrame = {};
  /** Whether pings on a connection are answered (all by default). */
  answersPings: (conn: DeskConn) => boolean = () => true;
  answer: (method: string, params: DeskFrame, conn: DeskConn) => DeskFrame | undefined = () => undefined;
  private readonly waiters: Array<() => void> = [];

  private constructor(
    private readonly wss: WebSocketServer,
    /** The http base a client is given, as an app would give it. */
    readonly url: string,
  ) {
    wss.on('connection', (ws, req) => {
      const conn: DeskConn = { ws, path: req.url ?? '', frames: [] };
      this.conns.push(conn);
      ws.on('message', (data) => {
        const request = JSON.parse(data.toString()) as DeskFrame;
        conn.frames.push(request);
        const method = Object.keys(request).find((k) => k !== 'id') ?? '';
        const result = this.resultOf(method, request[method] ?? {}, conn);
        if (result !== undefined && ws.readyState === ws.OPEN) ws.send(JSON.stringify({ response: { id: request.id, ...result } }));
        for (const wake of this.waiters.splice(0)) wake();
      });
    });
  }

  static async start(): Promise<FakeDesk> {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((resolve) => wss.once('listening', resolve));
    return new FakeDesk(wss, `http://127.0.0.1:${(wss.address() as { port: number }).port}`);
  }

  private resultOf(method: string, params: DeskFrame, conn: DeskConn): DeskFrame | undefined {
    if (method === 'hello') return this.welcome.error ? this.welcome : { hello: { role: this.role, identity: 'me', protocolVersion: 1, ...this.welcome } };
    if (method === 'ping') return this.answersPings(conn) ? { ok: {} } : undefined;
    return this.answer(method, params, conn);
  }

  last(): DeskConn {
    const conn = this.conns[this.conns.length - 1];
    if (!conn) throw new Error('no connection yet');
    return conn;
  }

  /** Sends a notification on the latest connection. */
  notify(event: DeskFrame): void {
    this.last().ws.send(JSON.stringify({ notification: event }));
  }

  /** The methods asked on each connection, in order. */
  methods(conn: DeskConn = this.last()): string[] {
    return conn.frames.map((f) => Object.keys(f).find((k) => k !== 'id') ?? '');
  }

  /** Resolves once some request satisfies `test` (at once if one did). */
  async until(test: () => boolean, timeoutMs = 3_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!test()) {
      if (Date.now() > deadline) throw new Error('timed out waiting for the desk client');
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.ws.terminate();
    await new Promise((resolve) => this.wss.close(resolve));
  }
}
