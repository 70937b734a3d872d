//! A WASI 0.3 host for the Spin gateway component, for tests: wasmtime 48 with
//! `wasi:http@0.3.0`, WASI 0.2/0.3, `spin:variables` from a map and `spin:key-value`
//! (store `default`) in memory. Each call instantiates the component afresh from an
//! `InstancePre`, as a Spin host may; key-value state is shared across calls.
//!
//! For the Spin middleware form ([`SpinHost::new_middleware`]) the host also offers the
//! `wasi:http/handler@0.3.0` import — the next handler of the chain — and forwards what
//! the middleware passes on to an app on loopback.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::component::{Accessor, Component, HasData, Linker, Resource, ResourceTable};
use wasmtime::{format_err, Config, Engine, Result, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiHttp, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// The `wasi:http/handler@0.3.0` import of the middleware form.
mod next {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "gatehouse:spin-test-host/next-handler",
        imports: { default: async | store | trappable },
        with: { "wasi:http/types": wasmtime_wasi_http::p3::bindings::http::types },
        trappable_error_type: {
            "wasi:http/types.error-code" => wasmtime_wasi::TrappableError<wasmtime_wasi_http::p3::bindings::http::types::ErrorCode>,
        },
    });
}

impl<T> next::wasi::http::handler::HostWithStore<T> for WasiHttp {
    /// The next handler: the same path as an outbound request, which the hooks send to
    /// the app.
    async fn handle(
        store: &Accessor<T, Self>,
        request: Resource<wasmtime_wasi_http::p3::Request>,
    ) -> Result<
        Resource<wasmtime_wasi_http::p3::Response>,
        wasmtime_wasi::TrappableError<wasmtime_wasi_http::p3::bindings::http::types::ErrorCode>,
    > {
        <WasiHttp as wasmtime_wasi_http::p3::bindings::http::client::HostWithStore<T>>::send(store, request).await
    }
}

impl next::wasi::http::handler::Host for WasiHttpCtxView<'_> {}

/// Outbound requests as usual, or — in the middleware form — every request the component
/// passes on goes to the app at `next` (path and headers kept).
#[derive(Default)]
struct Hooks {
    next: Option<String>,
}

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        mut request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn std::future::Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        _ = fut;
        if let Some(next) = &self.next {
            let path = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
            if let Ok(uri) = format!("http://{next}{path}").parse() {
                *request.uri_mut() = uri;
            }
        }
        Box::new(async move {
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
            ))
        })
    }
}

wasmtime::component::bindgen!({
    path: "wit",
    world: "gatehouse:spin-test-host/spin-imports",
    with: { "spin:key-value/key-value.store": KvStore },
});

use spin::key_value::key_value;
use spin::variables::variables;

/// A handle on the in-memory key-value store.
pub struct KvStore;

type Kv = Arc<Mutex<HashMap<String, Vec<u8>>>>;

struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: Hooks,
    table: ResourceTable,
    vars: HashMap<String, String>,
    kv: Kv,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

struct Spin;
impl HasData for Spin {
    type Data<'a> = &'a mut State;
}

impl variables::Host for &mut State {}
impl<T: Send> variables::HostWithStore<T> for Spin {
    async fn get(store: &Accessor<T, Self>, name: String) -> Result<String, variables::Error> {
        store.with(|mut s| s.get().vars.get(&name).cloned().ok_or(variables::Error::Undefined(name)))
    }
}

impl key_value::Host for &mut State {}
impl key_value::HostStore for &mut State {
    fn drop(&mut self, rep: Resource<KvStore>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}
impl<T: Send> key_value::HostStoreWithStore<T> for Spin {
    async fn open(store: &Accessor<T, Self>, label: String) -> Result<Resource<KvStore>, key_value::Error> {
        if label != "default" {
            return Err(key_value::Error::NoSuchStore);
        }
        store.with(|mut s| s.get().table.push(KvStore).map_err(|e| key_value::Error::Other(e.to_string())))
    }
    async fn get(
        store: &Accessor<T, Self>,
        _: Resource<KvStore>,
        key: String,
    ) -> Result<Option<Vec<u8>>, key_value::Error> {
        store.with(|mut s| Ok(s.get().kv.lock().unwrap().get(&key).cloned()))
    }
    async fn set(
        store: &Accessor<T, Self>,
        _: Resource<KvStore>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), key_value::Error> {
        store.with(|mut s| {
            s.get().kv.lock().unwrap().insert(key, value);
            Ok(())
        })
    }
    async fn delete(store: &Accessor<T, Self>, _: Resource<KvStore>, key: String) -> Result<(), key_value::Error> {
        store.with(|mut s| {
            s.get().kv.lock().unwrap().remove(&key);
            Ok(())
        })
    }
    async fn exists(store: &Accessor<T, Self>, _: Resource<KvStore>, key: String) -> Result<bool, key_value::Error> {
        store.with(|mut s| Ok(s.get().kv.lock().unwrap().contains_key(&key)))
    }
    async fn get_keys(
        _store: &Accessor<T, Self>,
        _: Resource<KvStore>,
    ) -> (wasmtime::component::StreamReader<String>, wasmtime::component::FutureReader<Result<(), key_value::Error>>)
    {
        // The gateway component never lists keys.
        panic!("get-keys is not offered by this test host")
    }
}

/// What the component answered.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The Spin component, compiled, with its variables and key-value store.
pub struct SpinHost {
    engine: Engine,
    pre: ServicePre<State>,
    /// Application variables.
    pub vars: HashMap<String, String>,
    kv: Kv,
    /// Middleware form: where the next handler (the app) listens.
    next: Option<String>,
}

impl SpinHost {
    /// Compile `wasm` (a WASI 0.3 HTTP component).
    pub fn new(wasm: &std::path::Path) -> Result<SpinHost> {
        SpinHost::build(wasm, None)
    }

    /// Compile the middleware form of the component: its `wasi:http/handler` import (the
    /// next handler of the Spin chain) reaches the app listening at `next` (`host:port`).
    pub fn new_middleware(wasm: &std::path::Path, next: &str) -> Result<SpinHost> {
        SpinHost::build(wasm, Some(next.to_string()))
    }

    fn build(wasm: &std::path::Path, next: Option<String>) -> Result<SpinHost> {
        let mut config = Config::new();
        config.wasm_component_model_async(true);
        let engine = Engine::new(&config)?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        SpinImports::add_to_linker::<_, Spin>(&mut linker, |s| s)?;
        if next.is_some() {
            next::wasi::http::handler::add_to_linker::<_, WasiHttp>(&mut linker, State::http)?;
        }
        let component = Component::from_file(&engine, wasm)?;
        let pre = ServicePre::new(linker.instantiate_pre(&component)?)?;
        Ok(SpinHost { engine, pre, vars: HashMap::new(), kv: Default::default(), next })
    }

    /// The key-value store's entries, sorted by key.
    pub fn kv_entries(&self) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = self.kv.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort();
        v
    }

    /// Change the key-value store's entries (as another writer of the store could).
    pub fn kv_edit(&self, f: impl FnOnce(&mut HashMap<String, Vec<u8>>)) {
        f(&mut self.kv.lock().unwrap());
    }

    /// One request through a fresh instance.
    pub async fn call(&self, req: http::Request<Full<Bytes>>) -> Result<Reply> {
        let mut store = Store::new(
            &self.engine,
            State {
                wasi: WasiCtx::builder().inherit_stderr().build(),
                http: WasiHttpCtx::new(),
                hooks: Hooks { next: self.next.clone() },
                table: ResourceTable::new(),
                vars: self.vars.clone(),
                kv: self.kv.clone(),
            },
        );
        let service = self.pre.instantiate_async(&mut store).await?;
        let req = req.map(|b| b.map_err(|e: Infallible| -> wasmtime_wasi_http::Error { match e {} }));
        let (request, io) = wasmtime_wasi_http::p3::Request::from_http(wasmtime_wasi_http::default_hooks(), req);
        store
            .run_concurrent(async move |acc| -> Result<Reply> {
                let resp = service.handle(acc, request).await?.map_err(|e| format_err!("guest error {e:?}"))?;
                let resp = acc.with(|mut s| resp.into_http(&mut s, io))?;
                let (parts, body) = resp.into_parts();
                let body = body.collect().await.map_err(|e| format_err!("body {e:?}"))?.to_bytes();
                Ok(Reply {
                    status: parts.status.as_u16(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
                        .collect(),
                    body,
                })
            })
            .await?
    }
}

/// A request as Spin's HTTP trigger hands it over: absolute URI from the `Host` header,
/// and `spin-client-addr` naming the TCP peer (`ip:port`).
pub fn spin_request(
    method: &str,
    host: &str,
    path_and_query: &str,
    peer: &str,
    headers: &[(String, String)],
) -> http::Request<Full<Bytes>> {
    let mut b =
        http::Request::builder().method(method).uri(format!("http://{host}{path_and_query}")).header("host", host);
    let addr = if peer.contains(':') { format!("[{peer}]:4000") } else { format!("{peer}:4000") };
    b = b.header("spin-client-addr", addr);
    for (k, v) in headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(Full::new(Bytes::new())).expect("request")
}
