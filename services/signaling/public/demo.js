// What the demo pages share: the token from the URL hash and auto-join, join and leave, the
// connection state on <body data-state>, publish toggles, the local preview, remote audio, and
// window.room for tests. Each page adds only how it lays out remote video.
(function () {
  'use strict';

  const ICONS = {
    microphone: '<path d="M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3Z"/><path d="M19 11a7 7 0 0 1-14 0M12 18v3"/>',
    camera: '<rect x="3" y="6" width="13" height="12" rx="2"/><path d="m16 10 5-3v10l-5-3"/>',
    screen: '<rect x="3" y="4" width="18" height="12" rx="2"/><path d="M8 20h8M12 16v4"/>',
    leave: '<path d="M16 17l5-5-5-5M21 12H9M12 19H5a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2h7"/>',
  };

  function icon(name) {
    return `<svg class="icon" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">${ICONS[name] || ''}</svg>`;
  }

  const ROLE_LABELS = { agent: 'Agent', end_user: 'Customer', observer: 'Observer' };
  const SOURCE_LABELS = { camera: 'Camera', microphone: 'Microphone', screen: 'Screen share', screen_audio: 'Screen audio' };

  function roleLabel(role) {
    return ROLE_LABELS[role] || role;
  }

  function sourceLabel(source) {
    return SOURCE_LABELS[source] || source;
  }

  function initials(name) {
    const parts = String(name || '?').split(/[\s._@-]+/).filter(Boolean);
    return ((parts[0] || '?')[0] + (parts.length > 1 ? parts[parts.length - 1][0] : '')).toUpperCase();
  }

  function setState(state) {
    document.body.dataset.state = state;
    const labels = { idle: 'Not connected', connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…', disconnected: 'Disconnected' };
    document.querySelectorAll('[data-bind="state"]').forEach((el) => (el.textContent = labels[state] || state));
  }

  function bindText(name, text) {
    document.querySelectorAll(`[data-bind="${name}"]`).forEach((el) => (el.textContent = text));
  }

  /** A <video> or <audio> playing one track; `data` becomes data-* attributes (test hooks). */
  function mediaElement(track, data) {
    const el = document.createElement(track.kind === 'video' ? 'video' : 'audio');
    el.autoplay = true;
    el.playsInline = true;
    // Video elements never play sound (audio has its own elements), which also lets them autoplay.
    if (track.kind === 'video') el.muted = true;
    el.srcObject = new MediaStream([track]);
    for (const [key, value] of Object.entries(data || {})) el.dataset[key] = value;
    return el;
  }

  function elementTrack(el) {
    return el && el.srcObject ? el.srcObject.getTracks()[0] : undefined;
  }

  function showError(error) {
    const box = document.getElementById('error');
    if (!box) return;
    const text = (error && error.code ? error.code + ': ' : '') + ((error && error.message) || String(error));
    box.querySelector('.text').textContent = text;
    box.hidden = false;
  }

  function hideError() {
    const box = document.getElementById('error');
    if (box) box.hidden = true;
  }

  /** Plays every remote audio track in a hidden container; offers a button if autoplay is blocked. */
  function playRemoteAudio(room) {
    let sink = document.getElementById('audio-sink');
    if (!sink) {
      sink = document.createElement('div');
      sink.id = 'audio-sink';
      sink.hidden = true;
      document.body.append(sink);
    }
    const unlock = document.getElementById('unlock-audio');
    const play = (el) =>
      el.play().catch(() => {
        if (unlock) unlock.hidden = false;
      });
    if (unlock) {
      unlock.onclick = () => {
        unlock.hidden = true;
        sink.querySelectorAll('audio').forEach(play);
      };
    }
    room.on('track', ({ participant, source, track }) => {
      if (track.kind !== 'audio') return;
      const el = mediaElement(track, { participant: participant.id, source });
      sink.append(el);
      play(el);
    });
    room.on('trackEnded', ({ track }) => {
      sink.querySelectorAll('audio').forEach((el) => elementTrack(el) === track && el.remove());
    });
    room.on('disconnected', () => sink.replaceChildren());
  }

  /** Buttons with data-toggle="camera|microphone|screen" publish and unpublish that source. */
  function bindToggles(room) {
    const buttons = [...document.querySelectorAll('[data-toggle]')];
    const refresh = () => {
      for (const button of buttons) {
        const source = button.dataset.toggle;
        const on = room.localTracks.has(source);
        button.setAttribute('aria-pressed', String(on));
        button.disabled = button.dataset.busy === '1' || !room.grants.sources.includes(source);
        const label = button.querySelector('.label');
        if (label && button.dataset.on && button.dataset.off) label.textContent = on ? button.dataset.on : button.dataset.off;
      }
    };
    for (const button of buttons) {
      button.onclick = async () => {
        const source = button.dataset.toggle;
        button.dataset.busy = '1';
        refresh();
        try {
          if (room.localTracks.has(source)) await room.unpublish(source);
          else await room.publish({ [source]: true });
        } catch (error) {
          // Cancelling the screen picker is not an error worth showing.
          if (!(source === 'screen' && error && error.code === 'PERMISSION_DENIED')) showError(error);
        }
        delete button.dataset.busy;
        refresh();
      };
    }
    room.on('localTrackPublished', refresh);
    room.on('localTrackUnpublished', refresh);
    room.on('disconnected', () => buttons.forEach((b) => b.setAttribute('aria-pressed', 'false')));
    refresh();
  }

  /** Shows the local camera in `container` (mirrored, as people expect to see themselves). */
  function bindLocalPreview(room, container) {
    const render = () => {
      const track = room.localTracks.get('camera');
      const current = container.querySelector('video');
      if (track && elementTrack(current) === track) return;
      if (current) current.remove();
      if (track) container.prepend(mediaElement(track, { local: '1', source: 'camera' }));
      container.classList.toggle('has-video', !!track);
    };
    room.on('localTrackPublished', render);
    room.on('localTrackUnpublished', render);
    room.on('disconnected', render);
    render();
  }

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
   * sets up the page's own rendering, `options.onLeft()` clears it.
   */
  function start(options) {
    const form = document.getElementById('join-form');
    const input = document.getElementById('token');
    const params = new URLSearchParams(location.hash.replace(/^#/, ''));
    if (params.get('token')) input.value = params.get('token');
    document.querySelectorAll('#error .close').forEach((b) => (b.onclick = hideError));
    setState('idle');
    let joining = false;

    async function join() {
      const token = input.value.trim();
      if (!token || joining) return;
      joining = true;
      hideError();
      setState('connecting');
      let room;
      try {
        room = await Gateway.connect({ url: location.origin, token });
      } catch (error) {
        joining = false;
        setState('disconnected');
        showError(error);
        return;
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
        if (info.reason !== 'left') showError({ code: info.reason, message: 'the call was disconnected' + (info.error ? ` (${info.error.message})` : '') });
        if (options.onLeft) options.onLeft();
      });
      document.getElementById('leave').onclick = () => room.leave();
      playRemoteAudio(room);
      bindToggles(room);
      options.onJoined(room);
      setState('connected');
      const wanted = options.publish ? options.publish(room) : {};
      for (const source of Object.keys(wanted)) if (!room.grants.sources.includes(source)) delete wanted[source];
      if (Object.keys(wanted).length) await room.publish(wanted).catch(showError);
    }

    form.addEventListener('submit', (event) => {
      event.preventDefault();
      join();
    });
    if (params.get('autojoin') === '1') join();
  }

  /**
   * The recording indicator every participant sees (the law in many places requires telling
   * people they are recorded), and for agents allowed to record, the controls: record / stop,
   * and pause for card numbers (PCI).
   */
  function bindRecording(room) {
    let pill = document.getElementById('recording');
    if (!pill) {
      pill = document.createElement('span');
      pill.id = 'recording';
      pill.className = 'pill recording';
      pill.hidden = true;
      document.querySelector('header.bar .spacer').after(pill);
    }
    const controls = document.querySelector('footer.controls');
    let record;
    let pause;
    if (room.grants.canRecord && controls && !document.getElementById('record')) {
      record = Object.assign(document.createElement('button'), { type: 'button', id: 'record' });
      pause = Object.assign(document.createElement('button'), { type: 'button', id: 'pause-recording', hidden: true });
      controls.insertBefore(record, document.getElementById('leave'));
      controls.insertBefore(pause, document.getElementById('leave'));
      record.addEventListener('click', () => {
        const running = room.recording && room.recording.state !== 'stopped';
        (running ? room.stopRecording() : room.startRecording()).catch(showError);
      });
      pause.addEventListener('click', () => {
        (room.recording && room.recording.state === 'paused' ? room.resumeRecording() : room.pauseRecording()).catch(showError);
      });
    }
    const render = () => {
      const state = room.recording ? room.recording.state : 'stopped';
      const running = state !== 'stopped';
      document.body.dataset.recording = state;
      pill.hidden = !running;
      pill.textContent = state === 'paused' ? 'Recording paused' : '● Recording';
      pill.classList.toggle('paused', state === 'paused');
      if (record) {
        record.textContent = running ? 'Stop recording' : 'Record';
        pause.hidden = !running;
        pause.textContent = state === 'paused' ? 'Resume recording' : 'Pause (PCI)';
      }
    };
    room.on('recording', render);
    render();
  }

  window.GatewayDemo = { start, mediaElement, elementTrack, bindLocalPreview, bindRecording, showError, icon, initials, roleLabel, sourceLabel };

  // Buttons declare their icon with data-icon; fill them in once.
  document.querySelectorAll('[data-icon]').forEach((el) => el.insertAdjacentHTML('afterbegin', icon(el.dataset.icon)));
})();
