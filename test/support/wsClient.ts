import WebSocket from 'ws';

/** A raw protocol client for tests: sends frames, collects responses and notifications. */
export class TestClient {
  readonly notifications: Array<Record<string, any>> = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private nextId = 1;
  private readonly pending = new Map<number, (response: Record<string, any>) => void>();
  private readonly unmatched: Array<Record<string, any>> = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const message = JSON.parse(data.toString());
      if (message.notification) this.notifications.push(message.notification);
      else if (message.response) {
        const id = message.response.id ?? 0;
        const resolve = this.pending.get(id);
        if (resolve) {
          this.pending.delete(id);
          resolve(message.response);
        } else this.unmatched.push(message.response);
      }
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  static async open(url: string): Promise<TestClient> {
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new TestClient(ws);
  }

  request(method: string, params: Record<string, unknown> = {}): Promise<Record<string, any>> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.ws.send(JSON.stringify({ id, [method]: params }));
    });
  }

  /** Sends raw text and resolves with the next response that matches no request. */
  async raw(text: string | Buffer): Promise<Record<string, any>> {
    const before = this.unmatched.length;
    this.ws.send(text);
    for (let i = 0; i < 200 && this.unmatched.length === before; i++) await new Promise((r) => setTimeout(r, 10));
    return this.unmatched[before]!;
  }

  async waitForNotification(kind: string, timeoutMs = 5_000): Promise<Record<string, any>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.notifications.find((n) => kind in n);
      if (found) return found[kind];
      if (Date.now() > deadline) throw new Error(`no ${kind} notification within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.ws.terminate();
  }
}

/** Opens clients and remembers them, so a test closes them all at the end. */
export class TestClients {
  private readonly all: TestClient[] = [];

  async open(url: string): Promise<TestClient> {
    const client = await TestClient.open(url);
    this.all.push(client);
    return client;
  }

  /** Opens a client and joins with the token; a refused join fails the test. */
  async join(url: string, token: string): Promise<{ client: TestClient; join: Record<string, any> }> {
    const client = await this.open(url);
    const response = await client.request('join', { token, protocolVersion: 1 });
    if (response.error) throw new Error(`join refused: ${response.error.code} ${response.error.message}`);
    return { client, join: response.join };
  }

  closeAll(): void {
    for (const client of this.all.splice(0)) client.close();
  }
}
