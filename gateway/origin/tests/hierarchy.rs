//! End-to-end tests of hierarchical organisations (issue 15, part E): a real origin on
//! loopback with real libSQL files. Parent links (cycles, depth, audit), a parent's
//! owners and admins on a child's admin API (and a child's admin on neither its parent
//! nor its siblings), narrowing-only policy inheritance in both directions (through the
//! effective-policy route, the signed bundle and the sign-in path), team-granted roles
//! through nested teams, role templates, synced and forked, and the edge's engine run on
//! the signed bundle (a child's effective IP rules, `team = …` through a parent team).

use std::path::Path;

use serde_json::{json, Value};

mod support;
use support::origin::{claims, free_port, js, Origin, EDGE, OPERATOR, OWNER_PASSWORD};

const PASSWORD: &str = "user password 12";

async fn start(root: &Path) -> Origin {
    let port = free_port();
    let toml = support::origin::config("eu-west", port, "127.0.0.1", &[("eu-west", port)]);
    support::origin::launch(&root.join("eu-west"), port, format!("http://127.0.0.1:{port}"), &toml).await
}

/// Create organisation `slug` (tier enterprise) under `parent`; (status, answer).
async fn org(o: &Origin, slug: &str, parent: Option<&str>) -> (u16, Value) {
    let body = json!({ "slug": slug, "name": slug, "tier": "enterprise", "owner_email": format!("owner@{slug}.test"),
        "owner_password": OWNER_PASSWORD, "parent": parent });
    js("POST", &format!("{}/v1/orgs", o.url), Some(OPERATOR), Some(body)).await
}

/// The access token of a password sign-in (which must succeed).
async fn token(o: &Origin, slug: &str, email: &str, password: &str) -> String {
    let (s, v) = support::origin::sign_in(o, slug, email, password, &[]).await;
    assert_eq!(s, 200, "{slug} {email}: {v}");
    v["access_token"].as_str().unwrap().to_string()
}

async fn owner(o: &Origin, slug: &str) -> String {
    token(o, slug, &format!("owner@{slug}.test"), OWNER_PASSWORD).await
}

/// `method /v1/orgs/{slug}{path}` with `tok`; (status, answer).
async fn api(o: &Origin, method: &str, slug: &str, path: &str, tok: &str, body: Option<Value>) -> (u16, Value) {
    js(method, &format!("{}/v1/orgs/{slug}{path}", o.url), Some(tok), body).await
}

/// A user of `slug` with `role`; their id.
async fn user(o: &Origin, slug: &str, tok: &str, email: &str, role: &str) -> String {
    let body = json!({ "email": email, "password": PASSWORD, "role": role });
    let (s, v) = api(o, "POST", slug, "/users", tok, Some(body)).await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// `tok` adds a viewer `email` to `slug`; (status, answer).
async fn add_viewer(o: &Origin, slug: &str, tok: &str, email: &str) -> (u16, Value) {
    api(o, "POST", slug, "/users", tok, Some(json!({ "email": email, "password": PASSWORD, "role": "viewer" }))).await
}

/// The audit records of `slug` with action prefix `action`.
async fn audit(o: &Origin, slug: &str, action: &str) -> Vec<Value> {
    let (s, v) = api(o, "GET", slug, &format!("/audit?action={action}&limit=500"), OPERATOR, None).await;
    assert_eq!(s, 200, "{v}");
    v["items"].as_array().unwrap().clone()
}

/// The `after` of an audit record (stored as JSON text).
fn after(record: &Value) -> Value {
    record["after"].as_str().map(|t| serde_json::from_str(t).unwrap()).unwrap_or(Value::Null)
}

fn code(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_default()
}

/// The organisation `slug` of the region's signed bundle, opened as an edge does.
async fn bundle_org(o: &Origin, slug: &str) -> gatehouse_core::policy::Org {
    let (s, _, body) =
        support::origin::call("GET", &format!("{}/v1/bundles/eu-west", o.url), Some(EDGE), None, &[]).await;
    assert_eq!(s, 200);
    let pinned = jwt_simple::prelude::Ed25519PublicKey::from_pem(&o.bundle_public_pem).unwrap().to_bytes();
    let pinned: [u8; 32] = pinned.try_into().unwrap();
    let b = gatehouse_core::bundle::open(&body, &pinned, gatehouse_origin::now() as u64).unwrap();
    b.policy.orgs[slug].clone()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

fn cidrs(list: &[gatehouse_core::net::Cidr]) -> Vec<String> {
    list.iter().map(|c| c.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_links_and_a_parents_admins_on_its_children() {
    let root = tempfile::tempdir().unwrap();
    let o = &start(root.path()).await;
    assert_eq!(org(o, "acme", None).await.0, 201);
    let (s, v) = org(o, "kid", Some("acme")).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(org(o, "sib", Some("acme")).await.0, 201);
    assert_eq!(org(o, "grand", None).await.0, 201);
    let (s, v) = org(o, "orphan", Some("nobody")).await;
    assert_eq!((s, code(&v)), (404, "parent_not_found"), "{v}");
    let (s, v) = js("GET", &format!("{}/v1/orgs?limit=50", o.url), Some(OPERATOR), None).await;
    assert!(s == 200 && !v.to_string().contains("orphan"), "a refused parent creates nothing: {v}");

    // Attaching an existing organisation (operator only), audited in both logs.
    let parent_of = |slug: &str| format!("{}/v1/orgs/{slug}/parent", o.url);
    let acme_owner = owner(o, "acme").await;
    let (s, v) = js("PUT", &parent_of("grand"), Some(&acme_owner), Some(json!({ "parent": "kid" }))).await;
    assert_eq!((s, code(&v)), (403, "wrong_tenant"), "not (yet) acme's: {v}");
    let grand_owner = owner(o, "grand").await;
    let (s, v) = js("PUT", &parent_of("grand"), Some(&grand_owner), Some(json!({ "parent": "kid" }))).await;
    assert_eq!((s, code(&v)), (403, "operator_only"), "{v}");
    let (s, v) = js("PUT", &parent_of("grand"), None, Some(json!({ "parent": "kid" }))).await;
    assert_eq!((s, code(&v)), (401, "credential_missing"), "{v}");
    let (s, v) = js("PUT", &parent_of("grand"), Some(OPERATOR), Some(json!({ "parent": "kid", "x": 1 }))).await;
    assert_eq!((s, code(&v)), (400, "invalid_body"), "{v}");
    let (s, v) = js("PUT", &parent_of("grand"), Some(OPERATOR), Some(json!({ "parent": "kid" }))).await;
    assert_eq!(s, 200, "{v}");
    let set = audit(o, "grand", "org.parent_set").await;
    assert_eq!(set.len(), 1);
    assert_eq!((set[0]["actor"].as_str(), after(&set[0])["parent"].as_str()), (Some("operator"), Some("kid")));
    assert_eq!(audit(o, "kid", "org.parent_set").await.len(), 2, "kid's own attachment and grand's");
    assert_eq!(audit(o, "acme", "org.parent_set").await.len(), 2, "kid and sib");
    let (s, v) = api(o, "GET", "acme", "/children", &acme_owner, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["items"].as_array().unwrap().iter().map(|c| c["slug"].as_str().unwrap()).collect::<Vec<_>>(),
        ["kid", "sib"]
    );

    // No cycles, at most four organisations in a chain.
    for (child, parent) in [("acme", "grand"), ("acme", "acme"), ("kid", "grand")] {
        let (s, v) = js("PUT", &parent_of(child), Some(OPERATOR), Some(json!({ "parent": parent }))).await;
        assert_eq!((s, code(&v)), (409, "hierarchy_cycle"), "{child} under {parent}: {v}");
    }
    assert_eq!(org(o, "deep", Some("grand")).await.0, 201, "acme > kid > grand > deep");
    let (s, v) = org(o, "deeper", Some("deep")).await;
    assert_eq!((s, code(&v)), (409, "hierarchy_too_deep"), "{v}");
    assert_eq!(org(o, "loose", None).await.0, 201);
    assert_eq!(org(o, "loose-kid", Some("loose")).await.0, 201);
    let (s, v) = js("PUT", &parent_of("loose"), Some(OPERATOR), Some(json!({ "parent": "grand" }))).await;
    assert_eq!((s, code(&v)), (409, "hierarchy_too_deep"), "a subtree counts with its height: {v}");

    // The parent's owner administers the child and the grandchild, named as the parent's.
    let (s, v) = api(o, "GET", "kid", "/users", &acme_owner, None).await;
    assert_eq!(s, 200, "{v}");
    let made = user(o, "kid", &acme_owner, "made@kid.test", "viewer").await;
    let acme_owner_id = claims(&acme_owner)["sub"].as_str().unwrap().to_string();
    let rec = audit(o, "kid", "user.create").await.into_iter().find(|r| r["target"] == format!("user:{made}")).unwrap();
    assert_eq!(rec["actor"].as_str(), Some(format!("user:{acme_owner_id}@acme").as_str()), "{rec}");
    assert_eq!(api(o, "GET", "grand", "/users", &acme_owner, None).await.0, 200);
    // An admin of the parent too; a viewer of the parent is refused.
    let admin = user(o, "acme", &acme_owner, "ada@acme.test", "admin").await;
    let _ = user(o, "acme", &acme_owner, "vic@acme.test", "viewer").await;
    let ada = token(o, "acme", "ada@acme.test", PASSWORD).await;
    let vic = token(o, "acme", "vic@acme.test", PASSWORD).await;
    assert_eq!(api(o, "GET", "kid", "/users", &ada, None).await.0, 200);
    let (s, v) = api(o, "GET", "kid", "/users", &vic, None).await;
    assert_eq!((s, code(&v)), (403, "wrong_tenant"), "{v}");
    // A team of the parent that grants admin admits its members too.
    let (_, team) = api(o, "POST", "acme", "/teams", &acme_owner, Some(json!({ "name": "platform" }))).await;
    let team = team["id"].as_str().unwrap().to_string();
    let vic_id = claims(&vic)["sub"].as_str().unwrap().to_string();
    assert_eq!(api(o, "PUT", "acme", &format!("/teams/{team}/members/{vic_id}"), &acme_owner, None).await.0, 204);
    let (s, v) =
        api(o, "PUT", "acme", &format!("/teams/{team}/roles"), &acme_owner, Some(json!({ "roles": ["admin"] }))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(api(o, "GET", "kid", "/users", &vic, None).await.0, 200, "roles are read live in the parent");
    // The parent's session must be live: once it ends, the child refuses it too.
    let (s, v) = api(o, "DELETE", "acme", &format!("/users/{admin}/sessions"), &acme_owner, None).await;
    assert!(s == 200 || s == 204, "{v}");
    let (s, v) = api(o, "GET", "kid", "/users", &ada, None).await;
    assert_eq!((s, code(&v)), (401, "session_revoked"), "{v}");

    // A child's owner has no power over its parent or its siblings; over its own child, yes.
    let kid_owner = owner(o, "kid").await;
    for other in ["acme", "sib"] {
        let (s, v) = api(o, "GET", other, "/users", &kid_owner, None).await;
        assert_eq!((s, code(&v)), (403, "wrong_tenant"), "{other}: {v}");
        let (s, v) = api(o, "PUT", other, "/policy", &kid_owner, Some(json!({ "policy": {} }))).await;
        assert_eq!((s, code(&v)), (403, "wrong_tenant"), "{other}: {v}");
    }
    assert_eq!(api(o, "GET", "grand", "/users", &kid_owner, None).await.0, 200);
    // The operator-only routes stay the operator's.
    let (s, v) = js("PUT", &parent_of("kid"), Some(&acme_owner), Some(json!({ "parent": null }))).await;
    assert_eq!((s, code(&v)), (403, "operator_only"), "{v}");

    // Detached, the former parent's owner is a stranger again.
    let (s, v) = js("PUT", &parent_of("grand"), Some(OPERATOR), Some(json!({ "parent": null }))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api(o, "GET", "grand", "/users", &acme_owner, None).await;
    assert_eq!((s, code(&v)), (403, "wrong_tenant"), "{v}");
    assert_eq!(api(o, "GET", "grand", "/users", &kid_owner, None).await.1["error"], "wrong_tenant");
    let last = audit(o, "kid", "org.parent_set").await;
    assert!(last.iter().any(|r| r["target"] == "org:grand" && after(r)["parent"].is_null()), "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_is_inherited_narrowed_and_never_widened() {
    let root = tempfile::tempdir().unwrap();
    let o = &start(root.path()).await;
    assert_eq!(org(o, "acme", None).await.0, 201);
    assert_eq!(org(o, "kid", Some("acme")).await.0, 201);
    let (acme, kid) = (owner(o, "acme").await, owner(o, "kid").await);
    let kid_user = user(o, "kid", &kid, "ann@kid.test", "viewer").await;
    assert!(!kid_user.is_empty());

    // The parent's rules reach the child.
    let parent_policy = json!({ "policy": { "ip": { "allow": ["10.0.0.0/8"], "deny": ["10.9.0.0/16"] },
        "geo": { "allow": ["DE", "FR"] } } });
    assert_eq!(api(o, "PUT", "acme", "/policy", &acme, Some(parent_policy)).await.0, 200);
    let (s, e) = api(o, "GET", "kid", "/effective-policy", &kid, None).await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(strings(&e["ancestors"]), ["acme"]);
    assert_eq!(strings(&e["effective"]["ip"]["allow"]), ["10.0.0.0/8"]);
    assert_eq!(strings(&e["sources"]["ip_allow"]), ["acme"]);
    assert_eq!(strings(&e["effective"]["geo"]["allow"]), ["DE", "FR"]);
    let b = bundle_org(o, "kid").await;
    assert_eq!(
        (cidrs(&b.ip.allow), cidrs(&b.ip.deny)),
        (vec!["10.0.0.0/8".to_string()], vec!["10.9.0.0/16".to_string()])
    );

    // The child cannot widen: a range outside the parent's, a country it does not allow.
    for (policy, field) in [
        (json!({ "ip": { "allow": ["192.168.0.0/16"] } }), "ip.allow"),
        (json!({ "ip": { "allow": ["10.9.1.0/24"] } }), "ip.allow"),
        (json!({ "geo": { "allow": ["US"] } }), "geo.allow"),
    ] {
        let (s, v) = api(o, "PUT", "kid", "/policy", &kid, Some(json!({ "policy": policy }))).await;
        assert_eq!((s, code(&v)), (409, "wider_than_parent"), "{v}");
        assert!(v["message"].as_str().unwrap().starts_with(field), "{v}");
    }
    // It can narrow, and its narrowing leaves the parent as it was.
    let narrow = json!({ "policy": { "ip": { "allow": ["10.1.0.0/16"], "deny": ["10.1.2.0/24"] },
        "geo": { "allow": ["FR"], "deny": ["IT"] } } });
    let (s, v) = api(o, "PUT", "kid", "/policy", &kid, Some(narrow)).await;
    assert_eq!(s, 200, "{v}");
    let (_, e) = api(o, "GET", "kid", "/effective-policy", &kid, None).await;
    assert_eq!(strings(&e["effective"]["ip"]["allow"]), ["10.1.0.0/16"]);
    assert_eq!(strings(&e["sources"]["ip_allow"]), ["kid"]);
    assert_eq!(strings(&e["effective"]["ip"]["deny"]), ["10.9.0.0/16", "10.1.2.0/24"]);
    assert_eq!(strings(&e["sources"]["ip_deny"]), ["acme", "kid"]);
    assert_eq!(
        (strings(&e["effective"]["geo"]["allow"]), strings(&e["effective"]["geo"]["deny"])),
        (vec!["FR".to_string()], vec!["IT".to_string()])
    );
    let (_, pe) = api(o, "GET", "acme", "/effective-policy", &acme, None).await;
    assert_eq!(strings(&pe["effective"]["ip"]["allow"]), ["10.0.0.0/8"]);
    assert_eq!(strings(&pe["effective"]["geo"]["allow"]), ["DE", "FR"]);
    assert!(pe["ancestors"].as_array().unwrap().is_empty());
    let (b, pb) = (bundle_org(o, "kid").await, bundle_org(o, "acme").await);
    assert_eq!(cidrs(&b.ip.allow), ["10.1.0.0/16"]);
    assert_eq!(cidrs(&b.ip.deny), ["10.9.0.0/16", "10.1.2.0/24"]);
    assert_eq!((b.geo.allow.clone(), b.geo.deny.clone()), (vec!["FR".to_string()], vec!["IT".to_string()]));
    assert_eq!(
        (cidrs(&pb.ip.allow), pb.geo.allow.clone()),
        (vec!["10.0.0.0/8".to_string()], vec!["DE".to_string(), "FR".to_string()])
    );

    // The parent narrows later: the child's stored rule is now wider, its effective one
    // is not (the edge admits nobody rather than the child's old range).
    let later = json!({ "policy": { "ip": { "allow": ["10.2.0.0/16"] }, "geo": { "allow": ["DE"] } } });
    assert_eq!(api(o, "PUT", "acme", "/policy", &acme, Some(later)).await.0, 200);
    let b = bundle_org(o, "kid").await;
    let m = gatehouse_core::net::IpMatcher::new(&b.ip.allow, &b.ip.deny);
    for ip in ["10.1.0.1", "10.2.0.1", "192.168.0.1"] {
        let admitted = match m.lookup(ip.parse().unwrap()) {
            Some(gatehouse_core::net::IpAction::Allow) => true,
            Some(gatehouse_core::net::IpAction::Deny) => false,
            None => !m.has_allow(),
        };
        assert!(!admitted, "{ip} in {:?}", b.ip);
    }
    let g = gatehouse_core::geo::GeoMatcher::new(&b.geo);
    assert!(["DE", "FR"].iter().all(|c| g.check(gatehouse_core::CountryCode::parse(c)).is_err()), "{:?}", b.geo);

    // MFA required at the parent: the child's members must enrol at sign-in.
    let mfa = json!({ "mfa_required": true, "mfa_methods": ["totp", "webauthn"] });
    assert_eq!(api(o, "PUT", "acme", "/auth-policy", &acme, Some(mfa)).await.0, 200);
    let (s, v) = support::origin::sign_in(o, "kid", "ann@kid.test", PASSWORD, &[]).await;
    assert_eq!((s, code(&v)), (403, "mfa_enrollment_required"), "{v}");
    let (s, v) = api(o, "PUT", "kid", "/auth-policy", &kid, Some(json!({ "mfa_required": false }))).await;
    assert_eq!((s, code(&v)), (409, "wider_than_parent"), "{v}");
    assert!(v["message"].as_str().unwrap().starts_with("mfa_required"), "{v}");
    let (s, v) =
        api(o, "PUT", "kid", "/auth-policy", &kid, Some(json!({ "mfa_required": true, "mfa_methods": ["totp"] })))
            .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = support::origin::sign_in(o, "kid", "ann@kid.test", PASSWORD, &[]).await;
    assert_eq!(strings(&v["methods"]), ["totp"], "{v}");
    let (_, p) = api(o, "GET", "acme", "/auth-policy", &acme, None).await;
    assert_eq!(strings(&p["mfa_methods"]), ["totp", "webauthn"], "the child's narrowing stays in the child");
    // The parent drops passkeys: the child, which allowed only TOTP, keeps TOTP.
    let mfa = json!({ "mfa_required": true, "mfa_methods": ["webauthn"] });
    assert_eq!(api(o, "PUT", "acme", "/auth-policy", &acme, Some(mfa)).await.0, 200);
    let (_, e) = api(o, "GET", "kid", "/effective-policy", &kid, None).await;
    assert_eq!(
        (strings(&e["effective"]["mfa_methods"]), e["sources"]["mfa_required"].as_str()),
        (vec!["webauthn".to_string()], Some("acme"))
    );

    // SSO enforced at the parent: the child's password sign-in is refused.
    let conn = json!({ "name": "Corp", "protocol": "oauth2", "authorize_url": "https://idp.example.com/auth",
        "token_url": "https://idp.example.com/token", "userinfo_url": "https://idp.example.com/me",
        "scopes": ["email"], "client_id": "c", "client_secret": "s", "allowed_domains": ["acme.test"],
        "default_role": "viewer" });
    let (s, v) = api(o, "POST", "acme", "/sso/connections", &acme, Some(conn)).await;
    assert_eq!(s, 201, "{v}");
    let enforce = json!({ "enforce": true, "break_glass": "owner@acme.test" });
    let (s, v) = api(o, "PUT", "acme", "/sso/enforcement", &acme, Some(enforce)).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api(o, "PUT", "kid", "/sso/enforcement", &kid, Some(json!({ "enforce": false }))).await;
    assert_eq!((s, code(&v)), (409, "wider_than_parent"), "{v}");
    let (s, v) = support::origin::sign_in(o, "kid", "owner@kid.test", OWNER_PASSWORD, &[]).await;
    assert_eq!((s, code(&v)), (403, "sso_required"), "{v}");
    let (_, e) = api(o, "GET", "kid", "/effective-policy", &kid, None).await;
    assert_eq!(
        (e["effective"]["enforce_sso"].as_bool(), e["sources"]["enforce_sso"].as_str()),
        (Some(true), Some("acme"))
    );
    assert_eq!(e["own"]["enforce_sso"], false, "the child's own setting is unchanged");

    // Detached, the child is on its own rules again.
    let (s, _) =
        js("PUT", &format!("{}/v1/orgs/kid/parent", o.url), Some(OPERATOR), Some(json!({ "parent": null }))).await;
    assert_eq!(s, 200);
    let (_, e) = api(o, "GET", "kid", "/effective-policy", &kid, None).await;
    assert_eq!(e["effective"]["enforce_sso"], false);
    assert_eq!(strings(&e["effective"]["ip"]["allow"]), ["10.1.0.0/16"]);
    assert_eq!(cidrs(&bundle_org(o, "kid").await.ip.allow), ["10.1.0.0/16"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_roles_through_nested_teams_and_role_templates() {
    let root = tempfile::tempdir().unwrap();
    let o = &start(root.path()).await;
    assert_eq!(org(o, "acme", None).await.0, 201);
    let acme = owner(o, "acme").await;
    let uid = user(o, "acme", &acme, "una@acme.test", "viewer").await;
    let (_, eng) = api(o, "POST", "acme", "/teams", &acme, Some(json!({ "name": "eng" }))).await;
    let eng = eng["id"].as_str().unwrap().to_string();
    let (_, web) = api(o, "POST", "acme", "/teams", &acme, Some(json!({ "name": "web", "parent_id": eng }))).await;
    let web = web["id"].as_str().unwrap().to_string();
    assert_eq!(api(o, "PUT", "acme", &format!("/teams/{web}/members/{uid}"), &acme, None).await.0, 204);

    // Role templates: the operator's, validated.
    let tpl = |name: &str| format!("{}/v1/role-templates/{name}", o.url);
    let body = json!({ "permissions": ["members:write"], "description": "Creates accounts" });
    let (s, v) = js("PUT", &tpl("helpdesk"), Some(&acme), Some(body.clone())).await;
    assert_eq!((s, code(&v)), (403, "operator_only"), "{v}");
    for (name, b, want) in [
        ("admin", body.clone(), "invalid_template"),
        ("Bad Name", body.clone(), "invalid_template"),
        ("helpdesk", json!({ "permissions": ["members"] }), "invalid_permission"),
        ("helpdesk", json!({ "permissions": [] }), "invalid_permission"),
        ("helpdesk", json!({ "permissions": ["a:b"], "description": "x".repeat(501) }), "invalid_description"),
    ] {
        let (s, v) = js("PUT", &tpl(&name.replace(' ', "%20")), Some(OPERATOR), Some(b)).await;
        assert_eq!((s, code(&v)), (400, want), "{name}: {v}");
    }
    let (s, v) = js("PUT", &tpl("helpdesk"), Some(OPERATOR), Some(body)).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = js("GET", &format!("{}/v1/role-templates", o.url), Some(OPERATOR), None).await;
    assert_eq!((s, v["items"][0]["name"].as_str()), (200, Some("helpdesk")), "{v}");

    // An organisation takes it twice: synced and forked.
    let from = |name: &str| format!("/roles/{name}/from-template");
    let (s, v) =
        api(o, "POST", "acme", &from("helpdesk"), &acme, Some(json!({ "template": "helpdesk", "mode": "sync" }))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) =
        api(o, "POST", "acme", &from("helpdesk-copy"), &acme, Some(json!({ "template": "helpdesk", "mode": "fork" })))
            .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(api(o, "PUT", "acme", "/roles/mine", &acme, Some(json!({ "permissions": ["x:read"] }))).await.0, 200);
    for (name, b, status, want) in [
        ("helpdesk", json!({ "template": "nope", "mode": "sync" }), 404, "template_not_found"),
        ("helpdesk", json!({ "template": "helpdesk", "mode": "copy" }), 400, "invalid_body"),
        ("mine", json!({ "template": "helpdesk", "mode": "sync" }), 409, "role_exists"),
        ("owner", json!({ "template": "helpdesk", "mode": "sync" }), 400, "invalid_role"),
    ] {
        let (s, v) = api(o, "POST", "acme", &from(name), &acme, Some(b)).await;
        assert_eq!((s, code(&v)), (status, want), "{name}: {v}");
    }
    let (s, v) = api(o, "PUT", "acme", "/roles/helpdesk", &acme, Some(json!({ "permissions": ["x:read"] }))).await;
    assert_eq!((s, code(&v)), (409, "role_synced"), "{v}");
    assert_eq!(audit(o, "acme", "role_template.instantiate").await.len(), 2);

    // A team grants the synced role; members of its child team hold it (and both teams).
    let roles_of = |team: &str| format!("/teams/{team}/roles");
    let una = token(o, "acme", "una@acme.test", PASSWORD).await;
    let (s, v) = add_viewer(o, "acme", &una, "x@acme.test").await;
    assert_eq!((s, code(&v)), (403, "permission_denied"), "{v}");
    let (s, v) = api(o, "PUT", "acme", &roles_of(&eng), &una, Some(json!({ "roles": ["helpdesk"] }))).await;
    assert_eq!((s, code(&v)), (403, "permission_denied"), "a viewer manages no team: {v}");
    for (team, b, status, want) in [
        (eng.as_str(), json!({ "roles": ["nope"] }), 400, "unknown_role"),
        ("tm_missing", json!({ "roles": ["viewer"] }), 404, "team_not_found"),
        (eng.as_str(), json!({ "roles": (0..17).map(|i| format!("r{i}")).collect::<Vec<_>>() }), 400, "invalid_roles"),
        (eng.as_str(), json!({ "roles": "helpdesk" }), 400, "invalid_body"),
    ] {
        let (s, v) = api(o, "PUT", "acme", &roles_of(team), &acme, Some(b)).await;
        assert_eq!((s, code(&v)), (status, want), "{v}");
    }
    let ada_id = user(o, "acme", &acme, "ada@acme.test", "admin").await;
    assert!(!ada_id.is_empty());
    let ada = token(o, "acme", "ada@acme.test", PASSWORD).await;
    let (s, v) = api(o, "PUT", "acme", &roles_of(&eng), &ada, Some(json!({ "roles": ["owner"] }))).await;
    assert_eq!((s, code(&v)), (403, "role_too_high"), "an admin grants no owner through a team: {v}");
    let (s, v) =
        api(o, "PUT", "acme", &roles_of(&eng), &acme, Some(json!({ "roles": ["helpdesk", "helpdesk"] }))).await;
    assert_eq!((s, strings(&v["roles"])), (200, vec!["helpdesk".to_string()]), "{v}");
    let set = audit(o, "acme", "team.roles_set").await;
    assert_eq!(set.len(), 1);
    assert_eq!(after(&set[0])["roles"], json!(["helpdesk"]));
    let una = token(o, "acme", "una@acme.test", PASSWORD).await;
    let c = claims(&una);
    assert_eq!(
        (strings(&c["roles"]), strings(&c["teams"])),
        (vec!["viewer".to_string(), "helpdesk".to_string()], vec!["eng".to_string(), "web".to_string()])
    );
    let (s, v) = add_viewer(o, "acme", &una, "x@acme.test").await;
    assert_eq!(s, 201, "the team-granted role's permission counts in admin checks: {v}");

    // The template changes: the synced role follows (admin checks, tokens, bundle), the
    // forked one does not.
    let (s, v) = js("PUT", &tpl("helpdesk"), Some(OPERATOR), Some(json!({ "permissions": ["members:read"] }))).await;
    assert_eq!((s, v["synced_roles"].as_i64()), (200, Some(1)), "{v}");
    let (s, v) = add_viewer(o, "acme", &una, "y@acme.test").await;
    assert_eq!((s, code(&v)), (403, "permission_denied"), "{v}");
    let b = bundle_org(o, "acme").await;
    assert_eq!(b.roles["helpdesk"].permissions, ["members:read"]);
    assert_eq!(b.roles["helpdesk-copy"].permissions, ["members:write"]);
    let sync = audit(o, "acme", "role_template.sync").await;
    assert_eq!((sync.len(), sync[0]["target"].as_str()), (1, Some("role:helpdesk")));
    // Forked, the role is the organisation's: editable, and deaf to the template.
    let (s, v) =
        api(o, "POST", "acme", &from("helpdesk"), &acme, Some(json!({ "template": "helpdesk", "mode": "fork" }))).await;
    assert_eq!((s, strings(&v["permissions"])), (200, vec!["members:read".to_string()]), "{v}");
    assert_eq!(
        api(o, "PUT", "acme", "/roles/helpdesk", &acme, Some(json!({ "permissions": ["members:write"] }))).await.0,
        200
    );
    let (s, v) = js("PUT", &tpl("helpdesk"), Some(OPERATOR), Some(json!({ "permissions": ["audit:read"] }))).await;
    assert_eq!((s, v["synced_roles"].as_i64()), (200, Some(0)), "{v}");
    assert_eq!(bundle_org(o, "acme").await.roles["helpdesk"].permissions, ["members:write"]);

    // Taken off the team, the role is gone from the next token.
    assert_eq!(api(o, "PUT", "acme", &roles_of(&eng), &acme, Some(json!({ "roles": [] }))).await.0, 200);
    let una = token(o, "acme", "una@acme.test", PASSWORD).await;
    assert_eq!(strings(&claims(&una)["roles"]), ["viewer"]);
}

/// The edge's engine from the origin's whole signed bundle (pinned key, as an edge runs
/// it): every tenant's issuer publishes the region's one key, which the engine accepts.
async fn engine(o: &Origin) -> gatehouse_core::Engine {
    let (s, _, bytes) =
        support::origin::call("GET", &format!("{}/v1/bundles/eu-west", o.url), Some(EDGE), None, &[]).await;
    assert_eq!(s, 200);
    let pinned = jwt_simple::prelude::Ed25519PublicKey::from_pem(&o.bundle_public_pem).unwrap().to_bytes();
    let b = gatehouse_core::bundle::open(&bytes, &pinned.try_into().unwrap(), gatehouse_origin::now() as u64).unwrap();
    assert!(b.policy.issuers.len() > 1, "the bundle holds several tenants");
    let info = gatehouse_core::BundleInfo {
        revision: b.revision,
        region: b.region.clone(),
        issued_at: b.issued_at,
        expires_at: b.expires_at,
    };
    gatehouse_core::Engine::new(&b.policy, info, &Default::default()).unwrap()
}

/// The reason code of the engine's decision on `GET https://app.kid.test/eng` from
/// `peer` with bearer `tok` (`allow` when it lets the request through).
fn edge_reason(e: &gatehouse_core::Engine, peer: &str, tok: &str) -> String {
    let rates = gatehouse_core::MemoryRateStore::new(1000, [7; 16]);
    let bearer = format!("Bearer {tok}");
    let headers = [("authorization", bearer.as_str())];
    let head = gatehouse_core::RequestHead {
        method: "GET",
        scheme: "https",
        host: "app.kid.test",
        path: "/eng",
        query: None,
        headers: &headers,
        peer: peer.parse().unwrap(),
        platform_country: None,
    };
    let now = gatehouse_origin::now() as u64 * 1_000_000_000;
    let env = gatehouse_core::Env { now, rates: &rates, countries: &gatehouse_core::NoCountryLookup, signatures: None };
    match e.decide(&head, &env) {
        gatehouse_core::Decision::Allow(_) => "allow".into(),
        gatehouse_core::Decision::Deny(d) => d.reason.as_str().to_string(),
        gatehouse_core::Decision::Redirect(_) => "redirect".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_enforces_a_childs_effective_rules_and_nested_teams() {
    let root = tempfile::tempdir().unwrap();
    let o = &start(root.path()).await;
    // A route only the `eng` team may use.
    let (_, mut tpl) = js("GET", &format!("{}/v1/policy/template", o.url), Some(OPERATOR), None).await;
    tpl["routes"].as_array_mut().unwrap().insert(0, json!({ "name": "eng", "path": "/eng", "team": "eng" }));
    let (s, v) = js("PUT", &format!("{}/v1/policy/template", o.url), Some(OPERATOR), Some(tpl)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(org(o, "acme", None).await.0, 201);
    assert_eq!(org(o, "kid", Some("acme")).await.0, 201);
    let (acme, kid) = (owner(o, "acme").await, owner(o, "kid").await);
    let parent = json!({ "policy": { "ip": { "allow": ["10.0.0.0/8"] } } });
    assert_eq!(api(o, "PUT", "acme", "/policy", &acme, Some(parent)).await.0, 200);
    let child = json!({ "policy": { "hosts": ["app.kid.test"], "ip": { "allow": ["10.1.0.0/16"] } } });
    let (s, v) = api(o, "PUT", "kid", "/policy", &kid, Some(child)).await;
    assert_eq!(s, 200, "{v}");

    // eng > web: a member of web is in eng for the edge; a member of ops is not.
    let mut team: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
    for (name, parent) in [("eng", None), ("web", Some("eng")), ("ops", None)] {
        let parent_id = parent.map(|p: &str| team[p].clone());
        let (s, v) = api(o, "POST", "kid", "/teams", &kid, Some(json!({ "name": name, "parent_id": parent_id }))).await;
        assert_eq!(s, 201, "{v}");
        team.insert(name, v["id"].as_str().unwrap().to_string());
    }
    for (email, t) in [("web@kid.test", "web"), ("ops@kid.test", "ops")] {
        let id = user(o, "kid", &kid, email, "viewer").await;
        assert_eq!(api(o, "PUT", "kid", &format!("/teams/{}/members/{id}", team[t]), &kid, None).await.0, 204);
    }
    let (web, ops) = (token(o, "kid", "web@kid.test", PASSWORD).await, token(o, "kid", "ops@kid.test", PASSWORD).await);
    let e = engine(o).await;
    assert_eq!(edge_reason(&e, "10.1.2.3", &web), "allow");
    assert_eq!(edge_reason(&e, "10.1.2.3", &ops), "team_required");
    assert_eq!(edge_reason(&e, "10.2.0.1", &web), "ip_not_allowed", "outside the child's own range");
    assert_eq!(edge_reason(&e, "192.168.0.1", &web), "ip_not_allowed", "outside the parent's");

    // The parent narrows past the child's range: the edge admits nobody to the child.
    let later = json!({ "policy": { "ip": { "allow": ["10.2.0.0/16"] } } });
    assert_eq!(api(o, "PUT", "acme", "/policy", &acme, Some(later)).await.0, 200);
    let e = engine(o).await;
    for peer in ["10.1.2.3", "10.2.0.1", "192.168.0.1"] {
        assert_ne!(edge_reason(&e, peer, &web), "allow", "{peer}");
    }
}
