/** What the SDK does about the page it runs in: leaving when it goes, sparing video while hidden. */

type EventTarget = { addEventListener?: typeof addEventListener; removeEventListener?: typeof removeEventListener };

/**
 * Calls `leave` when the page goes away for good (closed, reloaded, navigated from; not when it
 * enters the back-forward cache), so the others see the end user leave at once rather than after
 * the server's grace for a dropped connection. Returns the function that stops listening.
 */
export function leaveOnPageHide(leave: () => Promise<void>): () => void {
  const target = globalThis as EventTarget;
  if (!target.addEventListener || !target.removeEventListener) return () => undefined;
  const listener = (event: Event) => {
    if (!(event as PageTransitionEvent).persisted) void leave().catch(() => undefined);
  };
  target.addEventListener('pagehide', listener);
  return () => target.removeEventListener!('pagehide', listener);
}

/** Calls `changed(hidden)` whenever the page is hidden (another tab, the app in the background) or shown again. */
export function watchVisibility(changed: (hidden: boolean) => void): () => void {
  const doc = (globalThis as { document?: Document & EventTarget }).document;
  if (!doc?.addEventListener || !doc.removeEventListener) return () => undefined;
  const listener = () => changed(doc.visibilityState === 'hidden');
  doc.addEventListener('visibilitychange', listener);
  if (doc.visibilityState === 'hidden') changed(true);
  return () => doc.removeEventListener!('visibilitychange', listener);
}
