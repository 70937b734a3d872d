//! OTLP receivers for the trace tests, decoding what they get with the OpenTelemetry
//! protos: `POST /v1/traces` (HTTP/protobuf) and the gRPC `TraceService`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// One exported span and the `service.name` of the process that sent it.
#[derive(Clone, Debug)]
pub struct Got {
    pub service: String,
    pub span: Span,
}

impl Got {
    /// An attribute's value as text (strings as they are, integers in decimal).
    pub fn attr(&self, key: &str) -> Option<String> {
        self.span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| {
            match v.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                Value::IntValue(i) => Some(i.to_string()),
                Value::BoolValue(b) => Some(b.to_string()),
                Value::DoubleValue(d) => Some(d.to_string()),
                _ => None,
            }
        })
    }

    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    pub fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// Every attribute value as text, for the no-secrets checks.
    pub fn all_text(&self) -> String {
        format!("{} {:?}", self.span.name, self.span.attributes)
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a receiver has got.
#[derive(Clone, Default)]
pub struct Received {
    spans: Arc<Mutex<Vec<Got>>>,
}

impl Received {
    fn take(&self, req: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().unwrap();
        for rs in req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push(Got { service: service.clone(), span });
                }
            }
        }
    }

    pub fn spans(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    /// Wait (at most `within`) until `done` holds for the spans received.
    pub async fn wait_for(&self, within: Duration, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let t = Instant::now();
        loop {
            let got = self.spans();
            if done(&got) {
                return got;
            }
            assert!(t.elapsed() < within, "{what}: not received within {within:?}; got {got:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) on a loopback port.
pub async fn http_receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Received::default();
    let r = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let r = r.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let r = r.clone();
                    async move { Ok::<_, Infallible>(export_http(req, &r).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (addr, got)
}

async fn export_http(req: Request<Incoming>, r: &Received) -> Response<Full<Bytes>> {
    let status = |s: u16| Response::builder().status(s).body(Full::new(Bytes::new())).unwrap();
    let protobuf = req.headers().get("content-type").is_some_and(|v| v.as_bytes() == b"application/x-protobuf");
    if req.method() != "POST" || req.uri().path() != "/v1/traces" || !protobuf {
        return status(404);
    }
    let Ok(body) = req.into_body().collect().await else { return status(400) };
    let Ok(decoded) = ExportTraceServiceRequest::decode(body.to_bytes()) else { return status(400) };
    r.take(decoded);
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    Response::builder().header("content-type", "application/x-protobuf").body(Full::new(Bytes::from(answer))).unwrap()
}

struct Collector(Received);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.take(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver (`TraceService/Export`) on a loopback port.
pub async fn grpc_receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Received::default();
    let service = TraceServiceServer::new(Collector(got.clone()));
    tokio::spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let _ = tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await;
    });
    (addr, got)
}
