//! The OTLP exporter and the runtime it runs on. The SDK's batch processor exports from a
//! thread of its own; both OTLP clients (reqwest, tonic) need a Tokio runtime for their
//! I/O. The process's runtime will not do: the gateway may run a current-thread runtime,
//! and the guard flushes at shutdown, blocking the thread that would drive it. So the
//! exporter gets a one-worker runtime of its own, and every export runs there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use super::config::OtlpConfig;

/// Why the exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The exporter's own runtime could not start.
    #[error("telemetry.otlp: cannot start the exporter's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The OTLP exporter refused its settings.
    #[error("telemetry.otlp: cannot build the {protocol} exporter: {source}")]
    Build {
        /// `http/protobuf` or `grpc`.
        protocol: String,
        /// The exporter's reason.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// A header name or value the gRPC metadata refuses.
    #[error("telemetry.otlp.headers.{0}: not usable as gRPC metadata")]
    Metadata(String),
}

/// The one-worker runtime every export runs on.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, ExportError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gatehouse-otlp")
        .enable_all()
        .build()
        .map_err(ExportError::Runtime)
}

/// The OTLP span exporter `config` asks for, its I/O on `rt`.
pub(super) fn exporter(config: &OtlpConfig, rt: &tokio::runtime::Runtime) -> Result<OnRuntime, ExportError> {
    let timeout = Duration::from_millis(config.timeout_ms);
    let built = |source| ExportError::Build { protocol: config.protocol.clone(), source };
    // tonic's lazy channel spawns its worker on the runtime in context.
    let _in = rt.enter();
    let inner = if config.protocol == "grpc" {
        let mut headers = http::HeaderMap::new();
        for (k, v) in &config.headers {
            let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|_| ExportError::Metadata(k.clone()))?;
            let value = http::HeaderValue::from_str(v).map_err(|_| ExportError::Metadata(k.clone()))?;
            headers.insert(name, value);
        }
        let metadata = opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers);
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.export_url())
            .with_timeout(timeout)
            .with_metadata(metadata)
            .build()
            .map_err(built)?
    } else {
        let headers: HashMap<String, String> = config.headers.clone().into_iter().collect();
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(config.export_url())
            .with_timeout(timeout)
            .with_headers(headers)
            .build()
            .map_err(built)?
    };
    Ok(OnRuntime { inner: Arc::new(inner), handle: rt.handle().clone() })
}

/// An exporter whose exports run on a runtime of their own (see the module's doc).
#[derive(Debug)]
pub(super) struct OnRuntime {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    handle: tokio::runtime::Handle,
}

impl SpanExporter for OnRuntime {
    fn export(&self, batch: Vec<SpanData>) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let inner = self.inner.clone();
        let task = self.handle.spawn(async move { inner.export(batch).await });
        async move {
            match task.await {
                Ok(r) => r,
                Err(e) => Err(OTelSdkError::InternalFailure(format!("export task: {e}"))),
            }
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _in = self.handle.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _in = self.handle.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called once, before the first export: the exporter is not shared yet.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}
