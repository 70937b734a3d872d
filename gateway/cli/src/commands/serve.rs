//! The server commands: `gateway` and `authz` (one runner), `origin`, `demo`, the demo
//! `upstream`, and `audit verify` (which opens the origin's storage).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};

use crate::demo;

/// The demo's working directory when `--dir` is not given.
pub fn demo_dir() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".cache/gatehouse/demo")
}

/// `gatehouse demo`: origin, gateway and demo upstream in one process.
pub fn demo(opts: demo::DemoOptions) -> Result<ExitCode> {
    let (admin, upstream) = (opts.admin, opts.upstream);
    let prepared = demo::prepare(&opts, &std::env::current_exe()?)?;
    let cfg = gatehouse_proxy::config::GatewayConfig::load(&prepared.gateway_config)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let _telemetry = {
        let _in = rt.enter();
        gatehouse_telemetry::init(&cfg.telemetry, "gatehouse-demo", false)?
    };
    rt.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let origin = tokio::spawn(gatehouse_origin::run(prepared.origin.clone(), async move {
            let _ = stop_rx.await;
        }));
        let l = tokio::net::TcpListener::bind(upstream).await.with_context(|| format!("listen {upstream}"))?;
        tokio::spawn(demo::upstream(l));
        let mut up = false;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(opts.origin).await.is_ok() {
                up = true;
                break;
            }
            if origin.is_finished() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        if !up {
            origin.await??;
            anyhow::bail!("the origin did not start on {}", opts.origin);
        }
        let walkthrough = demo::seed(&opts, &prepared).await?;
        let gw = tokio::spawn(gatehouse_proxy::run(cfg));
        // Print the walkthrough once the gateway has a bundle from the origin.
        for _ in 0..600 {
            if gatehouse_proxy_ready(admin).await || gw.is_finished() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        println!("{walkthrough}");
        let r = gw.await;
        let _ = stop_tx.send(());
        let _ = origin.await;
        r??;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `gatehouse upstream`: the demo upstream app alone.
pub fn upstream(listen: std::net::SocketAddr) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listen {listen}"))?;
        eprintln!("demo upstream on http://{listen}");
        demo::upstream(l).await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `gatehouse origin`: run a regional origin until SIGTERM or Ctrl-C.
pub fn origin(config: &Path, json_logs: bool) -> Result<ExitCode> {
    let cfg = gatehouse_origin::OriginConfig::load(config)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let _telemetry = {
        let _in = rt.enter();
        gatehouse_telemetry::init(&cfg.telemetry, "gatehouse-origin", json_logs)?
    };
    rt.block_on(gatehouse_origin::run(cfg, async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    }))?;
    Ok(ExitCode::SUCCESS)
}

/// `gatehouse audit verify`: check a tenant's hash-chained audit log.
pub fn audit_verify(config: &Path, tenant: &str) -> Result<ExitCode> {
    let cfg = gatehouse_origin::OriginConfig::load(config)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let app = gatehouse_origin::App::open(cfg).await?;
        let id = app.tenant_id(tenant).await?.ok_or_else(|| anyhow!("no tenant `{tenant}` homed in this region"))?;
        match gatehouse_origin::api::verify_tenant_audit(&app, &id).await? {
            gatehouse_origin::audit::Verdict::Intact(n) => {
                println!("audit log of {tenant}: intact ({n} records)");
                Ok(ExitCode::SUCCESS)
            }
            gatehouse_origin::audit::Verdict::Broken { seq, problem } => {
                println!("audit log of {tenant}: TAMPERED at record {seq}: {problem}");
                Ok(ExitCode::from(1))
            }
        }
    })
}

/// `gatehouse gateway` and `gatehouse authz`: one runner for whatever listeners the file
/// declares (`authz` insists on an `[authz]` listener).
pub fn gateway(config: &Path, json_logs: bool, authz: bool) -> Result<ExitCode> {
    let cfg = gatehouse_proxy::config::GatewayConfig::load(config)?;
    if authz && !cfg.authz.enabled() {
        anyhow::bail!(
            "{}: authz: set `http` or `grpc` under [authz] to run the authorization service",
            config.display()
        );
    }
    let threads = std::env::var("GATEHOUSE_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    // One thread: a current-thread runtime (no cross-thread wake-ups).
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    };
    let service = if authz { "gatehouse-authz" } else { "gatehouse-gateway" };
    let _telemetry = {
        let _in = rt.enter();
        gatehouse_telemetry::init(&cfg.telemetry, service, json_logs)?
    };
    rt.block_on(gatehouse_proxy::run(cfg))?;
    Ok(ExitCode::SUCCESS)
}

/// Whether the gateway's admin listener says it is ready (it holds a valid bundle).
async fn gatehouse_proxy_ready(admin: std::net::SocketAddr) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(admin).await else { return false };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if s.write_all(format!("GET /readyz HTTP/1.1\r\nhost: {admin}\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    buf.starts_with(b"HTTP/1.1 200")
}
