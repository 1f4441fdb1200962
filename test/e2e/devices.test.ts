import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { NatsServer, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { CallPages, launchChromium, receiveSummaryScript } from '../support/browser.js';
import { demoToken } from '../support/tokens.js';

/**
 * Devices in Chromium with three fake cameras, three microphones and three audio outputs: the end
 * user flips the camera mid-call (the page's button) and the agent's video goes on from the same
 * producer; the microphone and the agent's audio output switch too; device failures come with
 * their own codes (no such camera, permission refused by the user), apart from grant refusals.
 */
describe('devices in Chromium', () => {
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig: Awaited<ReturnType<typeof startSignalingProcess>>;
  let browser: Browser;
  const pages = new CallPages(
    () => browser,
    () => sfu.opsPort,
  );
  const newPage = (on?: Browser) => pages.open(on);

  beforeAll(async () => {
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    sig = await startSignalingProcess({ natsUrl: nats.url });
    // Chromium's second fake camera is a depth camera whose frames no encoder takes; the first
    // and the third are ordinary cameras.
    browser = await launchChromium(['--use-fake-device-for-media-stream=device-count=3']);
  }, 90_000);

  afterEach(() => pages.endAll());

  afterAll(async () => {
    await browser?.close();
    await sig?.stop();
    await sfu?.stop();
    await nats?.stop();
  });

  const cameraFrames = async (page: Page) => (await page.evaluate(receiveSummaryScript)).find((r) => r.source === 'camera')?.framesDecoded ?? 0;

  it('flips the camera mid-call without a new track at the agent, switches the microphone and the audio output, and tells device failures apart', async () => {
    const room = `devices-${Date.now()}`;
    const endUser = await newPage();
    await endUser.goto(`${sig.url}/end-user#token=${await demoToken({ room, identity: 'customer-1', role: 'end_user' })}&autojoin=1`);
    await endUser.waitForFunction(() => ['camera', 'microphone'].every((s) => (window as any).room?.localPublications.get(s)?.trackId));
    const endUserId = await endUser.evaluate(() => (window as any).room.localParticipant.id as string);
    const before = await endUser.evaluate(async () => {
      const w = window as any;
      w.firstCamera = w.room.localTracks.get('camera');
      const cameras = await w.Gateway.listDevices('videoinput');
      return {
        cameras: cameras.map((d: { deviceId: string; label: string }) => d.deviceId),
        labels: cameras.map((d: { label: string }) => d.label),
        active: w.room.activeDevice('videoinput') as string,
        producers: { camera: w.room.localPublications.get('camera').trackId as string, microphone: w.room.localPublications.get('microphone').trackId as string },
      };
    });
    expect(before.cameras).toHaveLength(3);
    expect(before.active).toBe(before.cameras[0]);
    // Labelled once the user allowed a capture.
    expect(before.labels.every((l: string) => l.length > 0)).toBe(true);
    expect(before.cameras).toContain(before.active);

    const agent = await newPage();
    await agent.goto(`${sig.url}/agent#token=${await demoToken({ room, identity: 'agent-1', role: 'agent' })}&autojoin=1`);
    await agent.waitForFunction((id) => (window as any).room?.participants.get(id)?.tracks.size === 2, endUserId);
    await agent.evaluate((id) => {
      const w = window as any;
      w.firstCamera = w.room.participants.get(id).tracks.get('camera');
      w.events = [];
      for (const name of ['track', 'trackEnded']) w.room.on(name, (e: { source: string }) => w.events.push(`${name}:${e.source}`));
    }, endUserId);
    await waitFor(async () => (await cameraFrames(agent)) > 10, 30_000, 'camera frames at the agent');

    // The third camera, chosen by id: the producer stays, the old capture stops, the preview follows.
    await endUser.evaluate((id) => (window as any).room.switchCamera({ deviceId: id }), before.cameras[2]);
    const after = await endUser.evaluate(() => {
      const w = window as any;
      const camera = w.room.localTracks.get('camera');
      return {
        active: w.room.activeDevice('videoinput') as string,
        producer: w.room.localPublications.get('camera').trackId as string,
        oldTrack: w.firstCamera.readyState as string,
        newTrack: camera.readyState as string,
        preview: ((document.querySelector('#local video') as HTMLVideoElement | null)?.srcObject as MediaStream | null)?.getVideoTracks()[0] === camera,
      };
    });
    expect(after).toEqual({ active: before.cameras[2], producer: before.producers.camera, oldTrack: 'ended', newTrack: 'live', preview: true });
    // The agent's video goes on: the same remote track, frames still decoded, no track ended or added.
    const framesAtSwitch = await cameraFrames(agent);
    await waitFor(async () => (await cameraFrames(agent)) > framesAtSwitch + 20, 20_000, 'camera frames after the switch');
    // The page's flip button (shown: there are several cameras) turns to the next one, the first again.
    await endUser.waitForSelector('[data-flip-camera]:not([hidden]):not([disabled])');
    await endUser.click('[data-flip-camera]');
    await endUser.waitForFunction((first) => (window as any).room.activeDevice('videoinput') === first, before.cameras[0]);
    const framesAtFlip = await cameraFrames(agent);
    await waitFor(async () => (await cameraFrames(agent)) > framesAtFlip + 20, 20_000, 'camera frames after the flip');
    expect(await endUser.evaluate(() => (window as any).room.localPublications.get('camera').trackId)).toBe(before.producers.camera);
    expect(await agent.evaluate((id) => (window as any).room.participants.get(id).tracks.get('camera') === (window as any).firstCamera, endUserId)).toBe(true);
    expect(await agent.evaluate(() => (window as any).events)).toEqual([]);

    // The microphone from another device: same producer.
    const microphone = await endUser.evaluate(async () => {
      const w = window as any;
      const inputs = (await w.Gateway.listDevices('audioinput')).map((d: { deviceId: string }) => d.deviceId).filter((id: string) => id !== 'default');
      const target = inputs.find((id: string) => id !== w.room.activeDevice('audioinput'));
      await w.room.switchMicrophone({ deviceId: target });
      return { target, active: w.room.activeDevice('audioinput'), producer: w.room.localPublications.get('microphone').trackId };
    });
    expect(microphone).toEqual({ target: expect.any(String), active: microphone.target, producer: before.producers.microphone });

    // The agent's headset: every remote audio element plays on the chosen output, later ones too.
    const output = await agent.evaluate(async () => {
      const w = window as any;
      const outputs = (await w.Gateway.listDevices('audiooutput')).map((d: { deviceId: string }) => d.deviceId).filter((id: string) => id !== 'default');
      await w.room.setAudioOutput(outputs[0]);
      const sinks = [...document.querySelectorAll('#audio-sink audio')].map((el) => (el as HTMLMediaElement & { sinkId: string }).sinkId);
      return { chosen: outputs[0] as string, active: w.room.activeDevice('audiooutput') as string, sinks };
    });
    expect(output.sinks.length).toBeGreaterThan(0);
    expect(output).toEqual({ chosen: output.chosen, active: output.chosen, sinks: output.sinks.map(() => output.chosen) });

    // Failures name the device problem: no rear camera on this machine, no such device. The
    // camera in use stays published, on the same device.
    const failures = await endUser.evaluate(async () => {
      const w = window as any;
      const codeOf = (p: Promise<unknown>) =>
        p.then(
          () => 'resolved',
          (e: { code: string }) => e.code,
        );
      return {
        rear: await codeOf(w.room.switchCamera({ facingMode: 'environment' })),
        unknown: await codeOf(w.room.switchCamera({ deviceId: 'no-such-camera' })),
        output: await codeOf(w.room.setAudioOutput('no-such-output')),
        stillLive: w.room.localTracks.get('camera').readyState,
        active: w.room.activeDevice('videoinput'),
      };
    });
    expect(failures).toEqual({ rear: 'DEVICE_NOT_FOUND', unknown: 'DEVICE_NOT_FOUND', output: 'DEVICE_NOT_FOUND', stillLive: 'live', active: before.cameras[0] });
  }, 120_000);

  it('tells a capture the user refused (DEVICE_PERMISSION_DENIED) from one the token does not allow (PERMISSION_DENIED)', async () => {
    const refusing = await launchChromium(['--use-fake-ui-for-media-stream=deny']);
    try {
      const room = `refused-${Date.now()}`;
      const page = await newPage(refusing);
      await page.goto(`${sig.url}/end-user#token=${await demoToken({ room, identity: 'customer-2', role: 'end_user' })}`);
      const listener = await demoToken({ room, identity: 'listener', role: 'end_user', sources: ['camera'] });
      const codes = await page.evaluate(
        async ([endUserToken, listenerToken]) => {
          const w = window as any;
          const codeOf = (p: Promise<unknown>) =>
            p.then(
              () => 'resolved',
              (e: { code: string }) => e.code,
            );
          const endUser = await w.Gateway.connect({ url: location.origin, token: endUserToken });
          const refused = await codeOf(endUser.setMicrophoneEnabled(true));
          await endUser.leave();
          const listener = await w.Gateway.connect({ url: location.origin, token: listenerToken });
          const notGranted = await codeOf(listener.setMicrophoneEnabled(true));
          await listener.leave();
          return { refused, notGranted };
        },
        [await demoToken({ room, identity: 'customer-3', role: 'end_user' }), listener] as const,
      );
      expect(codes).toEqual({ refused: 'DEVICE_PERMISSION_DENIED', notGranted: 'PERMISSION_DENIED' });
    } finally {
      await pages.endAll();
      await refusing.close();
    }
  }, 60_000);
});
