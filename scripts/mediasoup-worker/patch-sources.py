#!/usr/bin/env python3
"""Edits a copy of the mediasoup worker's sources to build and run against Debian's libraries.

The upstream build downloads eight subprojects (openssl, libuv, libsrtp2, usrsctp, abseil,
catch2, flatbuffers, liburing) from the internet; here each one is replaced by a library found
through pkg-config: Debian's, linked dynamically, except libsrtp2 and liburing, which
mediasoup-worker.sh builds from Debian's source archives and links statically. Test and fuzzer targets are dropped:
they need catch2 v3, which Debian bookworm does not have.

One source fix: the DTLS BIO callback answered 1 to every BIO_ctrl() query. Debian's OpenSSL
is built with kernel TLS, so `BIO_get_ktls_send()` is a real BIO_ctrl() call there; answered 1,
OpenSSL believes the kernel sends the records, never allocates its write buffer, and the
worker crashes on the first handshake. The callback must pass through the return value of
every completed operation.
"""
import re
import sys

worker = sys.argv[1]


def edit(path, transform):
    with open(path) as f:
        text = f.read()
    new = transform(text)
    if new == text:
        sys.exit(f"patch-meson: nothing changed in {path}; the mediasoup sources changed shape")
    with open(path, "w") as f:
        f.write(new)


def replace_once(text, old, new, what):
    """`text` with `old`, which must occur exactly once, replaced by `new`; stops the build otherwise."""
    if text.count(old) != 1:
        sys.exit(f"patch: {what} not found once; the mediasoup sources changed shape")
    return text.replace(old, new)


SYSTEM_DEPS = """
# System libraries (Debian) instead of downloaded subprojects.
openssl_dep = dependency('openssl')
libuv_dep = dependency('libuv')
libsrtp2_dep = dependency('libsrtp2')
usrsctp_dep = dependency('usrsctp')
flatbuffers_dep = dependency('flatbuffers')
absl_container_dep = [dependency('absl_container_common'), dependency('absl_raw_hash_set'), dependency('absl_hash')]
absl_strings_dep = dependency('absl_strings')
absl_types_dep = dependency('absl_optional')
"""


def main_meson(text):
    # Debian bookworm ships meson 1.0.1; the file builds with it.
    text = text.replace("meson_version: '>= 1.1.0'", "meson_version: '>= 1.0.0'")
    # Replace the block of subproject() calls (openssl .. flatbuffers) with system lookups.
    text, n = re.subn(r"openssl_proj = subproject\(.*?flatbuffers_proj = subproject\(.*?\n\)\n", SYSTEM_DEPS, text, flags=re.S)
    if n != 1:
        sys.exit("patch-meson: subproject block not found")
    replacements = {
        "abseil_cpp_proj.get_variable('absl_container_dep')": "absl_container_dep",
        "openssl_proj.get_variable('openssl_dep')": "openssl_dep",
        "libuv_proj.get_variable('libuv_dep')": "libuv_dep",
        "libsrtp2_proj.get_variable('libsrtp2_dep')": "libsrtp2_dep",
        "usrsctp_proj.get_variable('usrsctp_dep')": "usrsctp_dep",
        "flatbuffers_proj.get_variable('flatbuffers_dep')": "flatbuffers_dep",
    }
    for old, new in replacements.items():
        text = text.replace(old, new)
    # Static libraries of the subprojects are no longer linked whole: the system ones are shared.
    text = re.sub(r"\n  (abseil_cpp_proj|openssl_proj|libuv_proj|libsrtp2_proj|usrsctp_proj|flatbuffers_proj)\.get_variable\('[a-z_0-9]+'\),", "", text)
    # Drop tests and fuzzer (need catch2 v3 and clang's fuzzer runtime).
    idx = text.find("test_sources = [")
    if idx < 0:
        sys.exit("patch-meson: test_sources not found")
    text = text[:idx]
    # liburing from mediasoup-worker.sh's static build instead of the downloaded subproject.
    old_uring = """    liburing_proj = subproject('liburing', default_options: ['default_library=static'], required: true)

    dependencies += [
      liburing_proj.get_variable('uring'),
    ]
    link_whole += [
      liburing_proj.get_variable('liburing')
    ]"""
    if old_uring not in text:
        sys.exit("patch-meson: liburing subproject block not found")
    text = text.replace(old_uring, "    dependencies += [\n      dependency('liburing', static: true),\n    ]")
    # The compat header maps the libsrtp 3 API the sources use onto libsrtp 2.5 (Debian's version).
    text = text.replace(
        "cpp_args = [\n",
        "cpp_args = [\n  '-include', meson.current_source_dir() / 'srtp-compat.h',\n",
        1,
    )
    return text


def libwebrtc_meson(text):
    text, n = re.subn(r"abseil_cpp_proj = subproject\(.*?\n\)\n", "", text, flags=re.S)
    if n != 1:
        sys.exit("patch-meson: libwebrtc abseil subproject not found")
    for name in ["openssl_dep", "flatbuffers_dep", "libuv_dep", "absl_strings_dep", "absl_types_dep"]:
        text = re.sub(r"[a-z_0-9]+_proj\.get_variable\('%s'\)" % name, name, text)
    return text


def dtls_bio_callback(text):
    return text.replace(
        "long resultOfcallback = (operationType == BIO_CB_RETURN) ? static_cast<long>(ret) : 1;",
        "long resultOfcallback = (operationType & BIO_CB_RETURN) ? static_cast<long>(ret) : 1;",
    )


def key_frame_retry(text):
    # A browser encoder ignores a key frame request that comes within 300 ms of the previous one
    # (libwebrtc's kMinKeyframeSendIntervalMs, shared by all simulcast layers). A request for a
    # new subscriber's layer that lands in that window is dropped, and upstream waits a full
    # second to ask again: retry just after the window instead.
    return replace_once(
        text,
        "static constexpr uint32_t KeyFrameRetransmissionWaitTime{ 1000u };",
        "static constexpr uint32_t KeyFrameRetransmissionWaitTime{ 350u };",
        "KeyFrameRequestManager.cpp KeyFrameRetransmissionWaitTime",
    )


# --- A subscriber whose downlink narrows suddenly (docs/mediasoup-worker.md).
# Upstream, when the bandwidth estimate falls below the current simulcast layer, the consumer
# keeps forwarding that layer (and resending every packet the subscriber reports lost) until a
# key frame of the lower layer arrives, and when the estimate falls below even the lowest layer
# it forwards nothing. On a link that just fell from megabits to a few hundred kilobits that
# fills the bottleneck queue, the lower layer's key frame waits behind it, the loss drives the
# estimate down further, and the picture holds for several seconds. These edits make the switch
# down drain the link instead: the layer being left is no longer forwarded nor resent once the
# estimate has moved below it, the lowest layer is always kept (as LiveKit does by default), and
# a receiver's key frame request during the switch asks for the layer it is switching to.


def simulcast_consumer_header(text):
    old = "\t\tuint64_t lastBweDowngradeAtMs{ 0u }; // Last time we moved to lower spatial layer due to BWE.\n"
    if old not in text:
        sys.exit("patch: SimulcastConsumer.hpp lastBweDowngradeAtMs not found")
    return text.replace(
        old,
        old + "\t\t// A switch down for lack of bandwidth is pending: the current layer is no longer forwarded.\n"
        "\t\tbool draining{ false };\n",
    )


def simulcast_consumer(text):
    def sub(old, new, what):
        nonlocal text
        text = replace_once(text, old, new, f"SimulcastConsumer.cpp {what}")

    # After a downgrade for lack of bandwidth, wait 5 s (not 10 s) before trying a higher layer
    # again, so that a link that recovers gets its top layer back within about 10 s.
    sub("static constexpr uint64_t BweDowngradeConservativeMs{ 10000u };",
        "static constexpr uint64_t BweDowngradeConservativeMs{ 5000u };", "BweDowngradeConservativeMs")
    # Keep the lowest layer even when the estimate is below it: no layer at all means no video
    # sent, no acknowledged video rate, and an estimate that cannot grow back without probes.
    sub("""		// No luck.
		if (requiredBitrate > virtualBitrate)
		{
			return 0u;
		}
""", """		// No luck, unless this is the lowest layer: it is kept whatever the estimate.
		if (requiredBitrate > virtualBitrate)
		{
			if (this->provisionalTargetSpatialLayer != -1)
			{
				return 0u;
			}

			this->provisionalTargetSpatialLayer  = spatialLayer;
			this->provisionalTargetTemporalLayer = temporalLayer;

			return std::min(requiredBitrate, bitrate);
		}
""", "IncreaseLayer no luck")
    # A switch down decided by the bandwidth estimate drains the current layer.
    sub("""			UpdateTargetLayers(provisionalTargetSpatialLayer, provisionalTargetTemporalLayer);

			// If this looks like a spatial layer downgrade due to BWE limitations, set member.
""", """			UpdateTargetLayers(provisionalTargetSpatialLayer, provisionalTargetTemporalLayer);

			this->draining = this->targetSpatialLayer != -1 &&
			                 this->targetSpatialLayer < this->currentSpatialLayer &&
			                 this->currentSpatialLayer <= this->preferredSpatialLayer;

			// If this looks like a spatial layer downgrade due to BWE limitations, set member.
""", "ApplyLayers")
    # Any other change of target (preferred layers, a stream's score) ends the drain.
    sub("""	void SimulcastConsumer::UpdateTargetLayers(int16_t newTargetSpatialLayer, int16_t newTargetTemporalLayer)
	{
		MS_TRACE();
""", """	void SimulcastConsumer::UpdateTargetLayers(int16_t newTargetSpatialLayer, int16_t newTargetTemporalLayer)
	{
		MS_TRACE();

		this->draining = false;
""", "UpdateTargetLayers")
    sub("""		// If the packet belongs to different spatial layer than the one being sent,
		// drop it.
		else if (spatialLayer != this->currentSpatialLayer)
		{""", """		// If the packet belongs to different spatial layer than the one being sent,
		// or to the one being left for lack of bandwidth, drop it.
		else if (
		  spatialLayer != this->currentSpatialLayer ||
		  (this->draining && this->targetSpatialLayer < this->currentSpatialLayer))
		{""", "SendRtpPacket layer mismatch")
    # Once on the lower layer, packets of the higher one are not resent any more.
    sub("""			// Update current spatial layer.
			this->currentSpatialLayer = this->targetSpatialLayer;
""", """			// Packets of a higher layer left behind are not worth resending.
			if (this->targetSpatialLayer < this->currentSpatialLayer)
			{
				this->rtpStream->Pause();
			}

			this->draining = false;

			// Update current spatial layer.
			this->currentSpatialLayer = this->targetSpatialLayer;
""", "SendRtpPacket switch")
    sub("""		// May emit 'trace' event.
		EmitTraceEventNackType();

		this->rtpStream->ReceiveNack(nackPacket);""", """		// May emit 'trace' event.
		EmitTraceEventNackType();

		// While switching down, what was lost belongs to the layer being left.
		if (this->targetSpatialLayer < this->currentSpatialLayer)
		{
			return;
		}

		this->rtpStream->ReceiveNack(nackPacket);""", "ReceiveNack")
    sub("""		this->rtpStream->ReceiveKeyFrameRequest(messageType);

		if (IsActive())
		{
			RequestKeyFrameForCurrentSpatialLayer();
		}""", """		this->rtpStream->ReceiveKeyFrameRequest(messageType);

		if (IsActive() && this->targetSpatialLayer != -1 && this->targetSpatialLayer != this->currentSpatialLayer)
		{
			RequestKeyFrameForTargetSpatialLayer();
		}
		else if (IsActive())
		{
			RequestKeyFrameForCurrentSpatialLayer();
		}""", "ReceiveKeyFrameRequest")
    return text


# --- A link that collapses goes straight to the lowest layer (docs/mediasoup-worker.md).
# When a transport's estimate falls by more than half from one allocation to the next, the link
# fell far below what was sent and its queue is full: the key frame of a middle layer (often
# larger than such a link's queue holds) is lost in the overflow or waits behind it, the estimate
# falls on, and a second switch and key frame follow. Traced, the longest freeze was those two
# switches one after the other. After such a fall a simulcast consumer above its lowest layer
# stops at the lowest spatial layer (its temporal layers as the share allows) until that switch
# is done, and the switch counts as a downgrade for lack of bandwidth whatever the consumer's age
# (upstream only after 8 s): it holds there for the 5 s before a higher layer is tried again
# instead of climbing back at the next allocation.


def consumer_link_collapsed_header(text):
    old = "\t\tvirtual void ApplyLayers()                                          = 0;\n"
    return replace_once(
        text,
        old,
        old + "\t\t// The transport's estimate fell by more than half since its last allocation.\n"
        "\t\tvirtual void SetLinkCollapsed(bool /*linkCollapsed*/)\n\t\t{\n\t\t}\n",
        "Consumer.hpp ApplyLayers (SetLinkCollapsed)",
    )


def transport_link_collapsed_header(text):
    old = "\t\tstd::shared_ptr<RTC::TransportCongestionControlClient> tccClient{ nullptr };\n"
    return replace_once(
        text,
        old,
        old + "\t\t// The estimate the consumers last shared.\n\t\tuint32_t lastDistributedBitrate{ 0u };\n",
        "Transport.hpp tccClient (lastDistributedBitrate)",
    )


def transport_link_collapsed(text):
    old = """		uint32_t availableBitrate = this->tccClient->GetAvailableBitrate();

		this->tccClient->RescheduleNextAvailableBitrateEvent();
"""
    new = old + """
		// A link that collapsed (the estimate fell by more than half since the last allocation).
		{
			const bool linkCollapsed = availableBitrate < this->lastDistributedBitrate / 2;

			this->lastDistributedBitrate = availableBitrate;

			for (auto& kv : multimapPriorityConsumer)
			{
				kv.second->SetLinkCollapsed(linkCollapsed);
			}
		}
"""
    return replace_once(text, old, new, "Transport.cpp DistributeAvailableOutgoingBitrate (collapse)")


def simulcast_consumer_collapse_header(text):
    text = replace_once(
        text,
        "\t\tvoid ApplyLayers() override;\n",
        "\t\tvoid ApplyLayers() override;\n\t\tvoid SetLinkCollapsed(bool linkCollapsed) override\n\t\t{\n"
        "\t\t\tthis->linkCollapsed = linkCollapsed;\n\t\t}\n",
        "SimulcastConsumer.hpp ApplyLayers (SetLinkCollapsed)",
    )
    old = "\t\tbool draining{ false };\n"
    return replace_once(
        text,
        old,
        old + "\t\t// What the transport said of its link before this allocation.\n"
        "\t\tbool linkCollapsed{ false };\n"
        "\t\t// This allocation stops at the lowest spatial layer: the link collapsed.\n"
        "\t\tbool collapsed{ false };\n",
        "SimulcastConsumer.hpp draining (collapsed)",
    )


def simulcast_consumer_collapse(text):
    def sub(old, new, what):
        nonlocal text
        text = replace_once(text, old, new, f"SimulcastConsumer.cpp {what}")

    sub("""		uint32_t requiredBitrate{ 0u };
		int16_t spatialLayer{ 0 };
		int16_t temporalLayer{ 0 };
		auto nowMs = DepLibUV::GetTimeMs();
""", """		uint32_t requiredBitrate{ 0u };
		int16_t spatialLayer{ 0 };
		int16_t temporalLayer{ 0 };
		auto nowMs = DepLibUV::GetTimeMs();

		// At the first step of an allocation: after a collapse, until the switch it started is done.
		if (this->provisionalTargetSpatialLayer == -1)
		{
			this->collapsed =
			  this->currentSpatialLayer > 0 && (this->linkCollapsed || (this->collapsed && this->draining));
		}
""", "IncreaseLayer collapse check")
    sub("""			// Ignore spatial layers lower than the one we already have.
			if (spatialLayer < this->provisionalTargetSpatialLayer)
			{
				continue;
			}
""", """			// A collapsed link gets nothing above the lowest layer this allocation.
			if (this->collapsed && this->provisionalTargetSpatialLayer > -1 && spatialLayer > this->provisionalTargetSpatialLayer)
			{
				goto done;
			}

			// Ignore spatial layers lower than the one we already have.
			if (spatialLayer < this->provisionalTargetSpatialLayer)
			{
				continue;
			}
""", "IncreaseLayer collapse cap")
    sub("""			// If this looks like a spatial layer downgrade due to BWE limitations, set member.
""", """			// A collapse is a downgrade for lack of bandwidth whatever the consumer's age.
			if (this->draining && this->collapsed)
			{
				this->lastBweDowngradeAtMs = DepLibUV::GetTimeMs();
			}

			// If this looks like a spatial layer downgrade due to BWE limitations, set member.
""", "ApplyLayers collapse hold")
    return text


# --- A link that widens again is found at once (docs/mediasoup-worker.md).
# After a switch down the estimate has to grow back by itself: libwebrtc's additive increase near
# the last capacity it saw, and probes only while the sender is application limited, took 10 to
# 25 s to get a receiver its top layer back. libwebrtc probes when the allocated bitrate changes:
# while the estimate holds the consumers below the bitrate they want, the transport nudges its
# allocation by one bit per second every 3 s, so a probe at what they want (a few kilobytes in
# 15 ms; the SFU's field trials drop libwebrtc's second probe at twice that) tells at once whether
# the link now carries it. LiveKit's stream allocator probes in the same case.


def tcc_client_header(text):
    old = "\t\tuint64_t lastAvailableBitrateEventAtMs{ 0u };\n"
    text = replace_once(
        text,
        old,
        old + "\t\t// Probing for the desired bitrate while the estimate is below it.\n"
        "\t\tuint64_t lastDesiredBitrateProbeAtMs{ 0u };\n"
        "\t\tuint32_t allocationNudge{ 0u };\n"
        "\t\t// The estimate at the last check, to see it fall.\n"
        "\t\tuint32_t lastCheckedAvailableBitrate{ 0u };\n",
        "TransportCongestionControlClient.hpp lastAvailableBitrateEventAtMs",
    )
    old = "\t\tvoid MayEmitAvailableBitrateEvent(uint32_t previousAvailableBitrate);\n"
    return replace_once(text, old, old + "\t\tvoid MayProbeForDesiredBitrate();\n", "TransportCongestionControlClient.hpp MayEmitAvailableBitrateEvent")


def tcc_client(text):
    def sub(old, new, what):
        nonlocal text
        text = replace_once(text, old, new, f"TransportCongestionControlClient.cpp {what}")

    # The nudge stays in every later update of the limits, so only a new nudge changes them.
    sub("""		this->rtpTransportControllerSend->SetAllocatedSendBitrateLimits(
		  this->bitrates.minBitrate, this->bitrates.maxPaddingBitrate, this->bitrates.maxBitrate);
""", """		this->rtpTransportControllerSend->SetAllocatedSendBitrateLimits(
		  this->bitrates.minBitrate,
		  this->bitrates.maxPaddingBitrate,
		  this->bitrates.maxBitrate + this->allocationNudge);
""", "SetAllocatedSendBitrateLimits")
    sub("""			MayEmitAvailableBitrateEvent(this->bitrates.availableBitrate);
		}
	}
""", """			MayEmitAvailableBitrateEvent(this->bitrates.availableBitrate);

			MayProbeForDesiredBitrate();
		}
	}

	void TransportCongestionControlClient::MayProbeForDesiredBitrate()
	{
		static constexpr uint64_t DesiredBitrateProbeIntervalMs{ 3000u };

		const uint64_t nowMs                    = DepLibUV::GetTimeMs();
		const uint32_t previousAvailableBitrate = this->lastCheckedAvailableBitrate;

		this->lastCheckedAvailableBitrate = this->bitrates.availableBitrate;

		// A backoff (the estimate fell by over a tenth since the last check, at most 25 ms ago) is
		// no time to probe: the link is losing or queueing packets, and a probe burst would land in
		// that queue with the key frame of the lower layer. The next probe waits a whole interval
		// from the last fall.
		if (this->bitrates.availableBitrate < previousAvailableBitrate * 0.9)
		{
			this->lastDesiredBitrateProbeAtMs = nowMs;

			return;
		}

		if (
		  this->rtpTransportControllerSend == nullptr || this->bitrates.desiredBitrate == 0u ||
		  this->bitrates.availableBitrate >= this->bitrates.desiredBitrate)
		{
			return;
		}

		if (nowMs - this->lastDesiredBitrateProbeAtMs < DesiredBitrateProbeIntervalMs)
		{
			return;
		}

		this->lastDesiredBitrateProbeAtMs = nowMs;
		this->allocationNudge             = this->allocationNudge == 0u ? 1u : 0u;

		this->rtpTransportControllerSend->SetAllocatedSendBitrateLimits(
		  this->bitrates.minBitrate,
		  this->bitrates.maxPaddingBitrate,
		  this->bitrates.maxBitrate + this->allocationNudge);
	}
""", "OnTimer end")
    return text


# --- A link that narrows is seen in a fraction of a second (docs/mediasoup-worker.md).
# With transport-wide feedback only (mediasoup's setting), libwebrtc reads loss from it once a
# second and on loss over 10 % lowers its estimate by half the loss ratio at most every 300 ms
# plus a round trip: when a link narrows to just under what is sent, its queue stays full (no
# growing delay for the delay-based estimate) and the estimate came down by loss alone, a layer
# switch 2 to 5 s after the link narrowed. Loss is now read every 200 ms (still over at least 20
# packets), and a loss over 10 % also brings the estimate down to what the receiver got
# (acknowledged) less half the loss ratio: more was sent than arrived.


def goog_cc_loss_interval(text):
    return replace_once(
        text,
        "constexpr TimeDelta kLossUpdateInterval = TimeDelta::Millis<1000>();",
        "constexpr TimeDelta kLossUpdateInterval = TimeDelta::Millis<200>();",
        "goog_cc_network_control.cc kLossUpdateInterval",
    )


# The acknowledged rate lags a link that just narrowed (a Bayesian estimate over half a second and
# more): traced on the SFU, the estimate came down by 15 % steps for 0.5 s while the queue of a
# link narrowed from megabits to 300 kbit/s overflowed. What the receiver got over the same 200 ms
# as the loss (the bytes of the packets the feedback acknowledged, over the span of their arrival
# times) is that link's rate now; the loss-based cap takes the lower of the two, and while that
# window lost packets so does the delay-based decrease. GCC as specified backs off from the
# receive rate of the last moments too.


def goog_cc_received_rate_header(text):
    old = "  int expected_packets_since_last_loss_update_ = 0;\n"
    return replace_once(
        text,
        old,
        old + "  DataSize received_bytes_since_last_loss_update_ = DataSize::Zero();\n"
        "  Timestamp first_receive_since_last_loss_update_ = Timestamp::PlusInfinity();\n"
        "  Timestamp last_receive_since_last_loss_update_ = Timestamp::MinusInfinity();\n"
        "  absl::optional<DataRate> last_window_received_rate_;\n"
        "  double last_window_loss_ratio_ = 0.0;\n",
        "goog_cc_network_control.h loss update counters",
    )


def goog_cc_received_rate(text):
    text = replace_once(
        text,
        """      if (packet_feedback.receive_time.IsInfinite())
        lost_packets_since_last_loss_update_ += 1;
    }
    if (report.feedback_time > next_loss_update_) {
      next_loss_update_ = report.feedback_time + kLossUpdateInterval;
""",
        """      if (packet_feedback.receive_time.IsInfinite()) {
        lost_packets_since_last_loss_update_ += 1;
      } else {
        received_bytes_since_last_loss_update_ += packet_feedback.sent_packet.size;
        first_receive_since_last_loss_update_ = std::min(first_receive_since_last_loss_update_, packet_feedback.receive_time);
        last_receive_since_last_loss_update_ = std::max(last_receive_since_last_loss_update_, packet_feedback.receive_time);
      }
    }
    if (report.feedback_time > next_loss_update_) {
      next_loss_update_ = report.feedback_time + kLossUpdateInterval;
      const TimeDelta received_span = last_receive_since_last_loss_update_ - first_receive_since_last_loss_update_;
      last_window_received_rate_ =
          received_span.IsFinite() && received_span >= TimeDelta::ms(100)
              ? absl::optional<DataRate>(received_bytes_since_last_loss_update_ / received_span)
              : absl::nullopt;
      last_window_loss_ratio_ = expected_packets_since_last_loss_update_ > 0
                                    ? static_cast<double>(lost_packets_since_last_loss_update_) / expected_packets_since_last_loss_update_
                                    : 0.0;
      bandwidth_estimation_->UpdateReceivedRate(last_window_received_rate_);
      received_bytes_since_last_loss_update_ = DataSize::Zero();
      first_receive_since_last_loss_update_ = Timestamp::PlusInfinity();
      last_receive_since_last_loss_update_ = Timestamp::MinusInfinity();
""",
        "goog_cc_network_control.cc received rate",
    )
    # The delay-based decrease too (0.85 of the acknowledged rate on overuse) takes what arrived
    # over the last 200 ms while that window lost packets: the queue is overflowing.
    return replace_once(
        text,
        """  result = delay_based_bwe_->IncomingPacketFeedbackVector(
      report, acknowledged_bitrate, probe_bitrate, estimate_,""",
        """  auto delay_based_acknowledged_bitrate = acknowledged_bitrate;
  if (last_window_received_rate_ && last_window_loss_ratio_ > 0.02 &&
      (!delay_based_acknowledged_bitrate || *last_window_received_rate_ < *delay_based_acknowledged_bitrate)) {
    delay_based_acknowledged_bitrate = last_window_received_rate_;
  }
  result = delay_based_bwe_->IncomingPacketFeedbackVector(
      report, delay_based_acknowledged_bitrate, probe_bitrate, estimate_,""",
        "goog_cc_network_control.cc delay-based acknowledged rate",
    )


# No probe into a link that just collapsed. libwebrtc probes at 85 % of the rate before a large
# drop once the delay-based estimate recovers from overuse or backs off while application
# limited, taking the drop for noise; and while application limited (an SFU's transport mostly
# is: its consumers send less than the estimate) at twice the estimate every 2 s (the SFU's
# WebRTC-Bwe-AlrProbing field trial). Traced, such a burst (about 10 KB) left 40 to 500 ms after
# a collapse, into the overflowing queue, with the key frame of the lower layer behind it. When
# the last loss window lost packets the drop was real: no drop probe; and the periodic probe waits
# its interval after a large drop too (the transport probes for what its consumers want 3 s after
# the estimate stops falling).
def goog_cc_no_probe_after_lossy_drop(text):
    def sub(old, new, what):
        nonlocal text
        text = replace_once(text, old, new, f"goog_cc_network_control.cc {what}")

    sub("""    probe_controller_->SetAlrStartTimeMs(alr_start_time);
    auto probes = probe_controller_->RequestProbe(report.feedback_time.ms());""",
        """    probe_controller_->SetAlrStartTimeMs(alr_start_time);
    auto probes = last_window_loss_ratio_ > 0.02 ? std::vector<ProbeClusterConfig>()
                                                 : probe_controller_->RequestProbe(report.feedback_time.ms());""",
        "probe on recovery from overuse")
    sub("""    // If we just backed off during ALR, request a new probe.
    auto probes = probe_controller_->RequestProbe(report.feedback_time.ms());""",
        """    // If we just backed off during ALR, request a new probe.
    auto probes = last_window_loss_ratio_ > 0.02 ? std::vector<ProbeClusterConfig>()
                                                 : probe_controller_->RequestProbe(report.feedback_time.ms());""",
        "probe on backoff in ALR")
    return text


def alr_probe_after_drop(text):
    return replace_once(
        text,
        """      int64_t next_probe_time_ms =
          std::max(*alr_start_time_ms_, time_last_probing_initiated_ms_) +""",
        """      int64_t next_probe_time_ms =
          std::max({*alr_start_time_ms_, time_last_probing_initiated_ms_, time_of_last_large_drop_ms_}) +""",
        "probe_controller.cc periodic ALR probe",
    )


def received_rate_header(text):
    old = """  // Call when we receive a RTCP message with a ReceiveBlock.
  void UpdatePacketsLost(int packets_lost,"""
    text = replace_once(
        text,
        old,
        """  // What the receiver got over the last loss update's feedback, when it spans long enough.
  void UpdateReceivedRate(absl::optional<DataRate> received_rate) { received_rate_ = received_rate; }

"""
        + old,
        "send_side_bandwidth_estimation.h UpdatePacketsLost",
    )
    old = "  absl::optional<DataRate> acknowledged_rate_;\n"
    return replace_once(text, old, old + "  absl::optional<DataRate> received_rate_;\n", "send_side_bandwidth_estimation.h acknowledged_rate_")


def loss_based_backoff(text):
    old = """          new_bitrate =
              DataRate::bps((current_bitrate_.bps() *
                             static_cast<double>(512 - last_fraction_loss_)) /
                            512.0);
"""
    return replace_once(text, old, old + """          if (acknowledged_rate_ || received_rate_) {
            const DataRate arrived =
                acknowledged_rate_ && received_rate_
                    ? std::min(*acknowledged_rate_, *received_rate_)
                    : (acknowledged_rate_ ? *acknowledged_rate_ : *received_rate_);
            new_bitrate = std::min(
                new_bitrate,
                DataRate::bps((arrived.bps() *
                               static_cast<double>(512 - last_fraction_loss_)) /
                              512.0));
          }
""", "send_side_bandwidth_estimation.cc loss decrease")


# --- Audio first: what a transport's audio consumers send is taken off the estimate before the
# video consumers share it (docs/mediasoup-worker.md). Upstream gives video the whole estimate, as
# audio does not take part in the allocation; on a link that narrows to a few hundred kilobits
# the microphones' 40 kbit/s or so is then what overflows it, and a video layer that nearly fits
# is kept for seconds while the queue drops packets of both.


# --- A falling estimate acted on within 200 ms. Upstream tells the transport of a new estimate
# at once only when it fell by a quarter since the last update, otherwise once a second; an
# estimate that falls in steps of 15 % (libwebrtc's delay-based decrease) left the consumers on a
# layer the link no longer carried for up to a second after the estimate had said so.


def tcc_client_fast_decrease_header(text):
    old = "\t\tuint64_t lastAvailableBitrateEventAtMs{ 0u };\n"
    return replace_once(
        text,
        old,
        old + "\t\t// The estimate the transport was last told of.\n\t\tuint32_t lastNotifiedAvailableBitrate{ 0u };\n",
        "TransportCongestionControlClient.hpp lastAvailableBitrateEventAtMs (notified)",
    )


def tcc_client_fast_decrease(text):
    text = replace_once(
        text,
        """		// Also emit the event fast if we detect a high BWE value decrease.
		else if (this->bitrates.availableBitrate < previousAvailableBitrate * 0.75)""",
        """		// Also emit the event within 200 ms of any fall below what the transport was told.
		else if (
		  this->bitrates.availableBitrate < this->lastNotifiedAvailableBitrate &&
		  nowMs - this->lastAvailableBitrateEventAtMs >= 200u)
		{
			notify = true;
		}
		// Also emit the event fast if we detect a high BWE value decrease.
		else if (this->bitrates.availableBitrate < previousAvailableBitrate * 0.75)""",
        "TransportCongestionControlClient.cpp fast decrease",
    )
    return replace_once(
        text,
        """			this->lastAvailableBitrateEventAtMs = nowMs;

			this->listener->OnTransportCongestionControlClientBitrates(this, this->bitrates);""",
        """			this->lastAvailableBitrateEventAtMs = nowMs;
			this->lastNotifiedAvailableBitrate  = this->bitrates.availableBitrate;

			this->listener->OnTransportCongestionControlClientBitrates(this, this->bitrates);""",
        "TransportCongestionControlClient.cpp notified bitrate",
    )


def transport_audio_first(text):
    old = """		uint32_t availableBitrate = this->tccClient->GetAvailableBitrate();

		this->tccClient->RescheduleNextAvailableBitrateEvent();
"""
    new = """		uint32_t availableBitrate = this->tccClient->GetAvailableBitrate();

		this->tccClient->RescheduleNextAvailableBitrateEvent();

		// Audio goes first: what the consumers outside the allocation send now is not there for
		// video. At least 1 bps stays, so that every video consumer still keeps its lowest layer.
		{
			const uint64_t nowMs = DepLibUV::GetTimeMs();
			uint32_t audioBitrate{ 0u };

			for (auto& kv : this->mapConsumers)
			{
				auto* consumer = kv.second;

				if (consumer->GetKind() != RTC::Media::Kind::AUDIO || !consumer->IsActive())
				{
					continue;
				}

				for (auto* rtpStream : consumer->GetRtpStreams())
				{
					audioBitrate += rtpStream->GetBitrate(nowMs);
				}
			}

			availableBitrate = availableBitrate > audioBitrate ? availableBitrate - audioBitrate : 1u;
		}
"""
    return replace_once(text, old, new, "Transport.cpp DistributeAvailableOutgoingBitrate")


edit(f"{worker}/meson.build", main_meson)
edit(f"{worker}/src/RTC/DtlsTransport.cpp", dtls_bio_callback)
edit(f"{worker}/deps/libwebrtc/meson.build", libwebrtc_meson)
edit(f"{worker}/src/RTC/KeyFrameRequestManager.cpp", key_frame_retry)
edit(f"{worker}/include/RTC/SimulcastConsumer.hpp", simulcast_consumer_header)
edit(f"{worker}/src/RTC/SimulcastConsumer.cpp", simulcast_consumer)
edit(f"{worker}/include/RTC/Consumer.hpp", consumer_link_collapsed_header)
edit(f"{worker}/include/RTC/Transport.hpp", transport_link_collapsed_header)
edit(f"{worker}/include/RTC/SimulcastConsumer.hpp", simulcast_consumer_collapse_header)
edit(f"{worker}/src/RTC/SimulcastConsumer.cpp", simulcast_consumer_collapse)
edit(f"{worker}/include/RTC/TransportCongestionControlClient.hpp", tcc_client_header)
edit(f"{worker}/src/RTC/TransportCongestionControlClient.cpp", tcc_client)
edit(f"{worker}/deps/libwebrtc/libwebrtc/modules/congestion_controller/goog_cc/goog_cc_network_control.cc", goog_cc_loss_interval)
edit(f"{worker}/deps/libwebrtc/libwebrtc/modules/bitrate_controller/send_side_bandwidth_estimation.cc", loss_based_backoff)
edit(f"{worker}/deps/libwebrtc/libwebrtc/modules/congestion_controller/goog_cc/goog_cc_network_control.h", goog_cc_received_rate_header)
edit(f"{worker}/deps/libwebrtc/libwebrtc/modules/congestion_controller/goog_cc/goog_cc_network_control.cc", goog_cc_received_rate)
edit(f"{worker}/deps/libwebrtc/libwebrtc/modules/congestion_controller/goog_cc/goog_cc_network_control.cc", goog_cc_no_probe_after_lossy_drop)
edit(f"{worker}/deps/libwebrtc/libwebrtc/modules/congestion_controller/goog_cc/probe_controller.cc", alr_probe_after_drop)
edit(f"{worker}/deps/libwebrtc/libwebrtc/modules/bitrate_controller/send_side_bandwidth_estimation.h", received_rate_header)
edit(f"{worker}/src/RTC/Transport.cpp", transport_audio_first)
edit(f"{worker}/src/RTC/Transport.cpp", transport_link_collapsed)
edit(f"{worker}/include/RTC/TransportCongestionControlClient.hpp", tcc_client_fast_decrease_header)
edit(f"{worker}/src/RTC/TransportCongestionControlClient.cpp", tcc_client_fast_decrease)
