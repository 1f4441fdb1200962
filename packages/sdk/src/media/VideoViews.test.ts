import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { fakeElement, fakeViewEnvironment } from '../testing/fakeViews.js';
import { HIDE_DELAY_MS, RESIZE_DEBOUNCE_MS, VideoViews, type ViewState } from './VideoViews.js';

describe('VideoViews', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function watch() {
    const browser = fakeViewEnvironment();
    const told: ViewState[] = [];
    const views = new VideoViews((state) => told.push(state), browser.env);
    return { browser, told, views };
  }

  it('tells the size of an element at once when attached, then each new size once it has held', () => {
    const { browser, told, views } = watch();
    const element = fakeElement(320, 180);
    views.add(element);
    expect(told).toEqual([{ visible: true, heightPx: 180 }]);
    // Dragged larger: many sizes, one told, once the window stops moving.
    for (let height = 200; height <= 720; height += 40) {
      browser.resize(element, (height * 16) / 9, height);
      vi.advanceTimersByTime(RESIZE_DEBOUNCE_MS / 5);
    }
    expect(told).toHaveLength(1);
    vi.advanceTimersByTime(RESIZE_DEBOUNCE_MS);
    expect(told).toEqual([
      { visible: true, heightPx: 180 },
      { visible: true, heightPx: 720 },
    ]);
    // A size that comes and goes back within the debounce is never told.
    browser.resize(element, 100, 50);
    vi.advanceTimersByTime(RESIZE_DEBOUNCE_MS / 2);
    browser.resize(element, 1280, 720);
    vi.advanceTimersByTime(RESIZE_DEBOUNCE_MS * 4);
    expect(told).toHaveLength(2);
  });

  it('tells hidden after a delay (out of view, no size, page hidden, detached), shown again at once', () => {
    const { browser, told, views } = watch();
    const element = fakeElement(320, 180);
    views.add(element);
    const last = () => told.at(-1);
    for (const hide of [() => browser.scroll(element, false), () => browser.resize(element, 0, 0), () => browser.setPageHidden(true)]) {
      hide();
      vi.advanceTimersByTime(HIDE_DELAY_MS - 1);
      expect(last()).toEqual({ visible: true, heightPx: 180 });
      vi.advanceTimersByTime(1);
      expect(last()).toEqual({ visible: false, heightPx: 0 });
      browser.scroll(element, true);
      browser.resize(element, 320, 180);
      browser.setPageHidden(false);
      expect(last()).toEqual({ visible: true, heightPx: 180 });
    }
    // Scrolled away and back within the delay: nothing told.
    const count = told.length;
    browser.scroll(element, false);
    vi.advanceTimersByTime(HIDE_DELAY_MS / 2);
    browser.scroll(element, true);
    vi.advanceTimersByTime(HIDE_DELAY_MS * 2);
    expect(told).toHaveLength(count);
    views.remove(element);
    vi.advanceTimersByTime(HIDE_DELAY_MS);
    expect(last()).toEqual({ visible: false, heightPx: 0 });
  });

  it('keeps a picture-in-picture video visible while the page is hidden, and takes the largest of several elements', () => {
    const { browser, told, views } = watch();
    const small = fakeElement(160, 90);
    const large = fakeElement(640, 360);
    views.add(small);
    views.add(large);
    expect(told.at(-1)).toEqual({ visible: true, heightPx: 360 });
    browser.setPictureInPicture(small);
    browser.setPageHidden(true);
    vi.advanceTimersByTime(HIDE_DELAY_MS);
    expect(told.at(-1)).toEqual({ visible: true, heightPx: 90 });
  });
});
