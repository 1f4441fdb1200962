import { afterEach, describe, expect, it, vi } from 'vitest';
import { Device, FakeHandler, type types } from 'mediasoup-client';
import type { IceServer } from '@gateway/proto/gateway/signaling/v1/signaling';
import * as fakeParameters from 'mediasoup-client/fakeParameters';
import { FakeMediaStreamTrack } from 'fake-mediastreamtrack';
import { Transports, type Direction, type TransportsContext } from './Transports.js';

const routerCapabilities = () => fakeParameters.generateRouterRtpCapabilities() as unknown as Record<string, unknown>;

/**
 * Transports on a real mediasoup-client device (its fake handler, as in the Room's tests), and a
 * server that answers what they ask: transports named TR_1, TR_2…, producers PR_…, fresh ICE
 * credentials on every restart. `hold(method)` keeps the answers to a method until the function it
 * returns is called.
 */
function setup(options: { iceTransportPolicy?: 'all' | 'relay' } = {}) {
  let seq = 0;
  // What the server gives with a restart: none (no TURN) unless a test sets some.
  let restartIceServers: IceServer[] = [];
  const giveOnRestart = (servers: IceServer[]) => {
    restartIceServers = servers;
  };
  const held = new Map<string, Promise<void>>();
  const hold = (method: string) => {
    let release!: () => void;
    held.set(method, new Promise<void>((resolve) => (release = resolve)));
    return () => {
      held.delete(method);
      release();
    };
  };
  const request = vi.fn(async (method: string, params: Record<string, unknown>) => {
    await held.get(method);
    switch (method) {
      case 'createTransport': {
        const remote = fakeParameters.generateTransportRemoteParameters();
        return { transportId: `TR_${++seq}`, direction: params.direction, iceParameters: remote.iceParameters, iceCandidates: remote.iceCandidates, dtlsParameters: remote.dtlsParameters };
      }
      case 'restartIce':
        return { iceParameters: { usernameFragment: `restarted-${++seq}`, password: 'p', iceLite: true }, iceServers: restartIceServers };
      case 'produce':
        return { producerId: `PR_${++seq}` };
      default:
        return {};
    }
  });
  const signaling = { request, state: 'connected' };
  const closed: Direction[] = [];
  const context: TransportsContext = {
    signaling: signaling as unknown as TransportsContext['signaling'],
    handlerFactory: FakeHandler.createFactory(fakeParameters),
    iceTransportPolicy: options.iceTransportPolicy ?? 'all',
    isClosed: () => false,
    onClose: (direction) => void closed.push(direction),
  };
  const asked = () => request.mock.calls.map(([method, params]) => (method === 'createTransport' ? `${method}:${params.direction}` : method));
  return { transports: new Transports(context), context, request, signaling, closed, asked, hold, giveOnRestart };
}

const both = { send: true, recv: true };

describe('Transports', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('asks the server for each wanted transport, keeps those it still has, and replaces or closes the rest', async () => {
    const { transports, closed, asked } = setup();
    await transports.loadDevice(routerCapabilities());
    expect(await transports.ensure(new Set(), both)).toEqual([]);
    expect(asked()).toEqual(['createTransport:send', 'createTransport:recv']);
    const send = transports.send!;
    const recv = transports.recv!;
    expect([send.id, send.direction, recv.id, recv.direction]).toEqual(['TR_1', 'send', 'TR_2', 'recv']);

    // After a resume the server still has both: nothing is asked again.
    expect(await transports.ensure(new Set(['TR_1', 'TR_2']), both)).toEqual([send, recv]);
    expect(asked()).toHaveLength(2);

    // The send transport is gone on the server: replaced, and what it carried goes with it.
    expect(await transports.ensure(new Set(['TR_2']), both)).toEqual([recv]);
    expect(send.closed).toBe(true);
    expect(closed).toEqual(['send']);
    expect(transports.send!.id).toBe('TR_3');

    // Publishing no longer granted: the send transport is closed, not made again.
    const replaced = transports.send!;
    expect(await transports.ensure(new Set(['TR_2', 'TR_3']), { send: false, recv: true })).toEqual([recv]);
    expect(replaced.closed).toBe(true);
    expect(transports.send).toBeUndefined();
    expect(closed).toEqual(['send', 'send']);
    expect(asked()).toHaveLength(3);
  });

  it('connects and produces through signaling, with the id the server gave', async () => {
    const { transports, request } = setup();
    await transports.loadDevice(routerCapabilities());
    await transports.ensure(new Set(), { send: true, recv: false });
    const send = transports.send!;
    const producer = await send.produce({ track: new FakeMediaStreamTrack({ kind: 'audio' }) as unknown as MediaStreamTrack, appData: { source: 'microphone' } });
    const [[, connect], [, produce]] = request.mock.calls.slice(1) as Array<[string, Record<string, unknown>]>;
    expect(request.mock.calls.slice(1).map(([method]) => method)).toEqual(['connectTransport', 'produce']);
    expect(connect).toMatchObject({ transportId: 'TR_1', dtlsParameters: { role: 'server' } });
    expect(produce).toMatchObject({ transportId: 'TR_1', kind: 'audio', source: 'microphone', paused: false });
    expect(producer.id).toBe('PR_2');
  });

  it('keeps the device and its transports for the same capabilities; other capabilities close them', async () => {
    const { transports, closed, asked } = setup();
    const capabilities = routerCapabilities();
    await transports.loadDevice(capabilities);
    await transports.ensure(new Set(), both);
    const send = transports.send!;
    await transports.loadDevice(structuredClone(capabilities));
    expect(transports.send).toBe(send);
    expect(closed).toEqual([]);

    // Transports belong to the device they were made with.
    await transports.loadDevice({ ...capabilities, headerExtensions: [] });
    expect(send.closed).toBe(true);
    expect([transports.send, transports.recv]).toEqual([undefined, undefined]);
    expect(closed.sort()).toEqual(['recv', 'send']);
    await transports.ensure(new Set(['TR_1', 'TR_2']), both);
    expect(asked()).toEqual(['createTransport:send', 'createTransport:recv', 'createTransport:send', 'createTransport:recv']);
  });

  it('fails as UNSUPPORTED where there is no WebRTC and no handler to use instead', async () => {
    const transports = new Transports({ ...setup().context, handlerFactory: undefined });
    await expect(transports.loadDevice(routerCapabilities())).rejects.toMatchObject({ code: 'UNSUPPORTED' });
  });

  it('restarts ICE with the credentials the server gives, unless the transport closed meanwhile', async () => {
    const { transports, request, hold } = setup();
    await transports.loadDevice(routerCapabilities());
    await transports.ensure(new Set(), both);
    const send = transports.send!;
    const restart = vi.spyOn(send, 'restartIce');
    await transports.restartIce(send);
    expect(request).toHaveBeenLastCalledWith('restartIce', { transportId: 'TR_1' });
    expect(restart).toHaveBeenCalledWith({ iceParameters: { usernameFragment: 'restarted-3', password: 'p', iceLite: true } });

    const recv = transports.recv!;
    const recvRestart = vi.spyOn(recv, 'restartIce');
    const release = hold('restartIce');
    const restarting = transports.restartIce(recv);
    transports.close('recv');
    release();
    await restarting;
    expect(request).toHaveBeenLastCalledWith('restartIce', { transportId: 'TR_2' });
    expect(recvRestart).not.toHaveBeenCalled();
  });

  it("makes transports with the join's TURN servers and policy, hands newer ones to those kept, and fresh ones with a restart", async () => {
    const { transports, giveOnRestart } = setup({ iceTransportPolicy: 'relay' });
    const makeSend = vi.spyOn(Device.prototype, 'createSendTransport');
    const makeRecv = vi.spyOn(Device.prototype, 'createRecvTransport');
    const turn = (username: string): IceServer => ({ urls: ['turn:turn.example:3478?transport=udp'], username, credential: `c-${username}` });
    const rtc = (username: string) => [{ urls: ['turn:turn.example:3478?transport=udp'], username, credential: `c-${username}` }];
    await transports.loadDevice(routerCapabilities());
    await transports.useIceServers([turn('100:PA_1')]);
    await transports.ensure(new Set(), both);
    expect(makeSend.mock.calls[0]![0]).toMatchObject({ iceServers: rtc('100:PA_1'), iceTransportPolicy: 'relay' });
    expect(makeRecv.mock.calls[0]![0]).toMatchObject({ iceServers: rtc('100:PA_1'), iceTransportPolicy: 'relay' });
    makeSend.mockRestore();
    makeRecv.mockRestore();

    // A resume's credentials go to the transports it keeps.
    const [send, recv] = [transports.send!, transports.recv!];
    const sendUpdates = vi.spyOn(send, 'updateIceServers');
    const recvUpdates = vi.spyOn(recv, 'updateIceServers');
    await transports.useIceServers([turn('200:PA_1')]);
    expect(sendUpdates).toHaveBeenLastCalledWith({ iceServers: rtc('200:PA_1') });
    expect(recvUpdates).toHaveBeenLastCalledWith({ iceServers: rtc('200:PA_1') });

    // A restart's go to the restarted transport before its ICE restarts; none given, none changed.
    await transports.restartIce(send);
    expect(sendUpdates).toHaveBeenCalledTimes(1);
    giveOnRestart([turn('300:PA_1')]);
    const restart = vi.spyOn(send, 'restartIce');
    await transports.restartIce(send);
    expect(sendUpdates).toHaveBeenLastCalledWith({ iceServers: rtc('300:PA_1') });
    expect(sendUpdates.mock.invocationCallOrder.at(-1)!).toBeLessThan(restart.mock.invocationCallOrder.at(-1)!);
  });

  it('restarts ICE by itself when a transport fails, but not while signaling reconnects or once it is closed', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { transports, signaling, asked } = setup();
    await transports.loadDevice(routerCapabilities());
    await transports.ensure(new Set(), both);
    const connectionState = (direction: Direction, state: types.ConnectionState) => (transports[direction]!.handler as unknown as FakeHandler).setConnectionState(state);
    const restarts = () => asked().filter((m) => m === 'restartIce').length;

    connectionState('send', 'failed');
    await vi.advanceTimersByTimeAsync(0);
    expect(restarts()).toBe(1);
    connectionState('send', 'connected');

    // Signaling's restore restarts ICE itself.
    signaling.state = 'reconnecting';
    connectionState('recv', 'failed');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(restarts()).toBe(1);

    signaling.state = 'connected';
    connectionState('recv', 'connected');
    connectionState('recv', 'disconnected');
    transports.close('recv');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(restarts()).toBe(1);
  });

  it('closes each transport once, however often it is told to', async () => {
    const { transports, closed } = setup();
    await transports.loadDevice(routerCapabilities());
    await transports.ensure(new Set(), both);
    const [send, recv] = [transports.send!, transports.recv!];
    const closeSend = vi.spyOn(send, 'close');
    transports.close('send');
    transports.close('send');
    expect(closeSend).toHaveBeenCalledTimes(1);
    expect(closed).toEqual(['send']);
    transports.closeAll();
    transports.closeAll();
    expect(recv.closed).toBe(true);
    expect(closed).toEqual(['send', 'recv']);
    expect(await transports.getStats()).toEqual({ send: undefined, recv: undefined });
  });
});
