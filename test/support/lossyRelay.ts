import dgram from 'node:dgram';
import net from 'node:net';
import { freeMediaPorts, startSfuProcess } from '@gateway/testing';

/**
 * An SFU whose worker announces 127.0.0.2, where relays listen on the same port (UDP, and TCP
 * when asked): every packet between the browsers and the worker goes through them.
 */
export async function startSfuBehindRelay(natsUrl: string, options: { tcp?: boolean } = {}) {
  const rtcPort = await freeMediaPorts(1);
  const sfu = await startSfuProcess({ natsUrl, env: { SFU_RTC_PORT_MIN: String(rtcPort), SFU_ANNOUNCED_ADDRESS: '127.0.0.2' } });
  const udp = await LossyUdpRelay.start('127.0.0.2', rtcPort, { host: '127.0.0.1', port: rtcPort });
  const tcp = options.tcp ? await relayTcp('127.0.0.2', rtcPort, { host: '127.0.0.1', port: rtcPort }) : undefined;
  return { sfu, udp, tcp };
}

/**
 * A UDP relay in front of an SFU worker's media port, dropping a share of what the SFU sends to
 * a chosen client: a receiver's lossy network, on a machine where Chromium's DevTools network
 * emulation leaves WebRTC alone. The SFU announces the relay's address (another loopback
 * address, same port) in its ICE candidates; each client address gets its own socket towards
 * the SFU, so the SFU sees one peer per client, as behind a NAT.
 */
export class LossyUdpRelay {
  /** Client ICE username fragment -> fraction of the SFU's packets to it that are dropped. */
  private readonly loss = new Map<string, number>();
  /** Client address (ip:port) -> its ICE username fragment, from its STUN binding requests. */
  private readonly ufragOf = new Map<string, string>();
  private readonly upstream = new Map<string, dgram.Socket>();
  private closed = false;
  dropped = 0;
  /** Nothing gets through either way: a network that blocks UDP (TCP is relayed apart, see relayTcp). */
  blocked = false;

  private constructor(
    private readonly front: dgram.Socket,
    private readonly target: { host: string; port: number },
  ) {
    front.on('message', (message, from) => this.fromClient(message, from));
  }

  /** Listens on `host`:`port` and relays to `target` (the SFU worker's address). */
  static async start(host: string, port: number, target: { host: string; port: number }): Promise<LossyUdpRelay> {
    const front = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      front.once('error', reject);
      front.bind(port, host, () => resolve());
    });
    return new LossyUdpRelay(front, target);
  }

  /**
   * Drops `ratio` (0-1) of the packets the SFU sends to one browser transport, named by its ICE
   * username fragment (`usernameFragment` of its local candidate in getStats()): the addresses
   * Chromium reports are not those that reach the relay.
   */
  setLoss(clientUfrag: string, ratio: number): void {
    if (ratio <= 0) this.loss.delete(clientUfrag);
    else this.loss.set(clientUfrag, ratio);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.front.close();
    for (const socket of this.upstream.values()) socket.close();
    this.upstream.clear();
  }

  private fromClient(message: Buffer, from: dgram.RemoteInfo): void {
    if (this.blocked) {
      this.dropped++;
      return;
    }
    const key = `${from.address}:${from.port}`;
    const ufrag = clientUfragOf(message);
    if (ufrag) this.ufragOf.set(key, ufrag);
    let socket = this.upstream.get(key);
    if (!socket) {
      socket = dgram.createSocket('udp4');
      socket.bind(0, this.target.host);
      socket.on('message', (reply) => {
        if (this.closed) return;
        if (this.blocked || Math.random() < (this.loss.get(this.ufragOf.get(key) ?? '') ?? 0)) {
          this.dropped++;
          return;
        }
        this.front.send(reply, from.port, from.address);
      });
      this.upstream.set(key, socket);
    }
    socket.send(message, this.target.port, this.target.host);
  }
}

/** The client's ufrag of a STUN binding request (USERNAME is "<server ufrag>:<client ufrag>"). */
function clientUfragOf(message: Buffer): string | undefined {
  if (message.length < 20 || message.readUInt16BE(0) !== 0x0001 || message.readUInt32BE(4) !== 0x2112a442) return undefined;
  for (let at = 20; at + 4 <= message.length; ) {
    const type = message.readUInt16BE(at);
    const length = message.readUInt16BE(at + 2);
    if (type === 0x0006) return message.toString('utf8', at + 4, at + 4 + length).split(':')[1];
    at += 4 + Math.ceil(length / 4) * 4;
  }
  return undefined;
}

/** A TCP relay beside the UDP one (ICE over TCP to the worker's same port), for networks that block UDP. */
export async function relayTcp(host: string, port: number, target: { host: string; port: number }): Promise<{ close(): void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => sockets.delete(socket));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}
