import { displayedHeight } from './adaptive.js';

/** What the elements showing one received video make of it. */
export interface ViewState {
  /** Someone can see it: the page is shown (or it plays picture-in-picture) and an element is in view with a size. */
  visible: boolean;
  /** The tallest picture on screen, in device pixels (0 when not visible). */
  heightPx: number;
}

/** What watching needs of the browser; tests give their own. */
export interface ViewEnvironment {
  ResizeObserver?: typeof ResizeObserver;
  IntersectionObserver?: typeof IntersectionObserver;
  document?: Pick<Document, 'visibilityState' | 'pictureInPictureElement' | 'addEventListener' | 'removeEventListener'>;
  devicePixelRatio(): number;
  setTimeout(run: () => void, ms: number): unknown;
  clearTimeout(timer: unknown): void;
}

export function browserViewEnvironment(): ViewEnvironment {
  const g = globalThis as Partial<typeof globalThis>;
  return {
    ResizeObserver: g.ResizeObserver,
    IntersectionObserver: g.IntersectionObserver,
    document: g.document,
    devicePixelRatio: () => g.devicePixelRatio ?? 1,
    setTimeout: (run, ms) => setTimeout(run, ms),
    clearTimeout: (timer) => clearTimeout(timer as ReturnType<typeof setTimeout>),
  };
}

/** A size change is told once it has held this long (a window being dragged larger asks once, not sixty times a second). */
export const RESIZE_DEBOUNCE_MS = 250;
/** A video is paused only once nobody has seen it for this long (scrolling past, switching tabs and back). */
export const HIDE_DELAY_MS = 1_000;

/** 16:9 until the first frame says otherwise. */
const DEFAULT_ASPECT_RATIO = 16 / 9;

interface Watched {
  inView: boolean;
  width: number;
  height: number;
}

/**
 * Watches the elements one received video is attached to (adaptive stream): their size
 * (ResizeObserver), whether they are in the viewport (IntersectionObserver) and whether the page
 * is shown, and tells `changed` what that comes to. Becoming visible is told at once (the
 * picture must come back now); a new size after RESIZE_DEBOUNCE_MS of quiet; becoming hidden
 * after HIDE_DELAY_MS. The same state is never told twice.
 */
export class VideoViews {
  private readonly elements = new Map<HTMLMediaElement, Watched>();
  private readonly resize: ResizeObserver | undefined;
  private readonly intersection: IntersectionObserver | undefined;
  private readonly onVisibility = () => this.update();
  private told: ViewState | undefined;
  private timer: unknown;
  private closed = false;

  constructor(
    private readonly changed: (state: ViewState) => void,
    private readonly env: ViewEnvironment = browserViewEnvironment(),
  ) {
    this.resize = env.ResizeObserver
      ? new env.ResizeObserver((entries) => {
          for (const entry of entries) {
            const watched = this.elements.get(entry.target as HTMLMediaElement);
            if (!watched) continue;
            watched.width = entry.contentRect.width;
            watched.height = entry.contentRect.height;
          }
          this.update();
        })
      : undefined;
    this.intersection = env.IntersectionObserver
      ? new env.IntersectionObserver((entries) => {
          for (const entry of entries) {
            const watched = this.elements.get(entry.target as HTMLMediaElement);
            if (watched) watched.inView = entry.isIntersecting;
          }
          this.update();
        })
      : undefined;
    env.document?.addEventListener('visibilitychange', this.onVisibility);
  }

  get size(): number {
    return this.elements.size;
  }

  has(element: HTMLMediaElement): boolean {
    return this.elements.has(element);
  }

  /** Watches one more element; when it shows the video, that is told at once (a video just attached is sized now, not in a moment). */
  add(element: HTMLMediaElement): void {
    if (this.closed || this.elements.has(element)) return;
    // In view until the observer, which reports every new target right away, says otherwise.
    this.elements.set(element, { inView: true, width: element.clientWidth, height: element.clientHeight });
    this.resize?.observe(element);
    this.intersection?.observe(element);
    this.update(true);
  }

  remove(element: HTMLMediaElement): void {
    if (!this.elements.delete(element)) return;
    this.resize?.unobserve(element);
    this.intersection?.unobserve(element);
    this.update();
  }

  close(): void {
    this.closed = true;
    this.env.clearTimeout(this.timer);
    this.resize?.disconnect();
    this.intersection?.disconnect();
    this.env.document?.removeEventListener('visibilitychange', this.onVisibility);
    this.elements.clear();
  }

  /** What the elements come to now. */
  measure(): ViewState {
    const doc = this.env.document;
    const pageShown = doc?.visibilityState !== 'hidden';
    const dpr = this.env.devicePixelRatio();
    let visible = false;
    let heightPx = 0;
    for (const [element, watched] of this.elements) {
      // A picture-in-picture window shows over other tabs and apps, wherever its element is.
      const pictureInPicture = doc?.pictureInPictureElement === element;
      if (!pictureInPicture && (!pageShown || !watched.inView || watched.width <= 0 || watched.height <= 0)) continue;
      visible = true;
      const video = element as Partial<HTMLVideoElement>;
      const aspect = video.videoWidth && video.videoHeight ? video.videoWidth / video.videoHeight : DEFAULT_ASPECT_RATIO;
      // In picture-in-picture the window's size is the browser's; take the element's own.
      heightPx = Math.max(heightPx, displayedHeight(watched.width || element.clientWidth, watched.height || element.clientHeight, aspect, dpr));
    }
    return { visible, heightPx: visible ? Math.round(heightPx) : 0 };
  }

  private update(now = false): void {
    if (this.closed) return;
    const state = this.measure();
    const told = this.told;
    this.env.clearTimeout(this.timer);
    this.timer = undefined;
    if (told && told.visible === state.visible && told.heightPx === state.heightPx) return;
    // Shown (again), or just attached: at once. An element attached before it is laid out has no
    // size yet; it is given the hide delay to get one, like any hidden one.
    if (state.visible && (now || !told || !told.visible)) {
      this.tell(state);
      return;
    }
    this.timer = this.env.setTimeout(
      () => {
        this.timer = undefined;
        this.tell(this.measure());
      },
      state.visible ? RESIZE_DEBOUNCE_MS : HIDE_DELAY_MS,
    );
  }

  private tell(state: ViewState): void {
    if (this.closed) return;
    const told = this.told;
    if (told && told.visible === state.visible && told.heightPx === state.heightPx) return;
    this.told = state;
    this.changed(state);
  }
}
