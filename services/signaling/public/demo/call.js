// What the demo pages share around a call: the token from the URL hash and auto-join, join and
// leave, the connection state, remote audio, publish toggles, the timer, and window.room for
// tests. Each page adds how it lays out video, and which panels it binds, once joined.

import { bindCameraFlip, bindPanels, bindToggles } from './controls.js';
import { fillIcons } from './labels.js';
import { playRemoteAudio } from './media.js';
import { bindText, hideError, setState, showError } from './status.js';

function startTimer() {
  const started = Date.now();
  const tick = () => {
    const s = Math.floor((Date.now() - started) / 1000);
    bindText('timer', `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`);
  };
  tick();
  return setInterval(tick, 1000);
}

/**
 * Wires a page. `options.publish()` says what to publish once joined, `options.onJoined(room)`
 * sets up the page's own rendering, `options.onLeft()` clears it. Returns `join(token)`, for a
 * page that gets its room's token otherwise than from the form (the desk gives it): resolves with
 * the room, or undefined when joining failed (the error is shown).
 */
export function start(options) {
  fillIcons();
  const form = document.getElementById('join-form');
  const input = document.getElementById('token');
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  if (params.get('token')) input.value = params.get('token');
  document.querySelectorAll('#error .close').forEach((b) => (b.onclick = hideError));
  setState('idle');
  let joining = false;

  async function join(given) {
    const token = (given ?? input.value).trim();
    if (!token || joining) return undefined;
    joining = true;
    hideError();
    setState('connecting');
    let room;
    try {
      // Gateway: the SDK bundle (/sdk.js), loaded before the page's modules.
      // relay=1: media through the TURN servers only, as from a network that lets nothing else out.
      const iceTransportPolicy = params.get('relay') === '1' ? 'relay' : 'all';
      room = await Gateway.connect({ url: location.origin, token, iceTransportPolicy });
    } catch (error) {
      joining = false;
      setState('disconnected');
      showError(error);
      return undefined;
    }
    window.room = room;
    const timer = startTimer();
    bindText('room', room.name);
    room.on('reconnecting', () => setState('reconnecting'));
    room.on('reconnected', () => setState('connected'));
    room.on('disconnected', (info) => {
      joining = false;
      clearInterval(timer);
      setState('disconnected');
      if (info.reason !== 'left') showError({ code: info.reason, message: `the call was disconnected${info.error ? ` (${info.error.message})` : ''}` });
      if (options.onLeft) options.onLeft();
    });
    document.getElementById('leave').onclick = () => room.leave();
    playRemoteAudio(room);
    bindToggles(room);
    bindCameraFlip(room);
    bindPanels(room);
    options.onJoined(room);
    setState('connected');
    const wanted = options.publish ? options.publish(room) : {};
    for (const source of Object.keys(wanted)) if (!room.grants.sources.includes(source)) delete wanted[source];
    if (Object.keys(wanted).length) await room.publish(wanted).catch(showError);
    return room;
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    join();
  });
  if (params.get('autojoin') === '1') join();
  return { join };
}
