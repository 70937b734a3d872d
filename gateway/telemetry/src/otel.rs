//! Traces over OTLP (HTTP/protobuf or gRPC): the `tracing` spans of Gatehouse's servers,
//! bridged by `tracing-opentelemetry` to the OpenTelemetry SDK, sampled (parent-based
//! ratio) and exported in batches by `opentelemetry-otlp`.
//!
//! The hosts (the gateway's front ends, the authorization service, the origin) make their
//! per-request spans only when [`active`] says tracing is on, so a server without
//! `[telemetry.otlp]` builds no span at all; they continue a client's W3C trace context
//! only from [`Active::trusts`]ed peers ([`adopt`]) and hand their own span on to the next
//! hop ([`outgoing`]).

mod config;
mod export;

use std::net::IpAddr;
use std::sync::OnceLock;

use gatehouse_core::net::cidr::Cidr;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;

pub use config::{OtlpConfig, PROTOCOLS};
pub use export::ExportError;

/// Longest `tracestate` continued (W3C: 512 characters is what a vendor may rely on).
const MAX_TRACESTATE: usize = 512;

/// What the hosts read per request while tracing is on.
#[derive(Debug)]
pub struct Active {
    trusted: Vec<Cidr>,
}

impl Active {
    /// Whether a client at `peer` may continue its own trace (its `traceparent` is believed).
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(peer))
    }
}

static ACTIVE: OnceLock<Active> = OnceLock::new();

/// Tracing's state when this process exports traces; `None` (one atomic load) when it
/// does not, and the hosts then make no span.
#[inline]
pub fn active() -> Option<&'static Active> {
    ACTIVE.get()
}

/// Flushes buffered spans and stops the exporter when dropped (so that a short process's
/// spans arrive).
pub struct Guard {
    provider: SdkTracerProvider,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "traces: flushing at shutdown failed");
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The sampler of `[telemetry.otlp]`: a trace that arrives from a trusted client keeps its
/// sampled flag; a new one is recorded with probability `ratio`.
pub fn sampler(ratio: f64) -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
}

/// The layer for the process's subscriber: spans of Gatehouse's own crates (`gatehouse*`
/// targets) and their events at INFO and above, exported to `config.endpoint`, as the
/// service `config.service_name` or `service`.
pub fn layer(config: &OtlpConfig, service: &str) -> anyhow::Result<(super::Boxed, Guard)> {
    let trusted = config.trusted()?;
    let runtime = export::runtime()?;
    let exporter = export::exporter(config, &runtime)?;
    let name = config.service_name.clone().unwrap_or_else(|| service.to_string());
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(name).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_sampler(sampler(config.sample_ratio))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("gatehouse");
    let own = tracing_subscriber::filter::filter_fn(|m| {
        m.target().starts_with("gatehouse") && (m.is_span() || *m.level() <= tracing::Level::INFO)
    });
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(own)
        .boxed();
    let _ = ACTIVE.set(Active { trusted });
    tracing::info!(
        endpoint = %config.export_url(),
        protocol = %config.protocol,
        sample_ratio = config.sample_ratio,
        "traces exported over OTLP"
    );
    Ok((layer, Guard { provider, runtime: Some(runtime) }))
}

/// The incoming W3C trace-context fields.
struct Incoming<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl Extractor for Incoming<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.traceparent,
            "tracestate" => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// The remote parent a `traceparent` (and `tracestate`) names, when it is valid W3C trace
/// context (an oversized `tracestate` is left out).
pub fn remote_parent(traceparent: &[u8], tracestate: Option<&[u8]>) -> Option<opentelemetry::Context> {
    let traceparent = std::str::from_utf8(traceparent).ok()?.trim();
    if traceparent.len() > 128 {
        return None;
    }
    let tracestate = tracestate.and_then(|v| std::str::from_utf8(v).ok()).filter(|v| v.len() <= MAX_TRACESTATE);
    let cx = TraceContextPropagator::new().extract(&Incoming { traceparent: Some(traceparent), tracestate });
    cx.span().span_context().is_valid().then_some(cx)
}

/// Continue the client's trace on `span` (not yet entered) when tracing is on, `peer` is
/// trusted and it sent valid trace context. Whether it did.
pub fn adopt(span: &tracing::Span, peer: IpAddr, traceparent: Option<&[u8]>, tracestate: Option<&[u8]>) -> bool {
    let Some(active) = active() else { return false };
    let Some(parent) = traceparent.filter(|_| active.trusts(peer)).and_then(|tp| remote_parent(tp, tracestate)) else {
        return false;
    };
    span.set_parent(parent).is_ok()
}

/// The W3C trace-context fields that make a span the parent of the next hop's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// `traceparent`.
    pub traceparent: String,
    /// `tracestate`, when the trace carries one.
    pub tracestate: Option<String>,
}

impl Injector for Outgoing {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "traceparent" => self.traceparent = value,
            "tracestate" if !value.is_empty() => self.tracestate = Some(value),
            _ => {}
        }
    }
}

/// The fields naming `span` as the parent of a downstream request (`None` when tracing
/// is off or the span is not traced).
pub fn outgoing(span: &tracing::Span) -> Option<Outgoing> {
    active()?;
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut out = Outgoing { traceparent: String::new(), tracestate: None };
    TraceContextPropagator::new().inject_context(&cx, &mut out);
    (!out.traceparent.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanKind, TraceId};
    use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};

    const SAMPLED: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const UNSAMPLED: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

    fn decide(ratio: f64, parent: Option<&opentelemetry::Context>, trace: u128) -> SamplingDecision {
        sampler(ratio)
            .should_sample(parent, TraceId::from(trace), "gatehouse.request", &SpanKind::Server, &[], &[])
            .decision
    }

    #[test]
    fn new_traces_follow_the_ratio_continued_ones_their_flag() {
        let sampled = remote_parent(SAMPLED, None).expect("valid");
        let unsampled = remote_parent(UNSAMPLED, None).expect("valid");
        assert_eq!(decide(0.0, None, 7), SamplingDecision::Drop);
        assert_eq!(decide(1.0, None, 7), SamplingDecision::RecordAndSample);
        assert_eq!(decide(0.0, Some(&sampled), 7), SamplingDecision::RecordAndSample);
        assert_eq!(decide(1.0, Some(&unsampled), 7), SamplingDecision::Drop);
        // A ratio keeps about its share of new traces (ids spread over the range).
        let kept = (0..1000u128)
            .filter(|i| {
                decide(0.25, None, i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)) != SamplingDecision::Drop
            })
            .count();
        assert!((150..350).contains(&kept), "{kept} of 1000 kept at 0.25");
    }

    #[test]
    fn remote_parents_must_be_valid_trace_context() {
        let cx = remote_parent(SAMPLED, Some(b"vendor=abc")).expect("valid");
        let sc = cx.span().span_context().clone();
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_state().header(), "vendor=abc");
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"garbage",
            b"",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"\xff\xfe",
        ] {
            assert!(remote_parent(bad, None).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = format!("v={}", "a".repeat(600));
        let cx = remote_parent(SAMPLED, Some(long.as_bytes())).expect("the parent stays");
        assert_eq!(cx.span().span_context().trace_state().header(), "", "an oversized tracestate is left out");
    }

    #[test]
    fn trust_is_by_peer_address() {
        let a = Active { trusted: vec!["10.0.0.0/8".parse().expect("cidr"), "::1".parse().expect("cidr")] };
        assert!(a.trusts("10.9.8.7".parse().expect("ip")));
        assert!(a.trusts("::1".parse().expect("ip")));
        assert!(!a.trusts("11.0.0.1".parse().expect("ip")));
        assert!(!a.trusts("127.0.0.1".parse().expect("ip")));
        let none = Active { trusted: Vec::new() };
        assert!(!none.trusts("127.0.0.1".parse().expect("ip")), "nobody is trusted by default");
    }
}
