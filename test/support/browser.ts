import { chromium, type Browser, type Page } from 'playwright-core';
import { waitFor } from '@gateway/testing';
import { scrapeMetrics, sumOf } from './metrics.js';

/**
 * Debian's Chromium, headless, with fake camera, microphone and screen capture, and without
 * the background networking that a machine without internet would refuse. `executablePath`
 * replaces Chromium's (a wrapper that starts it elsewhere, as in a network namespace).
 */
export function launchChromium(extraArgs: string[] = [], options: { executablePath?: string } = {}): Promise<Browser> {
  return chromium.launch({
    executablePath: options.executablePath ?? process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      '--auto-accept-this-tab-capture',
      '--auto-select-desktop-capture-source=Entire screen',
      // Keep background pages rendering and decoding at full rate.
      '--disable-background-timer-throttling',
      '--disable-renderer-backgrounding',
      ...extraArgs,
      ...(process.env.CHROMIUM_EXTRA_ARGS ? process.env.CHROMIUM_EXTRA_ARGS.split(' ') : []),
      '--disable-backgrounding-occluded-windows',
    ],
  });
}

/**
 * Loads a call page (its token in the hash, without autojoin) and returns what joins it, by its
 * Join button, once loaded. A test whose second participant must join only after the first
 * publishes lets the second page load meanwhile instead of after: the join is the same.
 */
export function loadToJoin(page: Page, url: string): () => Promise<void> {
  const loaded = page.goto(url).then(() => page.waitForFunction(() => document.body.dataset.state === 'idle', undefined, { timeout: 30_000 }));
  loaded.catch(() => undefined); // awaited by the join; not unhandled should the test fail before it
  return async () => {
    await loaded;
    await page.locator('#join-form button').click();
  };
}

/** Summary of what a page's room receives, from getStats() of each consumer. */
export interface ReceiveSummary {
  participantId: string;
  source: string;
  kind: string;
  framesDecoded: number;
  packetsReceived: number;
  packetsLost: number;
  /** The sound played of an audio track so far (inbound-rtp totalAudioEnergy): grows only while it is heard. */
  audioEnergy: number;
}

/** Runs in the page: per remote track, inbound-rtp figures. */
export const receiveSummaryScript = async (): Promise<ReceiveSummary[]> => {
  const room = (window as unknown as { room?: { getReceiveStats(): Promise<Array<{ participantId: string; source: string; kind: string; stats: RTCStatsReport }>> } }).room;
  if (!room) return [];
  const out: ReceiveSummary[] = [];
  for (const { participantId, source, kind, stats } of await room.getReceiveStats()) {
    let framesDecoded = 0;
    let packetsReceived = 0;
    let packetsLost = 0;
    let audioEnergy = 0;
    stats.forEach((s: { type: string; framesDecoded?: number; packetsReceived?: number; packetsLost?: number; totalAudioEnergy?: number }) => {
      if (s.type !== 'inbound-rtp') return;
      framesDecoded += s.framesDecoded ?? 0;
      packetsReceived += s.packetsReceived ?? 0;
      packetsLost += s.packetsLost ?? 0;
      audioEnergy += s.totalAudioEnergy ?? 0;
    });
    out.push({ participantId, source, kind, framesDecoded, packetsReceived, packetsLost, audioEnergy });
  }
  return out;
};

/**
 * The pages of a test's call, ended between tests: each leaves its room first (a page merely
 * closed would wait out the resume window), then the SFU must have no participant left, so the
 * next test starts from an empty node.
 */
export class CallPages {
  private readonly pages: Page[] = [];

  constructor(
    private readonly browser: () => Browser,
    private readonly sfuOpsPort: () => number,
  ) {}

  /** A new page, in the shared browser or in the browser or context given. */
  async open(on: Pick<Browser, 'newPage'> = this.browser()): Promise<Page> {
    const page = await on.newPage();
    this.pages.push(page);
    return page;
  }

  async endAll(): Promise<void> {
    for (const page of this.pages.splice(0)) {
      await page.evaluate(() => (window as unknown as { room?: { leave(): Promise<void> } }).room?.leave()).catch(() => undefined);
      await page.close();
    }
    await waitFor(async () => sumOf(await scrapeMetrics(this.sfuOpsPort()), 'gateway_sfu_participants') === 0, 20_000, 'no participant left on the SFU');
  }
}
