//! A WASI 0.3 host for the Spin gateway component, for tests: wasmtime 48 with
//! `wasi:http@0.3.0`, WASI 0.2/0.3, `spin:variables` from a map and `spin:key-value`
//! (store `default`) in memory. Each call instantiates the component afresh from an
//! `InstancePre`, as a Spin host may; key-value state is shared across calls.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::component::{Accessor, Component, HasData, Linker, Resource, ResourceTable};
use wasmtime::{format_err, Config, Engine, Result, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

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
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: Default::default() }
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
}

impl SpinHost {
    /// Compile `wasm` (a WASI 0.3 HTTP component).
    pub fn new(wasm: &std::path::Path) -> Result<SpinHost> {
        let mut config = Config::new();
        config.wasm_component_model_async(true);
        let engine = Engine::new(&config)?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        SpinImports::add_to_linker::<_, Spin>(&mut linker, |s| s)?;
        let component = Component::from_file(&engine, wasm)?;
        let pre = ServicePre::new(linker.instantiate_pre(&component)?)?;
        Ok(SpinHost { engine, pre, vars: HashMap::new(), kv: Default::default() })
    }

    /// One request through a fresh instance.
    pub async fn call(&self, req: http::Request<Full<Bytes>>) -> Result<Reply> {
        let mut store = Store::new(
            &self.engine,
            State {
                wasi: WasiCtx::builder().inherit_stderr().build(),
                http: WasiHttpCtx::new(),
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
