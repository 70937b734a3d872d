//! A minimal filter written against the WIT contract alone (no Gatehouse crates): it
//! denies any request without an `x-demo-key` header, and otherwise passes the context on.

wit_bindgen::generate!({ world: "filter", path: "../../wit" });

use gatehouse::policy::host;
use gatehouse::policy::types::Deny;

struct RequireHeader;

impl Guest for RequireHeader {
    fn load_policy(
        _bundle: Vec<u8>,
        _public_key: Vec<u8>,
        _secrets: Vec<u8>,
    ) -> Result<gatehouse::policy::loading::Loaded, String> {
        // This filter needs no policy and reads one header.
        Ok(gatehouse::policy::loading::Loaded { revision: 0, headers: Some(vec!["x-demo-key".into()]) })
    }

    fn check(req: RequestHead, ctx: Context) -> Verdict {
        if req.headers.iter().any(|(name, value)| name == "x-demo-key" && !value.is_empty()) {
            Verdict::Allow(ctx)
        } else {
            host::log(host::Level::Info, "request without x-demo-key");
            Verdict::Deny(Deny { status: 403, reason: "demo_key_missing".into(), headers: vec![], org: ctx.org })
        }
    }
}

export!(RequireHeader);
