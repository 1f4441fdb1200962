import type { ViewEnvironment } from '../media/VideoViews.js';

/** An element as view watching reads it: its laid-out size and its video's size. */
export interface FakeElement {
  clientWidth: number;
  clientHeight: number;
  videoWidth: number;
  videoHeight: number;
  srcObject: unknown;
  autoplay: boolean;
  muted: boolean;
  playsInline: boolean;
}

export function fakeElement(width: number, height: number): FakeElement & HTMLMediaElement {
  return { clientWidth: width, clientHeight: height, videoWidth: 0, videoHeight: 0, srcObject: null, autoplay: false, muted: false, playsInline: false } as unknown as FakeElement & HTMLMediaElement;
}

type Callback<E> = (entries: E[]) => void;

/**
 * The browser's side of view watching, driven by the test: `resize` and `scroll` call the
 * observers as the browser would, `setPageHidden` fires visibilitychange. Timers are vitest's
 * (use vi.useFakeTimers()).
 */
export function fakeViewEnvironment() {
  const resizeCallbacks: Array<Callback<ResizeObserverEntry>> = [];
  const intersectionCallbacks: Array<Callback<IntersectionObserverEntry>> = [];
  const listeners = new Set<() => void>();
  const doc = { visibilityState: 'visible' as DocumentVisibilityState, pictureInPictureElement: null as Element | null };
  class FakeResizeObserver {
    constructor(callback: Callback<ResizeObserverEntry>) {
      resizeCallbacks.push(callback);
    }
    observe(): void {}
    unobserve(): void {}
    disconnect(): void {}
  }
  class FakeIntersectionObserver {
    constructor(callback: Callback<IntersectionObserverEntry>) {
      intersectionCallbacks.push(callback);
    }
    observe(): void {}
    unobserve(): void {}
    disconnect(): void {}
  }
  const env: ViewEnvironment = {
    ResizeObserver: FakeResizeObserver as unknown as typeof ResizeObserver,
    IntersectionObserver: FakeIntersectionObserver as unknown as typeof IntersectionObserver,
    document: {
      get visibilityState() {
        return doc.visibilityState;
      },
      get pictureInPictureElement() {
        return doc.pictureInPictureElement;
      },
      addEventListener: (_: string, listener: () => void) => void listeners.add(listener),
      removeEventListener: (_: string, listener: () => void) => void listeners.delete(listener),
    } as unknown as ViewEnvironment['document'],
    devicePixelRatio: () => 1,
    setTimeout: (run, ms) => setTimeout(run, ms),
    clearTimeout: (timer) => clearTimeout(timer as ReturnType<typeof setTimeout>),
  };
  return {
    env,
    resize(element: FakeElement, width: number, height: number): void {
      element.clientWidth = width;
      element.clientHeight = height;
      for (const callback of resizeCallbacks) callback([{ target: element, contentRect: { width, height } } as unknown as ResizeObserverEntry]);
    },
    scroll(element: FakeElement, inView: boolean): void {
      for (const callback of intersectionCallbacks) callback([{ target: element, isIntersecting: inView } as unknown as IntersectionObserverEntry]);
    },
    setPageHidden(hidden: boolean): void {
      doc.visibilityState = hidden ? 'hidden' : 'visible';
      for (const listener of listeners) listener();
    },
    setPictureInPicture(element: FakeElement | null): void {
      doc.pictureInPictureElement = element as unknown as Element | null;
    },
  };
}
