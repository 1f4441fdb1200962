// What the demo pages share: the token from the URL hash and auto-join, join and leave, the
// connection state on <body data-state>, publish toggles, the local preview, remote audio, the
// recording indicator, the chat panel, Smart Actions, and window.room for tests. Each page adds
// only how it lays out remote video.
(() => {
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
    const parts = String(name || '?')
      .split(/[\s._@-]+/)
      .filter(Boolean);
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
    return el?.srcObject ? el.srcObject.getTracks()[0] : undefined;
  }

  function showError(error) {
    const box = document.getElementById('error');
    if (!box) return;
    const text = (error?.code ? `${error.code}: ` : '') + (error?.message || String(error));
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
        if (info.reason !== 'left') showError({ code: info.reason, message: `the call was disconnected${info.error ? ` (${info.error.message})` : ''}` });
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
    switch (error?.code) {
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
        return error?.message || String(error);
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
    const canRedact = options?.canRedact || ((m) => room.localParticipant.role === 'agent' && m.role === 'end_user' && !m.redacted);
    /** messageId -> its element */
    const nodes = new Map();
    let sending = false;
    let blockedUntil = 0;
    let unblock;

    function showChatError(error) {
      el.error.textContent = chatErrorText(error);
      el.error.dataset.code = error?.code || '';
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

  const ACTION_LABELS = { photo: 'Photo', screenshot: 'Screenshot', verification: 'Device verification' };
  const ACTION_STATES = { requested: 'Requested', completed: 'Completed', declined: 'Declined', failed: 'Failed' };

  function secondsTime(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  /** What a Smart Action failure says, for either side. */
  function actionErrorText(error) {
    switch (error?.code) {
      case 'MESSAGE_TOO_LARGE':
        return 'This image is too large. Please choose a smaller one.';
      case 'UNSUPPORTED_CONTENT':
        return 'This file is not a JPEG, PNG or WebP image.';
      case 'INVALID_STATE':
        return 'This request was already answered.';
      case 'PERMISSION_DENIED':
        return `Not allowed: ${error?.message || 'permission denied'}`;
      case 'UNSUPPORTED':
        return `This browser cannot do that here: ${error?.message || ''}`;
      default:
        return error?.message || String(error);
    }
  }

  function textElement(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    el.textContent = text;
    return el;
  }

  function actionButton(testid, label, primary) {
    const button = Object.assign(document.createElement('button'), { type: 'button', textContent: label });
    button.dataset.testid = testid;
    if (primary) button.className = 'primary';
    return button;
  }

  /**
   * Smart Actions, on both pages: the room's actions as a list (one
   * `.smart-action[data-action-id][data-kind][data-state]` each, updated as their state changes).
   * Agents get buttons to ask for a photo, a screenshot or a device verification, and see the
   * photos and screenshots (through short-lived attachment URLs) and the verification results.
   * The end user asked gets a prompt in the action's entry: a file to send, a screenshot to
   * share or a verification with this device, and Decline; and a "Register this device" button.
   * `elements` overrides the defaults (#smart-actions, #smart-action-error, #register-device,
   * #register-device-status, the `[data-request-action]` buttons). Text is only ever inserted as text.
   */
  function bindSmartActions(room, elements) {
    const el = Object.assign(
      {
        list: document.getElementById('smart-actions'),
        error: document.getElementById('smart-action-error'),
        register: document.getElementById('register-device'),
        registerStatus: document.getElementById('register-device-status'),
        requestButtons: [...document.querySelectorAll('[data-request-action]')],
      },
      elements,
    );
    const isAgent = room.localParticipant.role === 'agent';
    /** actionId -> its element */
    const nodes = new Map();

    function showActionError(error) {
      if (!el.error) return showError(error);
      el.error.textContent = actionErrorText(error);
      el.error.dataset.code = error?.code || '';
      el.error.hidden = false;
    }

    function clearActionError() {
      if (!el.error) return;
      el.error.hidden = true;
      el.error.textContent = '';
      delete el.error.dataset.code;
    }

    /** Runs an answer from a card: its buttons are disabled meanwhile, and a failure shows in the card. */
    async function busy(li, work) {
      const controls = [...li.querySelectorAll('button, input')];
      controls.forEach((c) => (c.disabled = true));
      li.dataset.busy = '1';
      const error = li.querySelector('.smart-action-error');
      error.hidden = true;
      try {
        await work();
      } catch (e) {
        error.textContent = actionErrorText(e);
        error.dataset.code = e?.code || '';
        error.hidden = false;
        // Still open: try again (Send needs a file chosen).
        const file = li.querySelector('input[type=file]');
        controls.forEach((c) => (c.disabled = c.dataset.testid === 'smart-action-send' && !file?.files.length));
      } finally {
        delete li.dataset.busy;
      }
    }

    /** The end user's screenshot: the screen share if on, else a one-off capture of what they pick. */
    async function shareScreenshot(actionId) {
      if (room.localTracks.has('screen') || !navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) return room.sendScreenshot(actionId);
      const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      const track = stream.getVideoTracks()[0];
      try {
        return await room.sendScreenshot(actionId, track);
      } finally {
        stream.getTracks().forEach((t) => t.stop());
      }
    }

    /** The prompt of a request asked of us. */
    function prompt(li, action) {
      const controls = document.createElement('div');
      controls.className = 'smart-action-controls';
      if (action.kind === 'photo') {
        const file = Object.assign(document.createElement('input'), { type: 'file', accept: 'image/*' });
        file.setAttribute('capture', 'environment');
        file.dataset.testid = 'smart-action-file';
        file.setAttribute('aria-label', 'Photo to send');
        const send = actionButton('smart-action-send', 'Send', true);
        send.disabled = true;
        file.onchange = () => (send.disabled = !file.files.length);
        send.onclick = () => busy(li, () => room.sendPhoto(action.actionId, file.files[0]));
        controls.append(file, send);
      } else if (action.kind === 'screenshot') {
        const share = actionButton('smart-action-screenshot', 'Share screenshot', true);
        share.onclick = () => busy(li, () => shareScreenshot(action.actionId));
        controls.append(share);
      } else if (action.kind === 'verification') {
        const verify = actionButton('smart-action-verify', 'Verify with this device', true);
        verify.onclick = () => busy(li, () => room.verifyDevice(action.actionId));
        controls.append(verify);
      }
      const decline = actionButton('smart-action-decline', 'Decline');
      decline.onclick = () => busy(li, () => room.declineSmartAction(action.actionId));
      controls.append(decline);
      li.append(controls);
    }

    /** What came of an action: the picture (agents), the verification result, or why not. */
    function outcome(li, action) {
      if (action.state === 'completed' && action.kind === 'verification') {
        const result = textElement('div', 'smart-action-result', `${action.verified ? 'verified' : 'not verified'} · ${secondsTime(action.completedAtMs)}`);
        result.dataset.testid = 'smart-action-result';
        result.dataset.verified = String(action.verified);
        result.classList.add(action.verified ? 'ok' : 'bad');
        li.append(result);
        if (!action.verified && action.reason) li.append(textElement('div', 'smart-action-reason', action.reason));
      } else if (action.state === 'completed' && action.artifactId) {
        if (!isAgent) return li.append(textElement('div', 'smart-action-reason', 'Sent to the agent.'));
        const img = document.createElement('img');
        img.className = 'smart-action-image';
        img.dataset.testid = 'smart-action-image';
        img.alt = `${ACTION_LABELS[action.kind] || action.kind} from ${action.externalId || 'the customer'}`;
        li.append(img);
        // The URL is short-lived: loaded once here; a click opens a fresh one.
        room.attachmentUrl(action.artifactId).then(
          (url) => (img.src = url),
          (error) => li.append(textElement('div', 'smart-action-reason', actionErrorText(error))),
        );
        img.onclick = () => room.attachmentUrl(action.artifactId).then((url) => window.open(url, '_blank', 'noopener'), showActionError);
      } else if (action.state === 'requested') {
        if (isAgent) li.append(textElement('div', 'smart-action-reason', 'Waiting for the customer…'));
      } else if (action.reason) {
        li.append(textElement('div', 'smart-action-reason', action.reason));
      }
    }

    function actionElement(action) {
      const li = document.createElement('li');
      li.className = 'smart-action';
      li.dataset.testid = 'smart-action';
      li.dataset.actionId = action.actionId;
      li.dataset.kind = action.kind;
      li.dataset.state = action.state;
      const head = document.createElement('div');
      head.className = 'smart-action-head';
      const time = textElement('time', '', secondsTime(action.requestedAtMs));
      time.dateTime = new Date(action.requestedAtMs).toISOString();
      const state = textElement('span', 'smart-action-state', ACTION_STATES[action.state] || action.state);
      state.dataset.testid = 'smart-action-state';
      head.append(textElement('span', 'smart-action-kind', ACTION_LABELS[action.kind] || action.kind), state, time);
      li.append(head);
      const askedMe = action.participantId === room.localParticipant.id;
      if (!isAgent && askedMe && action.state === 'requested') prompt(li, action);
      else outcome(li, action);
      const error = textElement('p', 'smart-action-error', '');
      error.hidden = true;
      li.append(error);
      return li;
    }

    function render(action) {
      // End users see what was asked of them; agents see everything.
      if (!isAgent && action.participantId !== room.localParticipant.id && !nodes.has(action.actionId)) return;
      const li = actionElement(action);
      const old = nodes.get(action.actionId);
      nodes.set(action.actionId, li);
      if (old) return old.replaceWith(li);
      el.list.append(li);
      el.list.scrollTop = el.list.scrollHeight;
      if (!isAgent && action.state === 'requested') li.scrollIntoView({ block: 'nearest' });
    }

    for (const button of el.requestButtons) {
      button.hidden = !isAgent;
      button.onclick = async () => {
        clearActionError();
        button.disabled = true;
        try {
          await room.requestSmartAction(button.dataset.requestAction);
        } catch (error) {
          showActionError(error);
        }
        button.disabled = false;
      };
    }

    if (el.register) {
      el.register.hidden = isAgent;
      el.register.onclick = async () => {
        el.register.disabled = true;
        const status = el.registerStatus;
        if (status) {
          status.textContent = 'Follow your browser\u2019s prompt…';
          delete status.dataset.code;
        }
        try {
          const credentialId = await room.registerDeviceKey();
          if (status) {
            status.textContent = 'This device is registered.';
            status.dataset.credentialId = credentialId;
          }
          el.register.textContent = 'Registered';
        } catch (error) {
          if (status) {
            status.textContent = error && error.code === 'INVALID_STATE' ? 'This device is already registered.' : actionErrorText(error);
            status.dataset.code = error?.code || '';
          }
          el.register.disabled = false;
        }
      };
    }

    el.list.replaceChildren();
    clearActionError();
    for (const action of room.smartActions) render(action);
    room.on('smartAction', render);
    room.on('disconnected', () => {
      el.requestButtons.forEach((b) => (b.disabled = true));
      if (el.register) el.register.disabled = true;
      el.list.querySelectorAll('.smart-action-controls button, .smart-action-controls input').forEach((c) => (c.disabled = true));
    });
  }

  window.GatewayDemo = { start, mediaElement, elementTrack, bindLocalPreview, bindRecording, bindChat, bindSmartActions, showError, icon, initials, roleLabel, sourceLabel };

  // Buttons declare their icon with data-icon; fill them in once.
  document.querySelectorAll('[data-icon]').forEach((el) => el.insertAdjacentHTML('afterbegin', icon(el.dataset.icon)));
})();
