import { Device } from 'mediasoup-client';
import type { types } from 'mediasoup-client';
import type { IceServer } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError } from '../errors.js';
import type { SignalingClient } from '../signaling/SignalingClient.js';
import { IceRestarts } from './IceRestarts.js';

export type Direction = 'send' | 'recv';

/** What the transports need of their room. */
export interface TransportsContext {
  signaling: Pick<SignalingClient, 'request' | 'state'>;
  /** A mediasoup-client handler factory for runtimes without WebRTC; browsers detect their own. */
  handlerFactory?: types.HandlerFactory;
  /** `relay`: the transports use TURN only (ConnectOptions.iceTransportPolicy). */
  iceTransportPolicy: 'all' | 'relay';
  isClosed(): boolean;
  /** A transport is about to close: what it carried (producers or consumers) goes with it. */
  onClose(direction: Direction): void;
}

/**
 * The mediasoup device and the session's two transports, send and receive, kept in line with
 * the server's, with ICE restarted when a media path breaks.
 */
export class Transports {
  private device: Device | undefined;
  private deviceCapabilities = '';
  private readonly byDirection: Partial<Record<Direction, types.Transport>> = {};
  private readonly iceRestarts: IceRestarts;
  /** The TURN servers and credentials of the latest join, resume or ICE restart. */
  private iceServers: RTCIceServer[] = [];

  constructor(private readonly context: TransportsContext) {
    this.iceRestarts = new IceRestarts<types.Transport>({
      isClosed: () => context.isClosed(),
      signalingConnected: () => context.signaling.state === 'connected',
      restart: (transport) => this.restartIce(transport),
    });
  }

  get send(): types.Transport | undefined {
    return this.byDirection.send;
  }

  get recv(): types.Transport | undefined {
    return this.byDirection.recv;
  }

  /** What this device can receive (asked for with every consume). */
  get recvRtpCapabilities(): types.RtpCapabilities {
    return this.device!.recvRtpCapabilities;
  }

  /** Loads the device for the router's capabilities, unless already loaded for the same ones. */
  async loadDevice(routerRtpCapabilities: Record<string, unknown>): Promise<void> {
    const key = JSON.stringify(routerRtpCapabilities);
    if (this.device && key === this.deviceCapabilities) return;
    let device: Device;
    try {
      const { handlerFactory } = this.context;
      device = handlerFactory ? new Device({ handlerFactory }) : await Device.factory();
    } catch (error) {
      throw GatewayError.from(error, ErrorCode.UNSUPPORTED);
    }
    await device.load({ routerRtpCapabilities: routerRtpCapabilities as types.RtpCapabilities });
    // Transports belong to the device they were made with.
    this.close('send');
    this.close('recv');
    this.device = device;
    this.deviceCapabilities = key;
  }

  /**
   * Takes the TURN servers of a join or resume: new transports use them, and those kept get
   * them too (credentials handed out earlier may have expired for new allocations).
   */
  async useIceServers(servers: readonly IceServer[]): Promise<void> {
    this.iceServers = servers.map(toRtcIceServer);
    for (const transport of [this.byDirection.send, this.byDirection.recv]) {
      if (transport && !transport.closed) await transport.updateIceServers({ iceServers: this.iceServers });
    }
  }

  /**
   * Keeps the transports the session still has on the server (`live`), makes the missing ones
   * that are `wanted`, closes the rest. Returns the kept ones.
   */
  async ensure(live: ReadonlySet<string>, wanted: Record<Direction, boolean>): Promise<types.Transport[]> {
    const kept: types.Transport[] = [];
    for (const direction of ['send', 'recv'] as const) {
      const current = this.byDirection[direction];
      if (current && wanted[direction] && !current.closed && live.has(current.id)) {
        kept.push(current);
        continue;
      }
      this.close(direction);
      if (wanted[direction]) this.byDirection[direction] = await this.create(direction);
    }
    return kept;
  }

  close(direction: Direction): void {
    const transport = this.byDirection[direction];
    if (!transport) return;
    delete this.byDirection[direction];
    this.iceRestarts.forget(transport);
    this.context.onClose(direction);
    transport.close();
  }

  /** Closes both, for good (the room is being torn down). */
  closeAll(): void {
    this.iceRestarts.cancelAll();
    this.close('recv');
    this.close('send');
  }

  /** Signaling is reconnecting: its restore restarts ICE on what it keeps. */
  cancelIceRestarts(): void {
    this.iceRestarts.cancelAll();
  }

  async restartIce(transport: types.Transport): Promise<void> {
    const { iceParameters, iceServers } = await this.context.signaling.request('restartIce', { transportId: transport.id });
    if (transport.closed) return;
    // Fresh TURN credentials first, so the restarted ICE can allocate relays with them.
    if (iceServers.length > 0) {
      this.iceServers = iceServers.map(toRtcIceServer);
      await transport.updateIceServers({ iceServers: this.iceServers });
    }
    await transport.restartIce({ iceParameters: iceParameters as types.IceParameters });
  }

  /** WebRTC statistics of the two transports. */
  async getStats(): Promise<{ send?: RTCStatsReport; recv?: RTCStatsReport }> {
    const [send, recv] = await Promise.all([this.byDirection.send?.getStats(), this.byDirection.recv?.getStats()]);
    return { send, recv };
  }

  private async create(direction: Direction): Promise<types.Transport> {
    const { signaling } = this.context;
    const info = await signaling.request('createTransport', { direction });
    const options: types.TransportOptions = {
      id: info.transportId,
      iceParameters: info.iceParameters as types.IceParameters,
      iceCandidates: info.iceCandidates as types.IceCandidate[],
      dtlsParameters: info.dtlsParameters as types.DtlsParameters,
      iceServers: this.iceServers,
      iceTransportPolicy: this.context.iceTransportPolicy,
    };
    const transport = direction === 'send' ? this.device!.createSendTransport(options) : this.device!.createRecvTransport(options);
    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      signaling.request('connectTransport', { transportId: transport.id, dtlsParameters: asStruct(dtlsParameters) }).then(() => callback(), errback);
    });
    transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
      signaling
        .request('produce', { transportId: transport.id, kind, rtpParameters: asStruct(rtpParameters), source: String(appData.source), paused: appData.paused === true })
        .then(({ producerId }) => callback({ id: producerId }), errback);
    });
    transport.on('connectionstatechange', (state) => this.iceRestarts.onStateChange(transport, state));
    return transport;
  }
}

function toRtcIceServer(server: IceServer): RTCIceServer {
  return { urls: [...server.urls], username: server.username, credential: server.credential };
}

/** mediasoup parameter objects travel as google.protobuf.Struct, i.e. plain JSON objects. */
export function asStruct(value: object): Record<string, unknown> {
  return value as Record<string, unknown>;
}
