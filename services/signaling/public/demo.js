// What the demo pages share: the token from the URL hash and auto-join, join and leave, the
// connection state on <body data-state>, publish toggles, the local preview, remote audio, the
// recording indicator, the chat panel, and window.room for tests. Each page adds only how it
// lays out remote video.
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

  /** What the chat panel says for a failed send or redaction. */
  function chatErrorText(error) {
    switch (error && error.code) {
      case 'MESSAGE_TOO_LARGE':
        return 'This message is too long to send. Please shorten it.';
      case 'RATE_LIMITED': {
        const seconds = Math.max(1, Math.ceil((error.retryAfterMs || 1000) / 1000));
        return `You are sending messages too quickly. Try again in ${seconds} s.`;
      }
      case 'PERMISSION_DENIED':
        return 'You are not allowed to do that.';
      case 'NOT_FOUND':
        return 'That message no longer exists.';
      case 'ROOM_CLOSED':
        return 'You are no longer in the call.';
      default:
        return (error && error.message) || String(error);
    }
  }

  /** Message text with the server's placeholders ([CARD], [SSN], [PHONE], [EMAIL]) set apart. Never HTML. */
  function chatText(text) {
    const out = document.createDocumentFragment();
    for (const part of text.split(/(\[(?:CARD|SSN|PHONE|EMAIL)\])/)) {
      if (!part) continue;
      if (/^\[(CARD|SSN|PHONE|EMAIL)\]$/.test(part)) {
        const chip = document.createElement('span');
        chip.className = 'pii';
        chip.title = 'Hidden for privacy';
        chip.textContent = part;
        out.append(chip);
      } else {
        out.append(part);
      }
    }
    return out;
  }

  function clockTime(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  /**
   * The chat panel: the room's messages (history and live, one `.chat-message[data-message-id]`
   * each, in the room's order, our own on the right), an input that sends on Enter, failures
   * shown under the log, and for agents a Redact action on the customer's messages. `elements`
   * overrides the default ids (#chat-log, #chat-form, #chat-input, #chat-send, #chat-error);
   * `options.canRedact(message)` overrides who gets the Redact action.
   */
  function bindChat(room, elements, options) {
    const el = Object.assign(
      {
        log: document.getElementById('chat-log'),
        form: document.getElementById('chat-form'),
        input: document.getElementById('chat-input'),
        send: document.getElementById('chat-send'),
        error: document.getElementById('chat-error'),
      },
      elements,
    );
    const canRedact = (options && options.canRedact) || ((m) => room.localParticipant.role === 'agent' && m.role === 'end_user' && !m.redacted);
    /** messageId -> its element */
    const nodes = new Map();
    let sending = false;
    let blockedUntil = 0;
    let unblock;

    function showChatError(error) {
      el.error.textContent = chatErrorText(error);
      el.error.dataset.code = (error && error.code) || '';
      el.error.hidden = false;
    }

    function clearChatError() {
      el.error.hidden = true;
      el.error.textContent = '';
      delete el.error.dataset.code;
    }

    function messageElement(message) {
      const li = document.createElement('li');
      li.className = 'chat-message';
      li.classList.toggle('own', message.isLocal);
      li.classList.toggle('redacted', message.redacted);
      li.dataset.messageId = message.messageId;
      li.dataset.role = message.role;
      li.dataset.testid = 'chat-message';
      if (message.redacted) li.dataset.redacted = '1';

      const meta = document.createElement('div');
      meta.className = 'chat-meta';
      const sender = document.createElement('span');
      sender.className = 'chat-sender';
      sender.textContent = message.isLocal ? 'You' : message.identity;
      const role = document.createElement('span');
      role.className = 'chat-role';
      role.textContent = message.isLocal ? '' : roleLabel(message.role);
      const time = document.createElement('time');
      time.dateTime = new Date(message.sentAtMs).toISOString();
      time.title = new Date(message.sentAtMs).toLocaleString();
      time.textContent = clockTime(message.sentAtMs);
      meta.append(sender, role, time);

      const bubble = document.createElement('div');
      bubble.className = 'chat-text';
      if (message.redacted) bubble.textContent = 'Message redacted';
      else bubble.append(chatText(message.text));
      li.append(meta, bubble);

      if (canRedact(message)) {
        const redact = Object.assign(document.createElement('button'), { type: 'button', className: 'chat-redact', textContent: 'Redact' });
        redact.dataset.testid = 'chat-redact';
        redact.title = 'Remove this message for everyone';
        redact.onclick = () => {
          redact.disabled = true;
          clearChatError();
          room.redactMessage(message.messageId).catch((error) => {
            redact.disabled = false;
            showChatError(error);
          });
        };
        meta.append(redact);
      }
      return li;
    }

    const nearBottom = () => el.log.scrollHeight - el.log.scrollTop - el.log.clientHeight < 40;

    /** Adds a message where the room's order puts it, or replaces its element. */
    function render(message) {
      const li = messageElement(message);
      const old = nodes.get(message.messageId);
      nodes.set(message.messageId, li);
      if (old) return old.replaceWith(li);
      const stick = nearBottom();
      const index = room.messages.findIndex((m) => m.messageId === message.messageId);
      const next = index < 0 ? undefined : room.messages.slice(index + 1).find((m) => nodes.has(m.messageId));
      el.log.insertBefore(li, next ? nodes.get(next.messageId) : null);
      if (stick || message.isLocal) el.log.scrollTop = el.log.scrollHeight;
    }

    function refreshControls() {
      const closed = room.state === 'disconnected';
      el.input.disabled = closed;
      el.input.readOnly = sending;
      el.send.disabled = closed || sending || Date.now() < blockedUntil;
      el.send.textContent = sending ? 'Sending…' : 'Send';
    }

    el.log.replaceChildren();
    clearChatError();
    for (const message of room.messages) render(message);
    room.on('message', render);
    room.on('messageRedacted', render);
    room.on('disconnected', refreshControls);

    el.input.oninput = () => {
      if (!el.error.hidden && el.error.dataset.code !== 'RATE_LIMITED') clearChatError();
    };
    el.form.onsubmit = async (event) => {
      event.preventDefault();
      const text = el.input.value;
      if (!text.trim() || sending || Date.now() < blockedUntil || room.state === 'disconnected') return;
      sending = true;
      clearChatError();
      refreshControls();
      try {
        await room.sendMessage(text);
        if (el.input.value === text) el.input.value = '';
      } catch (error) {
        // The text stays in the input, to be shortened or sent again.
        showChatError(error);
        if (error && error.code === 'RATE_LIMITED') {
          blockedUntil = Date.now() + (error.retryAfterMs || 1000);
          clearTimeout(unblock);
          unblock = setTimeout(() => {
            if (el.error.dataset.code === 'RATE_LIMITED') clearChatError();
            refreshControls();
          }, blockedUntil - Date.now());
        }
      }
      sending = false;
      refreshControls();
      if (!el.input.disabled) el.input.focus();
    };
    refreshControls();
  }

  window.GatewayDemo = { start, mediaElement, elementTrack, bindLocalPreview, bindRecording, bindChat, showError, icon, initials, roleLabel, sourceLabel };

  // Buttons declare their icon with data-icon; fill them in once.
  document.querySelectorAll('[data-icon]').forEach((el) => el.insertAdjacentHTML('afterbegin', icon(el.dataset.icon)));
})();
