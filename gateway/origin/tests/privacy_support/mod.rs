//! Helpers of the privacy tests: HTTP from a chosen loopback address (the person's
//! requests come from `127.0.0.77`, which the origin records as the peer), a scan of
//! every file under a directory for byte strings, and the invitation link of a mailed
//! `.eml` file.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;

/// One JSON request from `local` (an address on loopback) with an optional bearer token
/// and `user_agent`; (status, JSON or `null`).
pub async fn js_from(
    local: &str,
    user_agent: &str,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let uri: hyper::Uri = url.parse().unwrap();
    let port = uri.port_u16().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(uri.path_and_query().unwrap().as_str())
        .header("host", format!("127.0.0.1:{port}"))
        .header("user-agent", user_agent);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let data = match &body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            v.to_string()
        }
        None => String::new(),
    };
    let resp = send.send_request(b.body(Full::new(Bytes::from(data))).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Every file under `dir` (recursively).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// For each of `needles`, the files under `dir` that contain it (byte for byte).
pub fn scan(dir: &Path, needles: &[&str]) -> Vec<(String, Vec<PathBuf>)> {
    let files: Vec<(PathBuf, Vec<u8>)> =
        files_under(dir).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    needles
        .iter()
        .map(|n| {
            let hits = files
                .iter()
                .filter(|(_, b)| b.windows(n.len()).any(|w| w == n.as_bytes()))
                .map(|(p, _)| p.clone())
                .collect();
            (n.to_string(), hits)
        })
        .collect()
}

/// The invitation token (`ghi_…`) in the newest `.eml` under `mail` addressed to `to`
/// (quoted-printable soft breaks and `=3D` undone).
pub fn invitation_token(mail: &Path, to: &str) -> String {
    let mut emls: Vec<PathBuf> =
        files_under(mail).into_iter().filter(|p| p.extension().is_some_and(|e| e == "eml")).collect();
    emls.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    for p in emls.iter().rev() {
        let text = std::fs::read_to_string(p).unwrap().replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
        if !text.contains(to) {
            continue;
        }
        if let Some(i) = text.find("ghi_") {
            let tok: String =
                text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
            return tok;
        }
    }
    panic!("no invitation to {to} under {}", mail.display());
}
