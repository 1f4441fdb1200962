// Shared logic of the demo pages: token from the URL hash, join/leave, connection state, and
// the room object exposed as window.room. Each page supplies how it renders tracks.
(function () {
  'use strict';

  function hashParams() {
    return new URLSearchParams(location.hash.replace(/^#/, ''));
  }

  function setState(state) {
    document.body.dataset.state = state;
    document.querySelectorAll('[data-bind="state"]').forEach((el) => (el.textContent = state));
  }

  function mediaElement(track, attrs) {
    const el = document.createElement(track.kind === 'video' ? 'video' : 'audio');
    el.autoplay = true;
    el.playsInline = true;
    if (track.kind === 'video') el.muted = true;
    el.srcObject = new MediaStream([track]);
    for (const [k, v] of Object.entries(attrs || {})) el.dataset[k] = v;
    return el;
  }

  /**
   * Wires a page: `options.onJoined(room)` after joining, `options.publish` what to publish
   * at join, `options.onLeft()` when the room is gone.
   */
  function setUp(options) {
    const form = document.getElementById('join-form');
    const tokenInput = document.getElementById('token');
    const params = hashParams();
    if (params.get('token')) tokenInput.value = params.get('token');
    setState('idle');

    async function join() {
      const token = tokenInput.value.trim();
      if (!token) return;
      setState('connecting');
      try {
        const room = await Gateway.connect({ url: location.origin, token });
        window.room = room;
        room.on('reconnecting', () => setState('reconnecting'));
        room.on('reconnected', () => setState('connected'));
        room.on('disconnected', () => {
          setState('disconnected');
          options.onLeft && options.onLeft();
        });
        options.onJoined(room);
        setState('connected');
        if (options.publish) await room.publish(options.publish());
      } catch (error) {
        setState('disconnected');
        showError(error);
      }
    }

    form.addEventListener('submit', (e) => {
      e.preventDefault();
      join();
    });
    if (params.get('autojoin') === '1') join();
  }

  function showError(error) {
    const el = document.getElementById('error');
    if (!el) return;
    el.textContent = (error && (error.code ? error.code + ': ' : '') + error.message) || String(error);
    el.hidden = false;
  }

  window.GatewayDemo = { setUp, mediaElement, setState, showError };
})();
